"""Moment-matching style distances built from :mod:`fastmmd.losses.moments`.

* Gram loss (Gatys et al. 2016): E = 1/(4 C^2 N^2) sum_ij (G_ij - A_ij)^2 with G = F F^T. With the
  resolution-free second moment G^ = G / N this is ||G^_x - G^_y||^2 / (4 C^2), which is exactly
  the polynomial-kernel MMD^2 (c = 0, d = 2) divided by 4 C^2 (Li et al. 2017, Theorem 1).
* BN-statistics matching (Li et al. 2017, Sec. 4): (1/C) sum_c (mu_x,c - mu_y,c)^2 + (sigma_x,c - sigma_y,c)^2.
"""

from __future__ import annotations

from torch import Tensor

from fastmmd.losses import moments


def gram_loss(x: Tensor, target_second: Tensor) -> Tensor:
    """Gatys' style loss ||G^_x - G^_y||_F^2 / (4 C^2): (B, C, N), (C, C) -> (B,)."""
    c = x.shape[-2]
    return (moments.second_moment(x) - target_second).pow(2).sum((-1, -2)) / (4 * c * c)


def bn_loss(x: Tensor, target_mean: Tensor, target_std: Tensor, eps: float = 1e-5) -> Tensor:
    """BN-statistics distance (||mu_x - mu_y||^2 + ||sigma_x - sigma_y||^2) / C: (B, C, N) -> (B,).

    Zero exactly when every channel's mean and standard deviation match.
    """
    c = x.shape[-2]
    d_mean = (moments.mean(x) - target_mean).pow(2).sum(-1)
    d_std = (moments.std(x, eps=eps) - target_std).pow(2).sum(-1)
    return (d_mean + d_std) / c
