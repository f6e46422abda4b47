"""Tiled inference: stylize images too large for memory in overlapping, smoothly blended tiles.

A feed-forward network is fully convolutional, so a large image can be cut into tiles, each
stylized alone. Two things make naive tiling show seams: each tile's border sees reflection
padding instead of its real neighbours, and instance normalisation computes its mean and variance
per tile, so neighbouring tiles come out with slightly different contrast and colour.

* Blending hides both: tiles overlap generously and are mixed with raised-cosine ramps across the
  whole overlap. In an overlap of length ``r`` the left tile's weight falls as
  ``cos^2(pi/2 (i + 1/2) / r)`` while the right tile's rises as ``sin^2(...)``, so the weights sum
  to 1 and the output moves smoothly from one tile's statistics to the next; a tile's outermost
  pixels, those most affected by its artificial border, get weight near 0.
* Global statistics remove the cause (:func:`global_norm_statistics`, eager networks only, built
  on :mod:`fastmmd.core.norm_stats`): the
  mean and variance of every instance-norm input are accumulated over the whole image, tile by
  tile, one pass per norm layer (layer k's statistics need layers < k normalised globally), each
  tile contributing only the region it owns. The final pass then normalises every tile with the
  image's statistics, and tiles agree with the untiled result up to the receptive field at their
  borders (which the blend covers). Cost: about (L + 2) / 2 extra forward passes for L norm layers
  (pass k runs only up to layer k), 8.5 for the default network's 15; opt-in (``--tile-stats
  global``), as the blend alone leaves no seam (measured: docs/benchmarks.md, "Stylize / export"
  and "Tile statistics: which default").

Tiles start at multiples of the network's size multiple (``ALIGN`` = 4), so its two stride-2
convolutions sample the same grid in every tile as in the whole image.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from fastmmd.core.norm_stats import Stats, pooled_norm_statistics
from fastmmd.model.networks import SIZE_MULTIPLE, padded_size

ALIGN = SIZE_MULTIPLE


def tile_spans(length: int, tile: int, overlap: int, align: int = ALIGN) -> list[tuple[int, int]]:
    """(start, end) of tiles of about ``tile`` px covering ``length`` px, overlapping >= ``overlap`` px.

    Starts are multiples of ``align`` and spread evenly; the last tile ends at ``length`` (it may
    be up to ``align - 1`` px longer than ``tile``).
    """
    if length <= tile:
        return [(0, length)]
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    count = math.ceil((length - overlap) / (tile - overlap))
    span = length - tile
    starts = sorted({align * int(i * span / (count - 1) / align) for i in range(count)})
    return [(s, length if k == len(starts) - 1 else min(s + tile, length)) for k, s in enumerate(starts)]


def ramp(length: int, device: torch.device | None = None) -> Tensor:
    """Rising raised-cosine weights sin^2(pi/2 (i + 1/2) / length), i = 0..length-1 (all > 0)."""
    i = torch.arange(length, dtype=torch.float32, device=device)
    return torch.sin(0.5 * math.pi * (i + 0.5) / length) ** 2


def window_1d(spans: list[tuple[int, int]], index: int, device: torch.device | None = None) -> Tensor:
    """Blend weights along one axis for tile ``index``: ramps over its overlaps with its neighbours."""
    start, end = spans[index]
    w = torch.ones(end - start, device=device)
    if index > 0:
        r = spans[index - 1][1] - start  # overlap with the previous tile
        w[:r] = torch.minimum(w[:r], ramp(r, device))
    if index + 1 < len(spans):
        r = end - spans[index + 1][0]  # overlap with the next tile
        w[w.shape[0] - r:] = torch.minimum(w[w.shape[0] - r:], ramp(r, device).flip(0))
    return w


def owned(spans: list[tuple[int, int]], index: int, align: int = ALIGN) -> tuple[int, int]:
    """The part of tile ``index`` (tile-local coordinates) that it alone accounts for: from the
    middle of its overlap with the previous tile to the middle of the next, at multiples of
    ``align``; the last tile owns up to its end padded as the network pads it
    (:func:`~fastmmd.model.networks.padded_size`, which the untiled image has too)."""
    start, end = spans[index]
    lo = 0 if index == 0 else align * round((spans[index - 1][1] + start) / (2 * align)) - start
    if index + 1 < len(spans):
        hi = align * round((end + spans[index + 1][0]) / (2 * align)) - start
    else:
        hi = padded_size(end - start)
    return lo, hi


def stylize_tiled(fn: Callable[[Tensor], Tensor], image: Tensor, tile: int, overlap: int) -> Tensor:
    """Applies ``fn`` to overlapping tiles of ``image`` (B, C, H, W) and blends the results.

    Args:
        fn: maps a (B, C, h, w) batch to a same-size batch (e.g. a stylization network).
        image: the full batch; may live on the CPU while ``fn`` runs elsewhere.
        tile: tile side in px (tiles are about ``tile`` x ``tile``).
        overlap: minimal overlap between neighbouring tiles in px (a quarter of the tile or more
            works well).

    Returns:
        (B, C, H, W) on ``image``'s device, float32.
    """
    height, width = image.shape[-2:]
    ys = tile_spans(height, tile, min(overlap, tile - 1))
    xs = tile_spans(width, tile, min(overlap, tile - 1))
    out = torch.zeros(image.shape, dtype=torch.float32, device=image.device)
    total = torch.zeros((1, 1, height, width), dtype=torch.float32, device=image.device)
    wy = [window_1d(ys, i, image.device) for i in range(len(ys))]
    wx = [window_1d(xs, j, image.device) for j in range(len(xs))]
    for i, (y0, y1) in enumerate(ys):
        for j, (x0, x1) in enumerate(xs):
            result = fn(image[:, :, y0:y1, x0:x1]).to(out.device, torch.float32)
            weight = wy[i][:, None] * wx[j][None, :]  # (h, w)
            out[:, :, y0:y1, x0:x1] += result * weight
            total[:, :, y0:y1, x0:x1] += weight
    return out / total


def global_norm_statistics(net: nn.Module, run: Callable[[Tensor], Tensor], image: Tensor, tile: int,
                           overlap: int) -> Stats:
    """Mean and variance (B, C, 1, 1) of every instance-norm input of ``net`` over the whole image.

    Each tile counts only the region it owns (:func:`owned`), so every pixel is counted once.

    Args:
        net: the eager network whose ``nn.InstanceNorm2d`` layers are measured (called in module order).
        run: calls ``net`` on a CPU tile (moves it to the device, sets precision).
        image: (B, 3, H, W) the full batch.
        tile, overlap: the tiling used afterwards (:func:`stylize_tiled`).
    """
    height, width = image.shape[-2:]
    ys = tile_spans(height, tile, min(overlap, tile - 1))
    xs = tile_spans(width, tile, min(overlap, tile - 1))
    cells = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    pieces = [image[:, :, ys[i][0]:ys[i][1], xs[j][0]:xs[j][1]] for i, j in cells]

    def region(index: int, x: Tensor) -> Tensor:
        i, j = cells[index]
        (ly0, ly1), (lx0, lx1) = owned(ys, i), owned(xs, j)
        s = x.shape[-2] / padded_size(ys[i][1] - ys[i][0])  # 1, 1/2 or 1/4: this layer's resolution
        return x[..., round(ly0 * s):round(ly1 * s), round(lx0 * s):round(lx1 * s)]

    return pooled_norm_statistics(net, run, pieces, region)
