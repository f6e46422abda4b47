"""3x3 convolutions with frozen weights through NNPACK's fast kernels: forward and input gradient.

Why: in fp32 on a CPU whose convolutions run AVX2 kernels at most (no bf16 instructions, so
``fastmmd fit`` trains in fp32 there), oneDNN's direct convolutions already run VGG-19's 3x3 layers
near the CPU's multiply-add peak, so a training step costs what its FLOPs cost. NNPACK (built into
torch) computes a 3x3 conv with a transform that needs fewer multiplications (it picks Winograd
F(6x6, 3x3) or an FFT on 16x16 tiles by the map's size), and was faster than oneDNN on VGG's layers
whose maps are at least :data:`NNPACK_MIN_SIDE` px wide, forward and backward; on smaller maps, and
on AVX-512 CPUs, oneDNN was faster (measured: docs/benchmarks.md, "bf16 without bf16 instructions").
Where that holds is decided by :func:`fastmmd.base.precision.cpu_nnpack_is_faster`.

The result is ``conv2d(x, weight, bias, padding=1)`` up to float rounding (relative error 1e-6 to
2e-5 of the largest output on VGG's layers). Only the gradient to ``x`` is computed: the weights
are frozen (VGG's). It is the conv of the output gradient with the kernel flipped in both axes and
its two channel axes swapped, again stride 1 and padding 1, so NNPACK computes it as well.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

#: The smallest side of a feature map that goes through NNPACK: its tiles are 8x8 or 16x16, and on
#: VGG's 16 px maps oneDNN was faster (docs/benchmarks.md, "bf16 without bf16 instructions").
NNPACK_MIN_SIDE = 32


class _FrozenConv3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(weight)
        return torch._nnpack_spatial_convolution(x.contiguous(), weight.contiguous(), bias, [1, 1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (weight,) = ctx.saved_tensors
        kernel = weight.flip(2, 3).transpose(0, 1).contiguous()  # (C_in, C_out, 3, 3), flipped
        return torch._nnpack_spatial_convolution(grad.contiguous(), kernel, None, [1, 1]), None, None


def frozen_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv2d(x, weight, bias, padding=1)`` through NNPACK, for fp32 CPU tensors: ``x`` (B, C_in, H, W)
    in any memory format, a frozen ``weight`` (C_out, C_in, 3, 3) and ``bias`` (C_out,) or None.
    Differentiable in ``x`` only; returns NCHW. :func:`fastmmd.base.precision.nnpack_available` must
    have returned True (it initialises NNPACK)."""
    if weight.requires_grad or (bias is not None and bias.requires_grad):
        raise ValueError("frozen_conv3x3 computes no weight gradient: its weights must be frozen")
    return _FrozenConv3x3.apply(x, weight, bias)
