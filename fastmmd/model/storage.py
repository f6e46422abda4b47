"""How an exported file stores the network's weights: float32, float16 or int8.

Exported files hold only the transformation network, so their size is the weights' size: 4, 2 or
about 1 byte per parameter, i.e. 7.0, 3.5 and 1.8 MB for the default network's 1,750,915 parameters
(99.7 % of them convolution weights). ``int8`` stores every convolution weight as signed 8-bit
integers with one float32 scale per output channel (symmetric per-channel quantization, as in
Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-
Only Inference", but for storage only):

    s_o = max |w_o| / 127,   q = round(w / s_o) in [-127, 127],   w' = q s_o.

The network still computes in floating point (:class:`Int8Conv2d` dequantizes its weight at every
call); biases and instance-norm parameters (0.3 % of the weights) stay float32. On the six shipped
styles the outputs move by well under one 8-bit level on average (up to several levels on single
pixels), while the files halve against float16 (measured: docs/benchmarks.md, "Model zoo storage").

:func:`dequantize_state` is the way back that readers of any format use
(:mod:`fastmmd.model.files`), so what fastmmd runs from an int8 file is exactly ``q s_o``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: The storages ``fastmmd export --weights`` offers.
STORAGES = ("float32", "float16", "int8")
INT8_SUFFIX, SCALE_SUFFIX = "weight_int8", "weight_scale"
#: Largest per-channel scale a file may hold: weights up to 127 x 1 in magnitude (trained networks'
#: are below 5); a crafted 3e38 would make every dequantized weight infinite and the output black.
MAX_SCALE = 1.0


class Int8Conv2d(nn.Module):
    """A bias-carrying, unpadded ``nn.Conv2d`` (as TransformerNet uses them) stored as int8 + per-channel scale.

    Computes in the input's dtype: ``conv2d(x, q * s, b, stride)``.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.bias is None or conv.padding != (0, 0) or conv.dilation != (1, 1) or conv.groups != 1:
            raise ValueError("Int8Conv2d stores TransformerNet's convolutions (bias, no padding, dilation or groups)")
        w = conv.weight.detach().float()
        scale = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / 127
        self.register_buffer(INT8_SUFFIX, (w / scale).round().clamp(-127, 127).to(torch.int8))
        self.register_buffer(SCALE_SUFFIX, scale)
        self.bias = nn.Parameter(conv.bias.detach().float(), requires_grad=False)
        self.stride = int(conv.stride[0])

    @property
    def weight(self) -> Tensor:
        """The float32 weight q s, for the networks' folded and space-to-depth convs, which
        rearrange the weight (:mod:`fastmmd.model.networks`)."""
        return self.weight_int8.float() * self.weight_scale

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight_int8.to(x.dtype) * self.weight_scale.to(x.dtype)
        return F.conv2d(x, weight, self.bias.to(x.dtype), self.stride)


def store(net: nn.Module, storage: str) -> nn.Module:
    """A copy of ``net`` (eval, CPU, no gradients) holding its weights as ``storage`` says."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
    net = copy.deepcopy(net).eval().to(device="cpu", dtype=torch.float16 if storage == "float16" else torch.float32)
    if storage == "int8":
        for module in list(net.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Conv2d):
                    setattr(module, name, Int8Conv2d(child))
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def dequantize_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with every ``<conv>.weight_int8`` / ``<conv>.weight_scale`` pair replaced by the
    float32 ``<conv>.weight`` = q s it stands for; other entries unchanged.

    Raises:
        ValueError: an int8 weight without its scale (or the reverse), a wrong dtype, or a scale whose
            shape is not (out channels, 1, 1, 1), that is not finite and positive, or above :data:`MAX_SCALE`.
    """
    out = {k: v for k, v in state.items() if not k.endswith((INT8_SUFFIX, SCALE_SUFFIX))}
    stems = {k[: -len(INT8_SUFFIX)] for k in state if k.endswith(INT8_SUFFIX)}
    scales = {k[: -len(SCALE_SUFFIX)] for k in state if k.endswith(SCALE_SUFFIX)}
    if stems != scales:
        raise ValueError(f"int8 weight without its scale: {sorted(stems ^ scales)[0]!r}")
    for stem in sorted(stems):
        q, s = state[stem + INT8_SUFFIX], state[stem + SCALE_SUFFIX]
        if q.dtype != torch.int8 or not s.is_floating_point() or q.dim() != 4:
            raise ValueError(f"{stem}weight: int8 storage of the wrong dtype or rank")
        if tuple(s.shape) != (q.shape[0], 1, 1, 1) or not bool(torch.isfinite(s).all() and (s > 0).all()):
            raise ValueError(f"{stem}weight: its scales are not one finite positive number per output channel")
        if not bool((s <= MAX_SCALE).all()):
            raise ValueError(f"{stem}weight: a scale of {float(s.max()):.3g} (weights up to {127 * float(s.max()):.3g}); "
                             f"a trained network's are far below {MAX_SCALE:g}")
        if stem + "weight" in out:
            raise ValueError(f"{stem}weight is stored both as float and as int8")
        out[stem + "weight"] = q.float() * s.float()
    return out
