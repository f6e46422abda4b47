"""Training draws of the conditioning inputs: each batch's styles and strengths (fastmmd.model.conditioning)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fastmmd.model.conditioning import DEFAULT_STRENGTH


@dataclass
class Draw:
    """The conditions of one batch: each sample's style (its target index) and strength."""

    styles: Tensor | None = None  # (B,) long: style index = criterion target
    mix: Tensor | None = None  # (B, S) one-hot of ``styles``: the network's input
    strength: Tensor | None = None  # (B,) s: network input and style-weight factor
    style: Tensor | None = None  # (B, F) an arbitrary-style network's painting statistics (fastmmd.model.arbitrary)

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
