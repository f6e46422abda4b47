"""Known camera motion: clips made from a still photo, and the exact warp between their frames.

Flicker is measured as the change between consecutive stylized frames that the camera motion does
not explain (:func:`fastmmd.losses.metrics.temporal_error`). Measuring that on real video needs optical
flow; here the motion is known instead: every frame is the same photo seen by a camera that pans,
zooms or shakes by sub-pixel amounts (:func:`camera_path`, :func:`render`), so the warp from one
frame to the next is exact and no flow model is needed.

Geometry. Pixel centres sit at integer coordinates ``u`` (x right, y down). A :class:`View`
``(scale s, dx, dy)`` shows the source photo at ``p = c_src + s (u - c) + d``, ``c`` the frame's centre
and ``c_src`` the photo's. The same photo point seen in view ``a`` and view ``b`` therefore sits at

    u_a = c + (s_b (u_b - c) + d_b - d_a) / s_a,

which :func:`warp` uses to bring a frame of view ``a`` into view ``b`` (bilinear); pixels of ``b``
whose ``u_a`` falls outside frame ``a`` (content that entered the picture) are masked out.

:func:`shift` is the special case ``s = 1`` with one offset per image: the perturbation of the
stability loss (Gupta et al. 2017, :mod:`fastmmd.losses.stability`). :func:`crop_moves` is its
whole-pixel, resampling-free variant: moves by 1..3 px of a network that works on a 4 px grid are
the ones that change its texture most (docs/benchmarks.md, "Grid lock").
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: Camera motions of :func:`camera_path`.
MOTIONS = ("pan", "zoom", "shake")


class View(NamedTuple):
    """One camera pose: the photo is shown at ``scale`` source px per frame px, moved by (dx, dy) source px."""

    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0


def camera_path(motion: str, frames: int, seed: int = 0) -> list[View]:
    """Camera poses for a clip of ``frames`` frames, centred on the photo's middle.

    * ``pan``: 1.3 px right and 0.4 px down per frame (fractional, so every frame is resampled);
    * ``zoom``: in by 0.6 % per frame;
    * ``shake``: a hand-held camera: independent offsets uniform in +-0.75 px every frame.
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {', '.join(MOTIONS)}, not {motion!r}")
    mid = (frames - 1) / 2
    if motion == "pan":
        return [View(1.0, 1.3 * (t - mid), 0.4 * (t - mid)) for t in range(frames)]
    if motion == "zoom":
        return [View(0.994 ** (t - mid)) for t in range(frames)]
    g = torch.Generator().manual_seed(seed)
    offsets = (torch.rand(frames, 2, generator=g) * 1.5 - 0.75).tolist()
    return [View(1.0, x, y) for x, y in offsets]


def source_size(views: Sequence[View], height: int, width: int) -> tuple[int, int]:
    """The smallest photo size (h, w) that every view of an (height, width) frame stays inside (+2 px)."""
    reach_x = max(v.scale * (width - 1) / 2 + abs(v.dx) for v in views)
    reach_y = max(v.scale * (height - 1) / 2 + abs(v.dy) for v in views)
    return math.ceil(2 * reach_y) + 3, math.ceil(2 * reach_x) + 3


def _grid(views: Tensor, height: int, width: int, src_h: int, src_w: int) -> Tensor:
    """Sampling grid (N, h, w, 2) in grid_sample's align_corners=True coordinates of a (src_h, src_w) source."""
    ys = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
    xs = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    s, dx, dy = (views[:, i, None, None].double() for i in range(3))
    px = (src_w - 1) / 2 + s * xs[None, None, :] + dx  # (N, 1, w) -> broadcast below
    py = (src_h - 1) / 2 + s * ys[None, :, None] + dy  # (N, h, 1)
    px, py = torch.broadcast_tensors(px, py)
    gx = 2 * px / max(src_w - 1, 1) - 1
    gy = 2 * py / max(src_h - 1, 1) - 1
    return torch.stack([gx, gy], dim=-1).float()


def render(photo: Tensor, views: Sequence[View], height: int, width: int, gain_std: float = 0.0,
           noise_std: float = 0.0, seed: int = 0) -> Tensor:
    """The clip (T, 3, height, width) in [0, 1] that ``views`` film of ``photo`` (3, H, W).

    Args:
        photo: the still, at least :func:`source_size` (bilinear sampling, no anti-aliasing: keep
            the views' scale near 1).
        gain_std: per-frame brightness noise: each frame is multiplied by ``1 + N(0, gain_std)``.
        noise_std: per-pixel sensor noise ``N(0, noise_std)``.
        seed: seeds both noises.
    """
    need = source_size(views, height, width)
    if photo.shape[-2] < need[0] or photo.shape[-1] < need[1]:
        raise ValueError(f"photo of {tuple(photo.shape[-2:])} px is smaller than the views need ({need})")
    v = torch.tensor([tuple(x) for x in views], dtype=torch.float64)
    grid = _grid(v, height, width, photo.shape[-2], photo.shape[-1]).to(photo.device)
    frames = F.grid_sample(photo[None].float().expand(len(views), -1, -1, -1), grid, mode="bilinear",
                           padding_mode="border", align_corners=True)
    g = torch.Generator().manual_seed(seed)
    if gain_std > 0:
        frames = frames * (1 + gain_std * torch.randn(len(views), 1, 1, 1, generator=g)).to(frames)
    if noise_std > 0:
        frames = frames + noise_std * torch.randn(frames.shape, generator=g).to(frames)
    return frames.clamp(0, 1)


