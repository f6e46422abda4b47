"""Colour preservation: luminance-only style transfer as a post-filter (Gatys et al. 2017,
"Controlling Perceptual Factors in Neural Style Transfer").

The stylized image's luminance Y is combined with the original's chroma (Cb, Cr) in full-range
ITU-R BT.601 YCbCr, so the result keeps the photo's colours and takes the style's textures.
Used by ``fastmmd optimize --preserve-color`` and ``fastmmd stylize --preserve-color``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    """RGB [0, 1] (..., 3, H, W) -> full-range BT.601 YCbCr, Cb and Cr centred on 0.5."""
    r, g, b = x.unbind(-3)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 0.5 + (b - y) / 1.772
    cr = 0.5 + (r - y) / 1.402
    return torch.stack([y, cb, cr], dim=-3)


def ycbcr_to_rgb(x: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (not clipped)."""
    y, cb, cr = x.unbind(-3)
    r = y + 1.402 * (cr - 0.5)
    b = y + 1.772 * (cb - 0.5)
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return torch.stack([r, g, b], dim=-3)


def preserve_color(stylized: Tensor, content: Tensor) -> Tensor:
    """Luminance-only transfer: Y from ``stylized``, Cb and Cr from ``content``; RGB [0, 1] out."""
    ycc = torch.cat([rgb_to_ycbcr(stylized)[..., :1, :, :], rgb_to_ycbcr(content)[..., 1:, :, :]], dim=-3)
    return ycbcr_to_rgb(ycc).clamp(0, 1)
