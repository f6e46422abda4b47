"""Colour preservation: luminance-only style transfer as a post-filter (Gatys et al. 2017,
"Controlling Perceptual Factors in Neural Style Transfer").

The stylized image's luminance Y is combined with the original's chroma (Cb, Cr) in the ITU-R
BT.601 YCbCr space, so the result keeps the photo's colours and takes the style's textures.
"""

from __future__ import annotations

import torch
from torch import Tensor

_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def rgb_to_ycbcr(rgb: Tensor) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> YCbCr with Y in [0, 1] and Cb, Cr centred on 0."""
    m = _RGB_TO_YCBCR.to(rgb)
    return torch.einsum("ij,...jhw->...ihw", m, rgb)


def ycbcr_to_rgb(ycbcr: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (not clamped)."""
    m = torch.linalg.inv(_RGB_TO_YCBCR.double()).to(ycbcr)
    return torch.einsum("ij,...jhw->...ihw", m, ycbcr)


def preserve_color(stylized: Tensor, original: Tensor) -> Tensor:
    """Y from ``stylized``, Cb and Cr from ``original`` (same shape), clamped to [0, 1]."""
    y = rgb_to_ycbcr(stylized)[..., :1, :, :]
    cbcr = rgb_to_ycbcr(original)[..., 1:, :, :]
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=-3)).clamp(0, 1)
