"""Inference side of conditioning: what a file says it was conditioned on and turning --style, --mix and --strength into network inputs, with one-line errors."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fastmmd.base.errors import UserError, did_you_mean
from fastmmd.model.conditioning import DEFAULT_STRENGTH, MAX_STYLES


@dataclass(frozen=True)
class Condition:
    """What a conditioned network is asked for: style weights (S,) and a strength; None = default.
    An arbitrary-style network's paintings are their statistics ``style`` (K, F) (and ``mix`` weighs
    those K; ``names`` label them)."""

    mix: tuple[float, ...] | None = None
    strength: float | None = None
    style: Tensor | None = field(default=None, compare=False)
    names: tuple[str, ...] = ()

    def tensors(self) -> tuple[Tensor | None, ...]:
        """(mix (S,), strength (1,)[, style (K, F)]) float32 tensors, None where default: what the models
        take (``style`` only for an arbitrary-style network)."""
        mix = None if self.mix is None else torch.tensor(self.mix, dtype=torch.float32)
        strength = None if self.strength is None else torch.tensor([self.strength], dtype=torch.float32)
        return (mix, strength) if self.style is None else (mix, strength, self.style)


@dataclass(frozen=True)
class ConditionSpace:
    """What a model file says it can be conditioned on: style names (several for a multi-style
    network, one or none otherwise) and the trained strength range (None: no strength input)."""

    styles: tuple[str, ...] = ()
    strength_range: tuple[float, float] | None = None
    arbitrary: bool = False  # any painting (fastmmd.model.arbitrary): its statistics are an input

    @property
    def conditioned(self) -> bool:
        return len(self.styles) > 1 or self.strength_range is not None or self.arbitrary

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> "ConditionSpace":
        """From a checkpoint description or an export's metadata (its ``network`` and ``conditioning``)."""
        network = meta.get("network") if isinstance(meta.get("network"), Mapping) else {}
        entry = meta.get("conditioning") if isinstance(meta.get("conditioning"), Mapping) else {}
        count = network.get("styles", 1)
        count = count if type(count) is int and 1 <= count <= MAX_STYLES else 1
        names = entry.get("styles")
        if not (isinstance(names, list) and len(names) == count and all(isinstance(n, str) for n in names)):
            names = [str(i) for i in range(count)] if count > 1 else []
        strength = None
        if network.get("strength_width"):
            bounds = (entry.get("strength") or {}).get("range") if isinstance(entry.get("strength"), Mapping) else None
            ok = isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(v, (int, float)) for v in bounds)
            strength = (float(bounds[0]), float(bounds[1])) if ok else (0.0, DEFAULT_STRENGTH)
        arbitrary = type(network.get("style_embedding")) is int and network["style_embedding"] > 0
        return cls(tuple(names), strength, arbitrary)

    def with_paintings(self, names: Sequence[str]) -> "ConditionSpace":
        """An arbitrary-style network's space for K given paintings: they are its "styles" (for
        ``--mix`` and labels), named ``names`` (file stems; indices where those repeat)."""
        unique = list(names) if len(set(names)) == len(names) else [str(i) for i in range(len(names))]
        return ConditionSpace(tuple(unique) if len(unique) > 1 else (), self.strength_range, True)

    def label(self, condition: Condition) -> str:
        """Short text for a condition: ``candy``, ``candy 0.7 + wave 0.3``, ``s=0.5`` (defaults filled in)."""
        parts = []
        if self.arbitrary and len(self.styles) < 2 and condition.names:
            parts.append(condition.names[0])
        if len(self.styles) > 1:
            mix = condition.mix or tuple(1.0 if i == 0 else 0.0 for i in range(len(self.styles)))
            used = [(n, w) for n, w in zip(self.styles, mix) if w > 0]
            parts.append(used[0][0] if len(used) == 1 else " + ".join(f"{n} {w:.2g}" for n, w in used))
        if self.strength_range is not None:
            parts.append(f"s={DEFAULT_STRENGTH if condition.strength is None else condition.strength:g}")
        return ", ".join(parts)

    def index(self, name: str, flag: str) -> int:
        """The index of style ``name`` (a name or a 0-based index), or a one-line error."""
        if name in self.styles:
            return self.styles.index(name)
        if name.strip().isascii() and name.strip().isdigit() and int(name) < len(self.styles):  # not "²"
            return int(name)
        choices = ", ".join(self.styles)
        raise UserError(f"{flag}: this model has no style {name!r} (its styles: {choices}; or an index 0.."
                        f"{len(self.styles) - 1}){did_you_mean(name, self.styles)}")

    def resolve(self, style: str | None = None, mix: str | None = None, strength: float | None = None) -> Condition:
        """``--style NAME|INDEX``, ``--mix a=0.7,b=0.3`` and ``--strength S`` as network inputs.

        ``--mix`` weights must be finite and >= 0 with a positive sum; they are normalised to sum to 1
        (``a=7,b=3`` is ``a=0.7,b=0.3``), styles not named get 0. ``--strength`` must lie in the
        trained range (0 = the content, 1 = the trained default). Every refusal is a one-line
        :class:`~fastmmd.base.errors.UserError`.
        """
        if style is not None and mix is not None:
            raise UserError("--style and --mix exclude each other: --style a is --mix a=1")
        weights = None
        if style is not None or mix is not None:
            flag = "--style" if style is not None else "--mix"
            if self.arbitrary and len(self.styles) < 2:
                raise UserError(f"{flag}: an arbitrary-style network blends the paintings given with --style-image "
                                "(give two or more, and --mix with one weight each)")
            if len(self.styles) < 2:
                raise UserError(f"{flag}: this model was trained for one style; it takes no {flag} "
                                "(train several with model.conditioning: [styles])")
            weights = [0.0] * len(self.styles)
            if style is not None:
                weights[self.index(str(style).strip(), "--style")] = 1.0
            else:
                parts = [p for p in str(mix).split(",") if p.strip()] or [""]
                if self.arbitrary and not any("=" in p for p in parts) and len(parts) == len(self.styles):
                    parts = [f"{name}={p}" for name, p in zip(self.styles, parts)]  # plain weights, in --style-image order
                for part in parts:
                    name, eq, value = part.partition("=")
                    try:
                        w = float(value)
                    except ValueError:
                        w = float("nan")
                    if not eq or not math.isfinite(w) or w < 0:
                        raise UserError(f"--mix takes NAME=WEIGHT pairs with finite weights >= 0, e.g. "
                                        f"--mix {self.styles[0]}=0.7,{self.styles[1]}=0.3; not {part.strip()!r}")
                    weights[self.index(name.strip(), "--mix")] += w
                top = max(weights)  # divided by the largest first: 1e308 + 1e308 must not overflow to inf
                if not (top > 0 and math.isfinite(top)):
                    raise UserError("--mix weights sum to 0; give at least one positive weight")
                weights = [w / top for w in weights]
                total = sum(weights)
                weights = [w / total for w in weights]
        if strength is not None:
            if self.strength_range is None:
                raise UserError("--strength: this model has no strength input (train one with "
                                "model.conditioning: [strength])")
            lo, hi = self.strength_range
            if not (math.isfinite(strength) and lo <= strength <= hi):
                raise UserError(f"--strength must lie in the trained range [{lo:g}, {hi:g}] (0 = the content, "
                                f"1 = the trained default), not {strength}")
        return Condition(None if weights is None else tuple(weights), strength)
