"""Evaluation distances between feature distributions, the same for every style loss.

``fastmmd compare`` judges every method (and every feed-forward model) with these functions, none
of which is one of the training losses' own objectives alone, so no method is graded by its own
yardstick only. They are pure functions of VGG feature tensors (points as columns: (B, C, N) or
(C, N), as in :mod:`fastmmd.losses.moments`):

* :func:`sliced_wasserstein`: the sliced 2-Wasserstein distance (Rabin et al. 2011; Heitz et al.
  2021 use it as a style loss): project both samples on P random unit directions, compare the
  sorted projections (1-D optimal transport), average the squared gaps, take the root. It sees the
  whole distribution, not a few moments, so it can tell apart methods that match different moments.
* :func:`gram_distance`: the relative Gram (second-moment) error ||G^_x - G^_y||^2 / ||G^_y||^2.
* :func:`content_distance`: the relative feature MSE mean (F - P)^2 / mean P^2.
* :func:`style_swd` and :func:`content_score`: ``compare``'s two summary numbers (``style_sw``,
  ``content``) for a whole batch at once; training logs them on the validation photos
  (``val/style_swd``, ``val/content_distance``), so its learning curves and ``compare``/``evaluate``
  reports are the same measurement.
* :func:`temporal_error`: flicker of a stylized clip whose camera motion is known
  (:mod:`fastmmd.core.motion`): mean |f_{t+1} - warp(f_t)| over the pixels visible in both frames, in
  [0, 1] RGB units; :func:`masked_abs_error` is its per-pair core (training logs it on a shifted
  copy of each validation photo as ``val/temporal_error``).
* :func:`gram_mmd_identity`: Gatys' Gram loss and the biased poly-kernel MMD^2 / (4 C^2) computed
  by two independent routes (C x C Gram matrices vs N x N kernel sums) on the same positions; their
  ratio is 1 up to rounding (Li et al. 2017: the Gram loss is MMD² under k(x, y) = (xᵀy)², divided by 4C²).

Everything is seeded: a call with the same inputs gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import torch
from torch import Tensor

from fastmmd.core import motion
from fastmmd.losses import matching, mmd, moments
from fastmmd.losses.content import relative_content_loss


def _as_batch(x: Tensor) -> tuple[Tensor, bool]:
    x = moments.positions(x) if x.dim() == 4 else x
    return (x.unsqueeze(0), True) if x.dim() == 2 else (x, False)


def _quantiles(sorted_values: Tensor, count: int) -> Tensor:
    """Values of the empirical quantile function at levels (k + 1/2) / count, k = 0..count-1.

    ``sorted_values`` is (..., n, P), sorted along n. Sample i of n sits at level (i + 1/2) / n;
    levels in between are linearly interpolated, levels outside are clamped to the extremes. With
    count == n this returns the sorted values unchanged.
    """
    n = sorted_values.shape[-2]
    if n == count:
        return sorted_values
    levels = (torch.arange(count, device=sorted_values.device, dtype=sorted_values.dtype) + 0.5) / count
    pos = (levels * n - 0.5).clamp(0, n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (pos - lo.to(pos.dtype)).unsqueeze(-1)  # (count, 1)
    return sorted_values.index_select(-2, lo) * (1 - frac) + sorted_values.index_select(-2, hi) * frac


def sliced_wasserstein(
    x: Tensor, y: Tensor, projections: int = 64, generator: torch.Generator | None = None,
) -> Tensor:
    """Sliced 2-Wasserstein distance between the positions of ``x`` and the sample ``y``.

    SW_2(x, y) = sqrt( mean_p  mean_k (Q_{x.theta_p}(q_k) - Q_{y.theta_p}(q_k))^2 ), with theta_p
    random unit directions in R^C and Q the quantile function of the projected sample. When the
    sample sizes differ (N != M), both quantile functions are evaluated at the max(N, M) levels
    q_k = (k + 1/2) / max(N, M) by linear interpolation between order statistics, so an image and a
    style of different sizes are compared as distributions; with N == M this is exactly the mean
    squared gap between sorted projections.

    Args:
        x: generated features (B, C, N), (B, C, H, W) or (C, N).
        y: reference features (C, M) or (1, C, H, W).
        projections: number P of random directions.
        generator: source of the directions (CPU); default a fresh one seeded with 0, so the same
            directions are used for every call with the same C and P.

    Returns:
        (B,), or a scalar when ``x`` was (C, N). In the units of the features.
    """
    xb, single = _as_batch(x)
    yb, _ = _as_batch(y)
    if yb.shape[0] != 1:
        raise ValueError("y must be one sample (C, M)")
    c = xb.shape[-2]
    if yb.shape[-2] != c:
        raise ValueError(f"x has {c} channels, y has {yb.shape[-2]}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    dirs = torch.randn(c, projections, generator=gen, dtype=torch.float64)
    dirs = (dirs / dirs.norm(dim=0, keepdim=True)).to(xb.device, xb.dtype)  # (C, P)
    px = (xb.transpose(-1, -2) @ dirs).sort(dim=-2).values  # (B, N, P)
    py = (yb[0].transpose(-1, -2) @ dirs).sort(dim=-2).values  # (M, P)
    count = max(px.shape[-2], py.shape[-2])
    gap = _quantiles(px, count) - _quantiles(py, count)
    value = gap.pow(2).mean((-1, -2)).sqrt()
    return value[0] if single else value


def gram_distance(x: Tensor, y: Tensor, relative: bool = True) -> Tensor:
    """Gram (second-moment) distance between the positions of ``x`` and ``y``.

    ``relative=True``: ||G^_x - G^_y||_F^2 / ||G^_y||_F^2 with G^ = F F^T / N (0 = same second
    moments, 1 = as far as an all-zero map); ``relative=False``: Gatys' layer loss
    ||G^_x - G^_y||_F^2 / (4 C^2).

    Returns:
        (B,) for x (B, C, N), a scalar for x (C, N).
    """
    xb, single = _as_batch(x)
    yb, _ = _as_batch(y)
    target = moments.second_moment(yb[0])
    value = matching.gram_loss(xb, target)
    if relative:
        c = xb.shape[-2]
        value = value * (4 * c * c) / target.pow(2).sum().clamp_min(1e-30)
    return value[0] if single else value


def content_distance(x: Tensor, target: Tensor) -> Tensor:
    """Relative feature MSE mean (F - P)^2 / mean P^2 per sample: (B, C, ...) vs (B or 1, C, ...) -> (B,)."""
    return relative_content_loss(x, target, eps=1e-30)


def masked_abs_error(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """sum_{c,u} m(u) |a - b| / (C sum_u m(u)) per sample: (B, C, H, W) x2, (B, 1, H, W) -> (B,)."""
    diff = (a.float() - b.float()).abs() * mask
    return diff.flatten(1).sum(1) / (mask.flatten(1).sum(1) * a.shape[1]).clamp_min(1)


def temporal_error(frames: Tensor, views: Sequence[motion.View], margin: float = 2.0) -> Tensor:
    """Flicker of a clip (T, C, H, W) filmed along known ``views``: per pair of consecutive frames,
    mean |f_{t+1} - warp(f_t)| over the pixels both frames show (at least ``margin`` px inside),
    (T - 1,). A clip that only moves with the camera scores the warp's own resampling error (the
    input clip's score is that floor, plus its noise)."""
    warped, mask = motion.warp(frames[:-1], views[:-1], views[1:], margin)
    return masked_abs_error(frames[1:], warped, mask)


