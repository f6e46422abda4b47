"""The style losses at a realistic map size: no N x N matrix is ever made (the losses' maths at small
sizes: tests/unit/test_losses.py)."""

from __future__ import annotations

import torch

from fastmmd.losses import METHODS, StyleLoss


# ------------------------------------------------------------------------------------ gradients
def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def uniform(y):
    return torch.full((y.shape[1],), 1.0 / y.shape[1], dtype=y.dtype)


# ------------------------------------------------------------------------------------ memory
def test_large_map_needs_no_n_by_n_matrix():
    """N = 65,536 positions, C = 64: an N x N float matrix would be 17 GB; every allocation stays < 256 MB."""
    from torch.profiler import ProfilerActivity, profile

    g = _gen()
    x = torch.rand(1, 64, 65536, generator=g).requires_grad_(True)
    y = torch.rand(64, 65536, generator=g)
    w = uniform(y).float()
    opts = [StyleLoss(gaussian_estimator=e) for e in ("linear", "subset", "rff")]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        total = 0
        for name in ("gram", "linear", "poly", "bn"):
            method = METHODS[name](StyleLoss())
            total = total + method(x, method.prepare(y, w)).sum()
        for o in opts:
            method = METHODS["gaussian"](o)
            total = total + method(x, method.prepare(y, w, g), g).sum()
        total.backward()
    # every single op call, not averages over calls of the same op (an average hides one big call)
    largest = max(max(e.self_cpu_memory_usage, e.cpu_memory_usage) for e in prof.events())
    assert 16 * 2**20 <= largest < 256 * 2**20, largest  # >= one (64, N) float map: the profiler saw allocations
    assert torch.isfinite(x.grad).all()
