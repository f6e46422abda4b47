"""Tiled stylization's geometry alone: aligned, overlapping tiles whose owned regions partition the
image, and blend weights that sum to one. Stylizing: tests/integration/test_stylize.py."""

from __future__ import annotations

import torch

from fastmmd.model.tiling import owned, stylize_tiled, tile_spans


def test_blend_weights_are_a_partition_of_unity():
    x = torch.rand(1, 3, 50, 77)
    assert torch.allclose(stylize_tiled(lambda t: t, x, tile=24, overlap=8), x, atol=1e-6)


def test_tiles_are_aligned_and_owned_regions_partition_the_image():
    for length, tile, overlap in [(77, 24, 8), (256, 128, 32), (101, 40, 12), (30, 40, 8)]:
        spans = tile_spans(length, tile, overlap)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a % 4 == 0 for a, _ in spans)
        assert all(b0 > a1 for (_, b0), (a1, _) in zip(spans, spans[1:]))  # neighbours overlap
        covered = [a + lo for (a, _), (lo, _) in zip(spans, map(lambda i: owned(spans, i), range(len(spans))))]
        ends = [a + owned(spans, i)[1] for i, (a, _) in enumerate(spans)]
        assert covered[0] == 0 and covered[1:] == ends[:-1] and ends[-1] == length + (-length) % 4
