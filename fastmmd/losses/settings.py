"""The style loss's settings, declared once for every command.

:class:`StyleLoss` is the one declaration of what :class:`~fastmmd.losses.criterion.StyleCriterion` needs:
the method (or fusion), the term weights, the VGG taps and their weights, the normalisation and each
method's kernel and estimator settings. ``fastmmd fit`` reads it as ``--model.loss.*`` (LightningCLI
turns a dataclass argument into a group), and ``optimize``, ``compare`` and ``evaluate`` build their
``--dashed-flags`` and help from the same fields (:func:`fastmmd.commands.parsing.add_dataclass_flags`), so a
default or its reason lives here and nowhere else. ``tests/test_settings.py`` checks that every
command exposes these options with these defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from fastmmd.base.errors import UserError, did_you_mean
from fastmmd.vgg.features import CONTENT_LAYERS, STYLE_LAYERS, check_taps

#: The paper's style methods, by the name a spec uses (:data:`fastmmd.losses.style.METHODS` implements them).
METHOD_NAMES = ("gram", "linear", "poly", "gaussian", "bn")

Normalization = Literal["relative", "paper"]
GaussianEstimator = Literal["linear", "subset", "rff"]


@dataclass(frozen=True)
class StyleLoss:
    """Style, content and total-variation loss settings (Li et al. 2017; see :mod:`fastmmd.losses.criterion`).

    Attributes:
        method: gram | linear | poly | gaussian | bn, or a fusion such as bn+poly or 0.5*bn+0.5*poly.
            Default gram: Gatys' loss (= poly MMD with c=0, d=2), the baseline the others are read against.
        fusion_weights: weights of the fused methods, e.g. [0.5, 0.5] (default 1/k each, so a fusion
            is about as strong as one method).
        style_weight: style term weight. 5 for every method and mode: the losses are normalised and
            calibrated to about the same strength (criterion.CALIBRATION), and 5 is the paper's
            reference gamma; fit, optimize and the shipped configs use it, except
            configs/video.yaml (10: its stability term competes with the style).
        content_weight: content term weight (relative relu4_2 error, so 1 balances a normalised style).
        tv_weight: total-variation weight. 0 in every mode: the resize-conv network draws no
            checkerboard, and for optimize the former 1e-3 was a no-op, a negligible share of the
            loss (measured: docs/benchmarks.md, "Loss calibration"); raise it (e.g. 10) to smooth
            on purpose.
        style_layers: VGG-19 style taps (Li et al.'s and Gatys' relu1_1..relu5_1).
        style_layer_weights: their weights, normalised to sum 1 (default equal, as in the paper).
        content_layers: VGG-19 content taps (relu4_2, as in Gatys et al. and Li et al.).
        normalization: relative (default: each loss over its value for an all-zero map, scale-free
            across layers, sizes and VGG weights) or paper (the raw 1/Z_k MMD^2 of Li et al.).
        poly_c: polynomial kernel offset c in (x^T y + c)^d (0: the Gram identity).
        poly_degree: polynomial kernel degree d (2 takes the exact moment route; others the
            chunked exact sum).
        poly_positions: for poly degree != 2 (cost O(N^2 C)): random positions per side that take part.
        gaussian_estimator: Gaussian MMD estimator: subset (default: unbiased quadratic estimate on
            random subsets), linear (the paper's linear-time one) or rff (random Fourier features,
            biased but never negative). linear's variance makes L-BFGS diverge at high style weights
            (tubingen x starry_night, weight 20), while subset and rff stay stable.
        gaussian_sigma2: fixed Gaussian sigma^2 (default: 2 sigma^2 = mean squared pair distance).
        gaussian_pairs: most pairs the linear estimator uses per step (32768: every relu1_1
            position of a 256 px image, freshly paired each step).
        gaussian_subset: positions per side for the subset estimator.
        gaussian_features: number D of random Fourier features (rff).
        bn_eps: epsilon in the BN loss's standard deviation sqrt(var + eps) (BatchNorm's 1e-5).
        target_positions: style positions kept per layer by sample-based estimators (65536: all of
            them up to a 256 px style at relu1_1; 16 MB there).
    """

    method: str = "gram"
    fusion_weights: tuple[float, ...] | None = None
    style_weight: float = 5.0
    content_weight: float = 1.0
    tv_weight: float = 0.0
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None
    content_layers: tuple[str, ...] = CONTENT_LAYERS
    normalization: Normalization = "relative"
    poly_c: float = 0.0
    poly_degree: int = 2
    poly_positions: int = 4096
    gaussian_estimator: GaussianEstimator = "subset"
    gaussian_sigma2: float | None = None
    gaussian_pairs: int = 32768
    gaussian_subset: int = 1024
    gaussian_features: int = 256
    bn_eps: float = 1e-5
    target_positions: int = 65536

    def __post_init__(self) -> None:
        # lists from YAML, jsonargparse or a checkpoint's hyper-parameters -> tuples (hashable, frozen)
        for name in ("fusion_weights", "style_layers", "style_layer_weights", "content_layers"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    def validate(self) -> None:
        """Every check of the settings, in one place (run at construction): a known method or
        fusion, taps VGG-19 has, finite non-negative weights.

        Raises:
            UserError: the first setting that is wrong, in one line.
        """
        if not self.style_layers:
            raise UserError("at least one style layer is needed")
        check_taps(tuple(self.style_layers) + tuple(self.content_layers))
        weights = [1.0] * len(self.style_layers) if self.style_layer_weights is None else self.style_layer_weights
        if (len(weights) != len(self.style_layers) or min(weights) < 0 or sum(weights) <= 0
                or not all(math.isfinite(w) for w in weights)):
            raise UserError(f"style_layer_weights must be {len(self.style_layers)} finite non-negative numbers, not all zero")
        if self.normalization not in ("relative", "paper"):
            raise UserError(f"normalization must be 'relative' or 'paper', not {self.normalization!r}")
        for name in ("style_weight", "content_weight", "tv_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise UserError(f"{name} must be a finite non-negative number, not {value}")
        if self.gaussian_estimator not in ("linear", "subset", "rff"):
            raise UserError(f"gaussian_estimator must be linear, subset or rff, not {self.gaussian_estimator!r}")
        parse_loss(self.method, self.fusion_weights)

    @classmethod
    def of(cls, value: StyleLoss | dict | None) -> StyleLoss:
        """A :class:`StyleLoss` from itself, ``None`` (defaults) or a dict of its fields (a
        checkpoint's hyper-parameters hold the plain dict, loadable with ``weights_only=True``)."""
        if value is None:
            return cls()
        return value if isinstance(value, cls) else cls(**value)


_TERM = re.compile(r"^\s*(?:(?P<weight>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z_]+)\s*$")


def parse_loss(spec: str, weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """``"0.5*bn+0.5*poly"`` -> ``[("bn", 0.5), ("poly", 0.5)]``; names are case-insensitive.

    Args:
        spec: method names joined by ``+``, each optionally prefixed by ``weight*``.
        weights: per-method weights (overrides inline ones); default 1/k each.
    """
    terms: list[tuple[str, float | None]] = []
    for part in str(spec).split("+"):
        m = _TERM.match(part)
        if not m:
            raise UserError(f"cannot parse loss {spec!r}: expected e.g. 'gram', 'bn+poly' or '0.5*bn+0.5*poly'")
        name = m["name"].lower()
        if name not in METHOD_NAMES:
            raise UserError(f"unknown style loss {m['name']!r}{did_you_mean(name, METHOD_NAMES)} (choose from {', '.join(METHOD_NAMES)})")
        terms.append((name, float(m["weight"]) if m["weight"] else None))
    names = [n for n, _ in terms]
    if len(set(names)) != len(names):
        raise UserError(f"loss {spec!r} names a method twice")
    if weights is not None:
        if len(weights) != len(terms):
            raise UserError(f"{len(weights)} fusion weights given for {len(terms)} loss methods in {spec!r}")
        if not all(math.isfinite(float(w)) for w in weights):
            raise UserError(f"fusion weights must be finite, not {list(weights)}")
        return [(n, float(w)) for n, w in zip(names, weights, strict=True)]
    if all(w is None for _, w in terms):
        return [(n, 1.0 / len(terms)) for n in names]
    if any(w is None for _, w in terms):
        raise UserError(f"loss {spec!r}: give a weight to every method or to none")
    return [(n, float(w)) for n, w in terms]
