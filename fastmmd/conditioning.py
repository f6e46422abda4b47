"""One network for many styles and a style-strength knob: conditional instance normalisation.

Two published extensions of the feed-forward network (:mod:`fastmmd.networks`), both of which act
only on the affine parameters that follow each instance normalisation:

* **Styles** (Dumoulin, Shlens & Kudlur, "A Learned Representation for Artistic Style", ICLR 2017):
  every norm layer keeps a table of S scale rows Gamma (S, C) and S shift rows Beta (S, C), one per
  style; everything else is shared. A convex mix m (B, S) of styles selects or blends them,
  gamma = m Gamma, beta = m Beta, so a one-hot m is that style's affine instance norm and a blend
  mixes the parameters (their Fig. 7), not the images.
* **Strength** (Babaeizadeh & Ghiasi, "Adjustable Real-time Style Transfer", ICLR 2020): the style
  weight is sampled per batch during training, lambda = s x style_weight with s drawn from
  ``model.strength_range``, and s is an input of the network. As they feed the loss weights through
  a small fully-connected network that predicts the norm parameters, s goes through
  h(s) = [s - 1, ReLU(W2 ReLU(W1 s + b1) + b2)] (H = :data:`STRENGTH_WIDTH` features,
  :class:`StrengthEmbedding`), and every norm layer adds a per-style linear read-out of it:
  gamma_k(s) = Gamma_k + h(s) A_k, beta_k(s) = Beta_k + h(s) D_k.

Both together: with c = [m, m (x) h(s)] (B, S + S H), the conditioned network's only new operation is
gamma = c W_gamma, beta = c W_beta per norm layer (:class:`ConditionalAffine`), where W stacks the S
style rows over the S H strength rows (zero at initialisation, so a fresh or warm-started network
computes plain conditional instance norm at every strength). gamma is linear in m, so a blend of
styles at strength s blends each style's parameters at strength s.

This module also holds the inference side: what a file's metadata says it was conditioned on
(:class:`ConditionSpace`) and turning ``--style``, ``--mix`` and ``--strength`` into network inputs
(:meth:`ConditionSpace.resolve`), with one-line errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastmmd.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from fastmmd.networks import TransformerNet

#: Hidden units of the strength MLP h(s) (a network records it as ``strength_width``).
STRENGTH_WIDTH = 16
#: Most styles one network may hold; a file asking for more is refused before anything is built.
MAX_STYLES = 256
#: The strength every conditioned network is trained to reproduce as "the" style: s = 1.
DEFAULT_STRENGTH = 1.0


class ConditionalAffine(nn.Module):
    """The affine part of a conditional instance norm: y = gamma(c) x + beta(c), per channel.

    Follows an ``nn.InstanceNorm2d(affine=False)``, so the statistics hooks of
    :mod:`fastmmd.norm_stats` (tiles, video) work unchanged on conditioned networks.

    Args:
        channels: C.
        styles: S, rows of the per-style tables.
        strength_width: H, units of the strength MLP (0 = no strength input).
        embedding: D rows read out from a style embedding e (an arbitrary-style network,
            :mod:`fastmmd.arbitrary`, whose condition is c = [1, e]: S = 1, H = 0).

    Parameters ``weight`` and ``bias`` are (S + S H + D, C): rows 0..S-1 are Dumoulin's per-style
    Gamma and Beta (ones and zeros, as ``nn.InstanceNorm2d`` starts), rows S.. the strength and
    embedding read-outs A_k, D_k (zeros).
    """

    def __init__(self, channels: int, styles: int, strength_width: int = 0, embedding: int = 0) -> None:
        super().__init__()
        self.styles = styles
        rows = styles * (1 + strength_width) + embedding
        self.weight = nn.Parameter(torch.cat([torch.ones(styles, channels), torch.zeros(rows - styles, channels)]))
        self.bias = nn.Parameter(torch.zeros(rows, channels))

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        """x (B, C, H, W) normalised, condition c (B, S + S H) -> gamma x + beta."""
        gamma = condition @ self.weight  # (B, C)
        beta = condition @ self.bias
        return x * gamma[:, :, None, None] + beta[:, :, None, None]


class StrengthEmbedding(nn.Module):
    """h(s) = [s - 1, ReLU(W2 ReLU(W1 s + b1) + b2)]: the strength s (B,) as H features (B, H).

    The first feature is s itself, centred on the trained default 1: the MLP's features start out
    nearly constant over the range, so a read-out of them alone learns an s-independent offset
    first; s - 1 gives every norm layer a direct, zero-mean handle on s from the first step
    (measured: with the MLP alone, 600 tiny steps left the output almost independent of s).
    """

    def __init__(self, width: int = STRENGTH_WIDTH) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, width - 1), nn.ReLU(), nn.Linear(width - 1, width - 1), nn.ReLU())
        self.centre = DEFAULT_STRENGTH  # an attribute: TorchScript cannot read module globals

    def forward(self, strength: Tensor) -> Tensor:
        s = strength[:, None]
        return torch.cat([s - self.centre, self.mlp(s)], dim=1)


def copy_into_every_slot(conditioned: nn.Module, single: nn.Module) -> None:
    """Warm start: ``single``'s weights into ``conditioned`` (same width, blocks and kernel), its
    affine instance-norm parameters into every style row (the strength and embedding rows stay
    zero, an arbitrary-style network's predictor keeps its initialisation), so the conditioned
    network starts out computing ``single`` for every mix, strength and painting."""
    norms = [m for m in single.modules() if isinstance(m, nn.InstanceNorm2d) and m.affine]
    slots = [m for m in conditioned.modules() if isinstance(m, ConditionalAffine)]
    assert len(norms) == len(slots), "networks of the same layout have as many norm layers"
    norm_ids = {id(p) for m in norms for p in m.parameters()}
    shared = {name: p.detach() for name, p in single.named_parameters() if id(p) not in norm_ids}  # the convolutions
    own = {f"{name}.{p}" for name, m in conditioned.named_modules()
           if isinstance(m, (ConditionalAffine, StrengthEmbedding)) for p, _ in m.named_parameters()}
    if hasattr(conditioned, "style_predictor"):  # an arbitrary-style network's predictor: weights and running statistics
        own |= {f"style_predictor.{k}" for k in conditioned.style_predictor.state_dict()}
    missing, unexpected = conditioned.load_state_dict(shared, strict=False)
    assert not unexpected and set(missing) == own, (unexpected, set(missing) ^ own)
    with torch.no_grad():
        for norm, slot in zip(norms, slots, strict=True):
            slot.weight[: slot.styles] = norm.weight
            slot.bias[: slot.styles] = norm.bias


def condition_defaults(net: "TransformerNet") -> dict[str, Tensor]:
    """The conditioning inputs ``net`` takes and their defaults: ``mix`` = style 0 (when it has
    several styles), ``strength`` = 1 (when it has a strength input); empty when unconditioned."""
    inputs = {}
    if net.styles > 1:
        inputs["mix"] = F.one_hot(torch.tensor(0), net.styles).float()
    if net.strength_width:
        inputs["strength"] = torch.full((1,), DEFAULT_STRENGTH)
    return inputs


def condition_examples(net: "TransformerNet") -> list[tuple[Optional[Tensor], ...]]:
    """(mix, strength) pairs the parity check runs: each of the first three styles, a uniform
    blend, strengths 0, 1 and 1.7 (None where the network takes no such input); [(None, None)]
    for an unconditioned network. An arbitrary-style network's are (mix, strength, style) triples:
    seeded random painting statistics, one painting and a blend of two."""
    if not net.conditioned:
        return [(None, None)]
    if net.style_embedding:
        g = torch.Generator().manual_seed(0)
        style = 3 * torch.rand(2, net.style_features, generator=g)
        strengths = [torch.tensor([v]) for v in (1.0, 0.0, 1.7)] if net.strength_width else [None] * 3
        return [(None, strengths[0], style[:1]), (None, strengths[1], style[1:]),
                (torch.tensor([0.3, 0.7]), strengths[2], style)]
    mixes = [F.one_hot(torch.tensor(k), net.styles).float() for k in range(min(3, net.styles))]
    mixes = (mixes + [torch.full((net.styles,), 1.0 / net.styles)]) if net.styles > 1 else [None]
    strengths = [torch.tensor([v]) for v in (1.0, 0.0, 1.7)] if net.strength_width else [None]
    return [(mixes[i % len(mixes)], strengths[i % len(strengths)]) for i in range(max(len(mixes), len(strengths)))]


# ------------------------------------------------------------------------------------- training
@dataclass
class Draw:
    """The conditions of one batch: each sample's style (its target index) and strength."""

    styles: Tensor | None = None  # (B,) long: style index = criterion target
    mix: Tensor | None = None  # (B, S) one-hot of ``styles``: the network's input
    strength: Tensor | None = None  # (B,) s: network input and style-weight factor
    style: Tensor | None = None  # (B, F) an arbitrary-style network's painting statistics (fastmmd.arbitrary)

    def to(self, device: torch.device) -> "Draw":
        return Draw(*(None if t is None else t.to(device) for t in (self.styles, self.mix, self.strength, self.style)))


def draw_conditions(batch: int, styles: int, strength_range: Sequence[float] | None, per: str,
                    generator: torch.Generator) -> Draw:
    """Random conditions for a training batch from ``generator`` (CPU; its state goes into checkpoints).

    Args:
        batch: B.
        styles: S separate styles (> 1) drawn uniformly, or 1 (no style drawn).
        strength_range: [lo, hi]: s ~ U(lo, hi); None = no strength.
        per: ``image`` (each sample its own style and s) or ``batch`` (one for all, as the papers).
    """
    n = batch if per == "image" else 1
    draw = Draw()
    if styles > 1:
        draw.styles = torch.randint(styles, (n,), generator=generator).expand(batch).contiguous()
        draw.mix = F.one_hot(draw.styles, styles).float()
    if strength_range is not None:
        lo, hi = strength_range
        draw.strength = (lo + (hi - lo) * torch.rand(n, generator=generator)).expand(batch).contiguous()
    return draw


def validation_conditions(batch: int, batch_idx: int, styles: int, strength: bool) -> Draw:
    """Fixed conditions for validation: photo j of the validation set in style j mod S, strength 1."""
    draw = Draw()
    if styles > 1:
        draw.styles = (torch.arange(batch) + batch_idx * batch) % styles
        draw.mix = F.one_hot(draw.styles, styles).float()
    if strength:
        draw.strength = torch.full((batch,), DEFAULT_STRENGTH)
    return draw


# ------------------------------------------------------------------------------------- descriptions
def style_names(paths: Sequence[str]) -> list[str]:
    """Names of the styles of a network trained on ``paths``: file stems (``candy``), or file names
    where stems repeat, or ``<index>`` as the last resort; what ``--style`` and ``--mix`` accept."""
    from pathlib import PurePath

    names = [PurePath(p).stem for p in paths]
    if len(set(names)) < len(names):
        names = [PurePath(p).name for p in paths]
    return names if len(set(names)) == len(names) else [str(i) for i in range(len(paths))]


def describe(styles: Sequence[str] | None, strength_range: Sequence[float] | None, draw: str,
             arbitrary_layers: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``conditioning`` entry of a checkpoint's description (and of exports' metadata); an
    arbitrary-style network records the VGG layers its style statistics come from."""
    entry: dict[str, Any] = {"draw": draw}
    if arbitrary_layers:
        entry["arbitrary"] = {"layers": list(arbitrary_layers)}
    if styles:
        entry["styles"] = list(styles)
    if strength_range:
        entry["strength"] = {"range": [float(v) for v in strength_range], "default": DEFAULT_STRENGTH}
    return entry


# ------------------------------------------------------------------------------------- inference
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
    arbitrary: bool = False  # any painting (fastmmd.arbitrary): its statistics are an input

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
        :class:`~fastmmd.errors.UserError`.
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


def add_condition_flags(parser: Any) -> None:
    """``--style``, ``--mix``, ``--strength`` and ``--grid``: the one declaration of the inference flags."""
    group = parser.add_argument_group("networks trained on several styles or with a strength input "
                                      "(model.conditioning; `fastmmd export --info` lists them)")
    group.add_argument("--style", default=None, help="the style to draw, by name or index (default: style 0)")
    group.add_argument("--mix", default=None, help="a blend of styles, e.g. candy=0.7,wave=0.3 (names or indices; "
                       "weights >= 0, normalised to sum 1; unnamed styles get 0)")
    group.add_argument("--strength", type=float | None, default=None, help="style strength s: 0 = the content, 1 = the "
                       "trained default (the default), up to the trained maximum")
    group.add_argument("--style-image", action="append", default=None, metavar="PAINTING",
                       help="an arbitrary-style network's painting (any image file); repeat it and add --mix "
                       "0.7,0.3 to blend several")
    group.add_argument("--grid", choices=["strength", "styles"], default=None, help="instead of one output per image, "
                       "<name>_grid_<kind>.png: strength (rows: styles, columns: strengths) or styles (row a, column "
                       "b: the 50/50 blend of a and b; the diagonal: each style)")
