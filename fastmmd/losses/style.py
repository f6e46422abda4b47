"""Style-loss methods: how each prepares a style target once and measures a batch against it.

Each method wraps the pure functions of :mod:`moments`, :mod:`mmd` and :mod:`matching` in the
paper's per-layer normalisation L = MMD^2 / Z_k (Li et al. 2017, Sec. 3):

========  =====================================  =========  ==========================================
method    kernel / statistic                     Z_k        value (per layer, per sample)
========  =====================================  =========  ==========================================
gram      Gatys' Gram matrix                     4 C^2      ||G^_x - G^_y||^2 / (4 C^2)
poly      (x^T y + c)^d, default c=0, d=2        C^2        MMD^2 / C^2  (= 4 * gram when c = 0, d = 2)
linear    x^T y                                  C          ||mu_x - mu_y||^2 / C
gaussian  exp(-||x-y||^2 / 2 sigma^2)            1          MMD^2 (linear-time, subset or RFF estimate)
bn        per-channel mean and std               C          (||dmu||^2 + ||dsigma||^2) / C
========  =====================================  =========  ==========================================

Each target also records its ``null`` value: the method's value for an all-zero feature map (for the
Gaussian, 1: its MMD^2 already lies in [0, 2)). The criterion's default ``relative`` normalisation
divides by it, which turns every moment method into a relative squared error (e.g.
||G^_x - G^_y||^2 / ||G^_y||^2). That is free of activation scale, so one style weight means about
the same across layers, image sizes and weight sources (Caffe's VGG reads 0-255 pixels,
torchvision's standardised ones, so their activations differ in scale by orders of magnitude),
which the paper's fixed constants (1e3, 1e-1, 3e14, 2e3, tuned for one setup) are not.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fastmmd.losses import matching, mmd, moments
from fastmmd.losses.settings import StyleLoss

Target = dict[str, Tensor]


class StyleMethod:
    """One style distance: ``prepare`` a weighted style sample once, then ``__call__`` per batch."""

    name: str = ""

    def __init__(self, options: StyleLoss) -> None:
        self.options = options

    def prepare(self, y: Tensor, w: Tensor, generator: torch.Generator | None = None) -> Target:
        """Style sample (C, M) with weights (M,) -> target tensors, including ``null`` (a scalar)."""
        raise NotImplementedError

    def __call__(self, x: Tensor, target: Target, generator: torch.Generator | None = None) -> Tensor:
        """Generated features (B, C, N) -> paper-normalised distance (B,)."""
        raise NotImplementedError


class Gram(StyleMethod):
    name = "gram"

    def prepare(self, y, w, generator=None):
        second = moments.second_moment(y, w)
        return {"second": second, "null": second.pow(2).sum() / (4 * y.shape[0] ** 2)}

    def __call__(self, x, target, generator=None):
        return matching.gram_loss(x, target["second"])


class Linear(StyleMethod):
    name = "linear"

    def prepare(self, y, w, generator=None):
        mu = moments.mean(y, w)
        return {"mean": mu, "null": mu.pow(2).sum() / y.shape[0]}

    def __call__(self, x, target, generator=None):
        return mmd.linear_mmd2(x, target["mean"]) / x.shape[-2]


class Poly(StyleMethod):
    name = "poly"

    def prepare(self, y, w, generator=None):
        c, d, channels = self.options.poly_c, self.options.poly_degree, y.shape[0]
        if d == 2:
            second, mu = moments.second_moment(y, w), moments.mean(y, w)
            null = second.pow(2).sum() + 2 * c * mu.pow(2).sum()
            return {"second": second, "mean": mu, "null": null / channels**2}
        ys = moments.resample(y, w, self.options.poly_positions, generator)
        ws = torch.full((ys.shape[1],), 1.0 / ys.shape[1], dtype=ys.dtype, device=ys.device)
        # null = MMD^2(0, Y) = k(0,0) + E k(y,y') - 2 E k(0,y) = E (y^T y' + c)^d - c^d, since k(0, .) = c^d.
        # abs(): with c < 0, or odd d on signed features, it can come out negative, and a negative
        # normaliser would turn minimising the loss into maximising it; its size is what matters.
        null = mmd.poly_self_term(ys, ws, c, d, 1024) - c**d
        return {"sample": ys, "weights": ws, "null": null.abs() / channels**2}

    def __call__(self, x, target, generator=None):
        c, d = self.options.poly_c, self.options.poly_degree
        if d == 2:
            value = mmd.poly2_mmd2(x, target["second"], target["mean"], c)
        else:  # O(N^2 C): at most poly_positions random generated positions take part
            cap = self.options.poly_positions
            xs = moments.subsample(x, cap, generator) if x.shape[-1] > cap else x
            value = mmd.poly_mmd2(xs, target["sample"], target["weights"], c, d)
        return value / x.shape[-2] ** 2


class Gaussian(StyleMethod):
    name = "gaussian"

    def prepare(self, y, w, generator=None):
        o = self.options
        ys = moments.resample(y, w, o.target_positions, generator)
        target = {"sample": ys, "null": ys.new_ones(())}
        if o.gaussian_estimator == "rff":
            # Bandwidth rules, one per estimator, all "2 sigma^2 = a mean squared distance" (the paper's
            # rule): linear-time and subset recompute it each call from the very pairs they evaluate
            # (generated and style together, so the kernel follows the generated features as they
            # move); RFF must fix sigma when it draws its frequencies, here, before any generated
            # features exist, so it uses pairs of style positions only.
            if o.gaussian_sigma2 is None:
                half = ys.shape[1] // 2
                two_s2 = moments.squared_distances(ys[:, :half], ys[:, half:2 * half]).mean().clamp_min(1e-12)
            else:
                two_s2 = torch.tensor(2.0 * o.gaussian_sigma2)
            freq = torch.randn(ys.shape[0], o.gaussian_features, generator=generator).to(ys) / two_s2.div(2).sqrt()
            phases = (torch.rand(o.gaussian_features, generator=generator) * 2 * math.pi).to(ys)
            target |= {"frequencies": freq, "phases": phases,
                       "embedding": mmd.random_fourier_features(ys, freq, phases).mean(0)}
        return target

    def __call__(self, x, target, generator=None):
        o = self.options
        if o.gaussian_estimator == "linear":
            return mmd.gaussian_mmd2_linear(x, target["sample"], o.gaussian_sigma2, o.gaussian_pairs, generator)
        if o.gaussian_estimator == "subset":
            return mmd.gaussian_mmd2_subset(x, target["sample"], o.gaussian_subset, o.gaussian_sigma2, generator)
        return mmd.gaussian_mmd2_rff(x, target["frequencies"], target["phases"], target["embedding"],
                                     o.target_positions, generator)


class BNStatistics(StyleMethod):
    name = "bn"

    def prepare(self, y, w, generator=None):
        mu, sd = moments.mean(y, w), moments.std(y, w, eps=self.options.bn_eps)
        return {"mean": mu, "std": sd, "null": (mu.pow(2).sum() + sd.pow(2).sum()) / y.shape[0]}

    def __call__(self, x, target, generator=None):
        return matching.bn_loss(x, target["mean"], target["std"], eps=self.options.bn_eps)


METHODS: dict[str, type[StyleMethod]] = {m.name: m for m in (Gram, Linear, Poly, Gaussian, BNStatistics)}