def warp(frames: Tensor, source: Sequence[View], target: Sequence[View], margin: float = 1.0) -> tuple[Tensor, Tensor]:
    """Frames of views ``source`` (N, C, h, w) resampled into views ``target``, and where that is valid.

    Returns:
        (warped (N, C, h, w), mask (N, 1, h, w) of 1.0 where the target pixel was inside the source
        frame, at least ``margin`` px from its border, else 0.0).
    """
    n, _, h, w = frames.shape
    a = torch.tensor([tuple(x) for x in source], dtype=torch.float64)
    b = torch.tensor([tuple(x) for x in target], dtype=torch.float64)
    ys = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
    sa, sb = a[:, 0, None, None], b[:, 0, None, None]
    ux = (w - 1) / 2 + (sb * xs[None, None, :] + (b[:, 1] - a[:, 1])[:, None, None]) / sa
    uy = (h - 1) / 2 + (sb * ys[None, :, None] + (b[:, 2] - a[:, 2])[:, None, None]) / sa
    warped, mask = _resample(frames.float(), *torch.broadcast_tensors(ux, uy), margin)
    return warped.to(frames.dtype), mask.to(frames.dtype)


def shift(images: Tensor, offsets: Tensor, margin: float = 1.0) -> tuple[Tensor, Tensor]:
    """``images`` (B, C, H, W) moved by -offsets (B, 2) px (x, y): output pixel u shows input u + offset.

    Bilinear and differentiable (the stability loss back-propagates through it).

    Returns:
        (shifted (B, C, H, W), mask (B, 1, H, W): 1.0 where u + offset lies inside the image, at
        least ``margin`` px from its border).
    """
    b, _, h, w = images.shape
    offsets = offsets.to(device=images.device, dtype=torch.float32)
    ys = torch.arange(h, device=images.device, dtype=torch.float32)
    xs = torch.arange(w, device=images.device, dtype=torch.float32)
    ux = xs[None, None, :] + offsets[:, 0, None, None]  # (B, 1, W)
    uy = ys[None, :, None] + offsets[:, 1, None, None]  # (B, H, 1)
    return _resample(images, *torch.broadcast_tensors(ux, uy), margin)


def _resample(images: Tensor, ux: Tensor, uy: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """``images`` (N, C, h, w) sampled bilinearly at pixel coordinates (ux, uy) (N, h, w), and the
    mask (N, 1, h, w) of samples at least ``margin`` px inside the image: what :func:`warp` and
    :func:`shift` share."""
    h, w = images.shape[-2:]
    inside = (ux >= margin) & (ux <= w - 1 - margin) & (uy >= margin) & (uy <= h - 1 - margin)
    grid = torch.stack([2 * ux / max(w - 1, 1) - 1, 2 * uy / max(h - 1, 1) - 1], dim=-1)
    out = F.grid_sample(images, grid.to(device=images.device, dtype=images.dtype), mode="bilinear",
                        padding_mode="border", align_corners=True)
    return out, inside[:, None].to(device=images.device, dtype=images.dtype)


def random_offsets(batch: int, max_shift: float, generator: torch.Generator | None = None) -> Tensor:
    """(batch, 2) sub-pixel offsets uniform in [-max_shift, max_shift] px."""
    return (torch.rand(batch, 2, generator=generator) * 2 - 1) * max_shift


def random_crop_offsets(batch: int, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """(batch, 2) whole-pixel offsets (x, y), each uniform in 0..max_shift."""
    return torch.randint(0, max_shift + 1, (batch, 2), generator=generator)


def crop_moves(images: Tensor, offsets: Tensor, max_shift: int, margin: int = 0) -> tuple[Tensor, Tensor]:
    """Each image (B, C, H, W) cropped to (H - max_shift, W - max_shift) from its own ``offsets``
    (B, 2) px (x, y): output pixel u shows input u + offset, exactly (no resampling, so no blur).

    Cropping the input and the output of a network alike compares f(crop x) with crop f(x); the two
    differ near the crop's border for any network with padding, so the mask (B, 1, h, w) leaves out
    ``margin`` px along it.
    """
    b, _, h, w = images.shape
    if not 0 <= max_shift < min(h, w) - 2 * margin:
        raise ValueError(f"cannot crop {max_shift} px and a {margin} px margin from {h}x{w} images")
    ch, cw = h - max_shift, w - max_shift
    crops = torch.stack([images[i, :, int(y):int(y) + ch, int(x):int(x) + cw] for i, (x, y) in enumerate(offsets.tolist())])
    mask = torch.zeros(b, 1, ch, cw, device=images.device, dtype=images.dtype)
    mask[..., margin:ch - margin, margin:cw - margin] = 1
    return crops, mask