def gram_mmd_identity(
    x: Tensor, y: Tensor, max_positions: int = 2048, generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Gatys' Gram loss and poly-MMD^2 / (4 C^2) of the same samples, by two independent routes.

    Both samples are cut to the same m = min(N, M, max_positions) positions (a seeded random subset
    when larger), so Gatys' own formula applies: E = 1/(4 C^2 m^2) sum_ij (G_ij - A_ij)^2 with
    G = F F^T, A = S S^T (computed by :func:`fastmmd.losses.matching.gram_loss`), against
    MMD_b^2[k = (a^T b)^2] / (4 C^2) from kernel sums (:func:`fastmmd.losses.mmd.poly_mmd2`, chunked,
    never a whole N x M kernel matrix). Both run in float64.

    Args:
        x, y: features (C, N) and (C, M) (or (1, C, H, W)).

    Returns:
        ``(gram, mmd)``; ``gram / mmd == 1`` up to rounding (Li et al. 2017: Gram loss = MMD² with (xᵀy)² over 4C²).
    """
    xs, ys = _as_batch(x)[0][0].double(), _as_batch(y)[0][0].double()
    m = min(xs.shape[-1], ys.shape[-1], max_positions)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    xs = moments.subsample(xs, m, gen) if xs.shape[-1] > m else xs
    ys = moments.subsample(ys, m, gen) if ys.shape[-1] > m else ys
    c = xs.shape[0]
    gram = matching.gram_loss(xs.unsqueeze(0), moments.second_moment(ys))[0]
    uniform = torch.full((ys.shape[-1],), 1.0 / ys.shape[-1], dtype=ys.dtype)
    kernel = mmd.poly_mmd2(xs.unsqueeze(0), ys, uniform, c=0.0, degree=2)[0] / (4 * c * c)
    return float(gram), float(kernel)


def _relative_sw(x: Tensor, y: Tensor, projections: int, seed: int) -> tuple[Tensor, Tensor]:
    """(SW_2(x, y), RMS of y): the layer's distance and the scale that makes layers comparable."""
    sw = sliced_wasserstein(x, y, projections, torch.Generator().manual_seed(seed))
    return sw, y.pow(2).mean().sqrt().clamp_min(1e-12)


def style_swd(
    output: Mapping[str, Tensor], style: Mapping[str, Tensor], style_layers: Sequence[str],
    projections: int = 64, seed: int = 0,
) -> Tensor:
    """``style_sw`` of :func:`evaluate_features` for a batch: (1/L) sum_l SW_2(F_l, S_l) / RMS(S_l).

    Args:
        output: features ``{layer: (B, C, H, W)}`` of the images to score.
        style: features ``{layer: (1, C, H, W) or (C, M)}`` of the style.
        style_layers: the L layers averaged (``compare``: relu1_1..relu5_1).
        projections, seed: as :func:`evaluate_features` (layer i's directions are seeded with
            ``seed + i``), so a one-image batch gives the number ``compare`` gives that image.

    Returns:
        (B,), float32.
    """
    total = None
    for i, layer in enumerate(style_layers):
        x = moments.positions(output[layer].float())  # (B, C, N)
        y = _as_batch(style[layer].float())[0][0]  # (C, M)
        sw, rms = _relative_sw(x, y, projections, seed + i)
        total = sw / rms if total is None else total + sw / rms
    return total / len(style_layers)


def content_score(output: Mapping[str, Tensor], content: Mapping[str, Tensor], content_layers: Sequence[str]) -> Tensor:
    """``content`` of :func:`evaluate_features` for a batch: mean over layers of :func:`content_distance`, (B,)."""
    return sum(content_distance(output[t].float(), content[t].float()) for t in content_layers) / len(content_layers)


def evaluate_features(
    output: Mapping[str, Tensor],
    style: Mapping[str, Tensor],
    style_layers: Sequence[str],
    content: Mapping[str, Tensor] | None = None,
    content_layers: Sequence[str] = (),
    projections: int = 64,
    identity_positions: int = 1024,
    seed: int = 0,
) -> dict[str, object]:
    """The evaluation ``fastmmd compare`` applies to every cell, from feature maps (1, C, H, W).

    Per style layer: ``sw`` (sliced Wasserstein), ``sw_rel`` (``sw`` over the RMS of the style
    features, so layers of different scale can be averaged), ``gram`` (relative Gram distance) and
    the Gram/MMD identity (``identity_gram``, ``identity_mmd``, ``identity_ratio``). Summaries:
    ``style_sw`` = mean of ``sw_rel``, ``style_gram`` = mean of ``gram`` over layers, ``content``
    = mean relative content distance over ``content_layers`` (``None`` without a content image).
    Directions and subsets come from generators seeded with ``seed`` per layer.
    """
    layers: dict[str, dict[str, float]] = {}
    for i, layer in enumerate(style_layers):
        x = moments.positions(output[layer].float())[0]
        y = moments.positions(style[layer].float())[0]
        sw, rms = (float(v) for v in _relative_sw(x, y, projections, seed + i))
        g, k = gram_mmd_identity(x, y, identity_positions, torch.Generator().manual_seed(seed + i))
        layers[layer] = {"sw": sw, "sw_rel": sw / rms, "gram": float(gram_distance(x, y)),
                         "identity_gram": g, "identity_mmd": k, "identity_ratio": g / k if k else float("nan")}
    result: dict[str, object] = {
        "style_sw": sum(v["sw_rel"] for v in layers.values()) / len(layers),
        "style_gram": sum(v["gram"] for v in layers.values()) / len(layers),
        "content": None, "layers": layers,
    }
    if content is not None and content_layers:
        result["content"] = float(content_score(output, content, content_layers)[0])
    return result


class ImageScorer:
    """:func:`evaluate_features` of whole images, computing each reference image's features once.

    ``compare`` and ``evaluate`` score many outputs against the same few style images and photos;
    this is the one place that runs the feature network over them and caches the references.

    Args:
        features: maps an image (1, 3, H, W) to its feature maps by layer (a VGGFeatures).
        device: where ``features`` runs.
        style_layers, content_layers, projections, identity_positions, seed: as :func:`evaluate_features`.
    """

    def __init__(self, features: Callable[[Tensor], Mapping[str, Tensor]], device: torch.device,
                 style_layers: Sequence[str], content_layers: Sequence[str], projections: int = 64,
                 identity_positions: int = 1024, seed: int = 0) -> None:
        self.features, self.device = features, device
        self.style_layers, self.content_layers = style_layers, content_layers
        self.projections, self.identity_positions, self.seed = projections, identity_positions, seed
        self._references: dict[Hashable, Mapping[str, Tensor]] = {}

    @torch.no_grad()
    def reference(self, key: Hashable, image: Tensor) -> Mapping[str, Tensor]:
        """The features of reference ``image``, computed the first time ``key`` is asked for."""
        if key not in self._references:
            self._references[key] = self.features(image.to(self.device))
        return self._references[key]

    @torch.no_grad()
    def __call__(self, image: Tensor, style: Mapping[str, Tensor],
                 content: Mapping[str, Tensor] | None = None) -> dict[str, object]:
        """The metrics of ``image`` against reference features ``style`` and (unless None) ``content``."""
        return evaluate_features(self.features(image.to(self.device)), style, self.style_layers, content,
                                 self.content_layers if content is not None else (), self.projections,
                                 self.identity_positions, self.seed)
