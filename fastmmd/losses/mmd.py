"""Maximum mean discrepancy (Gretton et al. 2012) between generated features and a style sample.

MMD^2[P, Q] = E k(x, x') + E k(y, y') - 2 E k(x, y). Li et al. (2017) show Gatys' style loss is
MMD^2 with k(x, y) = (x^T y)^2 up to the constant 1/(4 C^2). Every function here takes the
generated features ``x`` as (B, C, N) and returns one value per sample, shape (B,). None of them
builds an N x N matrix: linear and degree-2 polynomial kernels go through C x C moments, higher
degrees through chunked sums, and the Gaussian kernel through bounded-size estimators.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from fastmmd.losses import moments


def linear_mmd2(x: Tensor, target_mean: Tensor) -> Tensor:
    """MMD^2 with k(x, y) = x^T y, which is ||mean(x) - mean(y)||^2: (B, C, N), (C,) -> (B,)."""
    return (moments.mean(x) - target_mean).pow(2).sum(-1)


def poly2_mmd2(x: Tensor, target_second: Tensor, target_mean: Tensor, c: float = 0.0) -> Tensor:
    """Biased MMD^2 with k(x, y) = (x^T y + c)^2, exactly, through C x C second moments.

    Expanding the kernel: MMD^2 = ||G^_x - G^_y||_F^2 + 2c ||mu_x - mu_y||^2 (the c^2 terms
    cancel), with G^ = E[x x^T]. With c = 0 this is the Gram (Gatys) style distance.
    """
    diff = moments.second_moment(x) - target_second  # (B, C, C)
    value = diff.pow(2).sum((-1, -2))
    if c != 0.0:
        value = value + 2.0 * c * linear_mmd2(x, target_mean)
    return value


def poly_mmd2(x: Tensor, y: Tensor, w: Tensor, c: float = 0.0, degree: int = 3, chunk: int = 1024) -> Tensor:
    """Biased MMD^2 with k(x, y) = (x^T y + c)^d for any degree, exact, in O(chunk * max(N, M)) memory.

    Kernel sums are accumulated over column chunks of the generated sample, so no N x N matrix
    exists at once. ``y``/``w`` is the weighted style sample (C, M), (M,). Cost is O(N^2 C): use it
    on deep layers or small images (degree 2 has the exact O(N C^2) route in :func:`poly2_mmd2`).
    """
    n = x.shape[-1]

    def chunk_sum(xc: Tensor, b: Tensor, wb: Tensor | None) -> Tensor:
        k = (xc.transpose(-1, -2) @ b + c).pow(degree)  # (B, chunk, m)
        return (k.mean(-1) if wb is None else k @ wb).sum(-1)

    def kernel_sum(b: Tensor, wb: Tensor | None) -> Tensor:
        # sum over generated points i of E_j k(x_i, b_j), chunked over i; b (..., C, m). Each chunk is
        # recomputed in the backward pass (checkpoint), so autograd never holds more than one chunk.
        total = x.new_zeros(x.shape[0])
        for start in range(0, n, chunk):
            xc = x[..., start:start + chunk]
            if torch.is_grad_enabled() and (xc.requires_grad or b.requires_grad):
                total = total + checkpoint(chunk_sum, xc, b, wb, use_reentrant=False)
            else:
                total = total + chunk_sum(xc, b, wb)
        return total

    return (kernel_sum(x, None) - 2 * kernel_sum(y, w)) / n + poly_self_term(y, w, c, degree, chunk)


def poly_self_term(y: Tensor, w: Tensor, c: float, degree: int, chunk: int) -> Tensor:
    """sum_ij w_i w_j (y_i^T y_j + c)^d in chunks (a constant of the style target)."""
    total = y.new_zeros(())
    for start in range(0, y.shape[-1], chunk):
        k = (y[:, start:start + chunk].T @ y + c).pow(degree)  # (chunk, M)
        total = total + w[start:start + chunk] @ (k @ w)
    return total


def gaussian_kernel(d2: Tensor, two_sigma2: Tensor | float) -> Tensor:
    """k = exp(-d^2 / (2 sigma^2)) from squared distances."""
    return torch.exp(-d2 / two_sigma2)


def gaussian_mmd2_linear(
    x: Tensor, y: Tensor, sigma2: float | None = None, max_pairs: int = 8192,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Linear-time unbiased Gaussian MMD^2 (Gretton et al. 2012, Lemma 14), as in Li et al.

    Shuffles the positions of x (B, C, N) and of the style sample y (C, M), cuts them into n disjoint
    pairs (x0, x1), (y0, y1), n = min(N/2, M/2, max_pairs), and averages
    h = k(x0, x1) + k(y0, y1) - k(x0, y1) - k(x1, y0). Unbiased for any n; memory O(n C).
    ``sigma2=None`` sets 2 sigma^2 to the mean squared distance of the sampled pairs (the paper's
    choice), held constant for the gradient as in the authors' code.
    """
    n = min(x.shape[-1] // 2, y.shape[-1] // 2, max_pairs)
    if n < 1:
        raise ValueError("the Gaussian MMD needs at least 2 positions per map")
    xs = moments.subsample(x, 2 * n, generator)
    ys = moments.subsample(y, 2 * n, generator)
    x0, x1, y0, y1 = xs[..., :n], xs[..., n:], ys[..., :n], ys[..., n:]
    d_xx = moments.squared_distances(x0, x1)  # (B, n)
    d_yy = moments.squared_distances(y0, y1).expand_as(d_xx)
    d_xy = moments.squared_distances(x0, y1)
    d_yx = moments.squared_distances(x1, y0)
    if sigma2 is None:
        two_s2 = torch.stack([d_xx, d_yy, d_xy, d_yx]).mean((0, 2)).detach().clamp_min(1e-12).unsqueeze(-1)
    else:
        two_s2 = 2.0 * sigma2
    h = (gaussian_kernel(d_xx, two_s2) + gaussian_kernel(d_yy, two_s2)
         - gaussian_kernel(d_xy, two_s2) - gaussian_kernel(d_yx, two_s2))
    return h.mean(-1)


def gaussian_mmd2_subset(
    x: Tensor, y: Tensor, size: int = 1024, sigma2: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Unbiased quadratic-time Gaussian MMD^2 (U-statistic) on a random subset of positions.

    Draws m = min(size, N, M) positions from x and from y, then
    MMD_u^2 = mean_{i!=j} k(x_i, x_j) + mean_{i!=j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j).
    Memory O(B m^2), whatever the resolution. ``sigma2=None``: 2 sigma^2 = mean squared distance
    over all sampled pairs (constant for the gradient).
    """
    m = min(size, x.shape[-1], y.shape[-1])
    if m < 2:
        raise ValueError("the Gaussian MMD needs at least 2 positions per map")
    xs = moments.subsample(x, m, generator)  # (B, C, m)
    ys = moments.subsample(y, m, generator)  # (C, m)
    d_xx = moments.pairwise_squared_distances(xs, xs)
    d_yy = moments.pairwise_squared_distances(ys, ys)
    d_xy = moments.pairwise_squared_distances(xs, ys)
    if sigma2 is None:
        off = m * (m - 1)
        mean_d2 = (d_xx.sum((-1, -2)) / off + d_yy.sum() / off + d_xy.mean((-1, -2))) / 3
        two_s2 = mean_d2.detach().clamp_min(1e-12).view(-1, 1, 1)
    else:
        two_s2 = 2.0 * sigma2
    off_diag = 1.0 - torch.eye(m, device=x.device, dtype=x.dtype)
    k_xx = (gaussian_kernel(d_xx, two_s2) * off_diag).sum((-1, -2)) / (m * (m - 1))
    k_yy = (gaussian_kernel(d_yy.unsqueeze(0), two_s2) * off_diag).sum((-1, -2)) / (m * (m - 1))
    k_xy = gaussian_kernel(d_xy, two_s2).mean((-1, -2))
    return k_xx + k_yy - 2 * k_xy


def random_fourier_features(x: Tensor, frequencies: Tensor, phases: Tensor) -> Tensor:
    """phi(x) = sqrt(2/D) cos(W^T x + b) (Rahimi & Recht 2007): (..., C, N) -> (..., N, D).

    With W ~ N(0, I / sigma^2) and b ~ U(0, 2 pi), E[phi(x)^T phi(y)] = exp(-||x-y||^2 / 2 sigma^2).
    """
    d = frequencies.shape[-1]
    return math.sqrt(2.0 / d) * torch.cos(x.transpose(-1, -2) @ frequencies + phases)


def gaussian_mmd2_rff(
    x: Tensor, frequencies: Tensor, phases: Tensor, target_embedding: Tensor, max_positions: int = 16384,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Gaussian MMD^2 through D random Fourier features: ||mean phi(x) - mean phi(y)||^2.

    The style's mean embedding (D,) is computed once; at most ``max_positions`` random generated
    positions are embedded, so memory is O(B * max_positions * D). Slightly biased (D finite,
    diagonal terms kept); deterministic for fixed frequencies.
    """
    xs = moments.subsample(x, max_positions, generator) if x.shape[-1] > max_positions else x
    return (random_fourier_features(xs, frequencies, phases).mean(-2) - target_embedding).pow(2).sum(-1)
