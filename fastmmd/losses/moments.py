"""Statistics of a feature map seen as a sample of positions.

A layer's activation (B, C, H, W) is read as B samples of N = H*W points in R^C (Li et al. 2017:
"each position is one sample"). A style target may mix several images with blend weights; it is
then a *weighted* sample: points ``y`` of shape (C, M) with weights ``w`` of shape (M,), summing
to 1. Every statistic below is the expectation under that empirical distribution, so a mixture of
styles is handled exactly (the second moment of a mixture is the weighted mean of second moments).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def positions(feature_map: Tensor) -> Tensor:
    """(B, C, H, W) or (B, C, N) -> (B, C, N): one column per spatial position."""
    return feature_map.flatten(2) if feature_map.dim() == 4 else feature_map


def weighted_sample(feature_maps: Sequence[Tensor], blend: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Pools the positions of several (1, C, H, W) maps into one weighted sample.

    Image ``i`` gets total weight ``blend[i] / sum(blend)``, spread evenly over its positions.

    Returns:
        ``(y, w)``: points (C, M) and weights (M,), ``w.sum() == 1``.
    """
    total = float(sum(blend))
    ys, ws = [], []
    for fmap, b in zip(feature_maps, blend, strict=True):
        y = positions(fmap)[0]  # (C, N_i)
        ys.append(y)
        ws.append(torch.full((y.shape[1],), b / total / y.shape[1], dtype=y.dtype, device=y.device))
    return torch.cat(ys, dim=1), torch.cat(ws)


def mean(x: Tensor, w: Tensor | None = None) -> Tensor:
    """Per-channel mean: (B, C, N) -> (B, C), or of a weighted sample (C, M), (M,) -> (C,)."""
    return x.mean(-1) if w is None else x @ w


def second_moment(x: Tensor, w: Tensor | None = None) -> Tensor:
    """Second-moment ("normalized Gram") matrix G^ = E[x x^T] = F F^T / N: (B, C, N) -> (B, C, C).

    With weights: sum_k w_k y_k y_k^T, (C, M), (M,) -> (C, C).
    """
    if w is None:
        return x @ x.transpose(-1, -2) / x.shape[-1]
    return (x * w) @ x.transpose(-1, -2)


def std(x: Tensor, w: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Per-channel standard deviation sqrt(var + eps), var the biased (population) variance.

    The epsilon keeps a flat channel (dead ReLU, constant image) finite in value and gradient;
    the authors' BN op divides by sigma with no epsilon and produces NaN there.
    """
    if w is None:
        var = x.var(-1, unbiased=False)
    else:
        mu = x @ w
        var = (x * x) @ w - mu * mu
    return (var.clamp_min(0) + eps).sqrt()


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Row-paired squared distances ||a_k - b_k||^2 for points as columns: (..., C, n) -> (..., n)."""
    return (a - b).pow(2).sum(-2)


def pairwise_squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """All-pairs squared distances: (..., C, n), (..., C, m) -> (..., n, m), clamped at 0."""
    aa = a.pow(2).sum(-2).unsqueeze(-1)
    bb = b.pow(2).sum(-2).unsqueeze(-2)
    return (aa + bb - 2 * a.transpose(-1, -2) @ b).clamp_min(0)


def subsample(x: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """``count`` random distinct positions of (..., C, N) (all of them, shuffled, if N <= count)."""
    n = x.shape[-1]
    index = torch.randperm(n, generator=generator)[: min(count, n)].to(x.device)
    return x.index_select(-1, index)


def resample(y: Tensor, w: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """An unweighted sample of at most ``count`` points from a weighted sample (C, M), (M,).

    Equal weights and M <= count: the points themselves. Otherwise ``count`` draws by weight
    (without replacement when M >= count).
    """
    m = y.shape[-1]
    if m <= count and bool((w - w[0]).abs().max() <= 1e-6 * w[0].abs()):
        return y
    replace = count > m
    index = torch.multinomial(w.detach().float().cpu(), count, replacement=replace, generator=generator)
    return y.index_select(-1, index.to(y.device))
