"""Style losses as distances between feature distributions (Li et al. 2017), and their fusions.

A loss spec is a method name or a weighted sum of them: ``gram``, ``bn+poly``, ``0.5*bn+0.5*poly``,
``linear+gaussian``. Unweighted fusions give every method weight 1/k so a fusion is about as strong
as a single method. (The authors' ``--multi-weight`` multiplied the *first* method's weight by every
entry, so "0.5,0.5" gave 0.25 and 1; fastmmd does what was intended: w_i for method i.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from fastmmd.base.errors import UserError, did_you_mean
from fastmmd.losses.content import content_loss, relative_content_loss, total_variation
from fastmmd.losses.settings import StyleLoss
from fastmmd.losses.style import METHODS, StyleMethod

__all__ = ["METHODS", "StyleLoss", "StyleMethod", "content_loss", "parse_loss", "relative_content_loss", "total_variation"]

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
        if name not in METHODS:
            raise UserError(f"unknown style loss {m['name']!r}{did_you_mean(name, METHODS)} (choose from {', '.join(METHODS)})")
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
