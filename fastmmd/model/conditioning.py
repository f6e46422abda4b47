"""One network for many styles and a style-strength knob: conditional instance normalisation.

Two published extensions of the feed-forward network (:mod:`fastmmd.model.networks`), both of which act
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

This module holds the network side (the modules, the warm start into every slot, what a
checkpoint records); the training draws are :mod:`fastmmd.train.draws`, the inference side (what a
file says it was conditioned on, ``--style``/``--mix``/``--strength`` into network inputs) is
:mod:`fastmmd.infer.conditions`, and the parity examples of exports :mod:`fastmmd.model.runtime`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastmmd.base.inputs import unique_labels
from fastmmd.model.metadata import MAX_STYLES  # noqa: F401  (most styles one network may hold; the schema bounds files with it, torch-free)

#: Hidden units of the strength MLP h(s) (a network records it as ``strength_width``).
STRENGTH_WIDTH = 16
#: The strength every conditioned network is trained to reproduce as "the" style: s = 1.
DEFAULT_STRENGTH = 1.0


class ConditionalAffine(nn.Module):
    """The affine part of a conditional instance norm: y = gamma(c) x + beta(c), per channel.

    Follows an ``nn.InstanceNorm2d(affine=False)``, so the statistics hooks of
    :mod:`fastmmd.core.norm_stats` (tiles, video) work unchanged on conditioned networks.

    Args:
        channels: C.
        styles: S, rows of the per-style tables.
        strength_width: H, units of the strength MLP (0 = no strength input).
        embedding: D rows read out from a style embedding e (an arbitrary-style network,
            :mod:`fastmmd.model.arbitrary`, whose condition is c = [1, e]: S = 1, H = 0).

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
        """x (B, C, H, W) normalised, condition c (B, S + S H + D) -> gamma x + beta."""
        gamma = condition @ self.weight  # (B, C)
        beta = condition @ self.bias
        return x * gamma[:, :, None, None] + beta[:, :, None, None]

    def normalize(self, x: Tensor, condition: Tensor, eps: float) -> Tensor:
        """The instance norm before this layer and this layer in one pass: x (B, C, H, W) not yet
        normalised -> gamma (x - mean) / sqrt(var + eps) + beta, mean and var per sample and channel.

        The same function as ``forward(instance_norm(x), condition)``: instance norm is batch norm
        over the (1, B C, H, W) view (as torch computes it), whose per-channel weight and bias can
        then be the per-sample gamma and beta, so the affine costs no pass of its own over the
        feature maps (what it costs otherwise: docs/benchmarks.md, "Speed and exports").
        """
        b, c, h, w = x.shape
        gamma = (condition @ self.weight).reshape(b * c).to(x.dtype)
        beta = (condition @ self.bias).reshape(b * c).to(x.dtype)
        y = F.batch_norm(x.reshape(1, b * c, h, w), None, None, gamma, beta, True, 0.0, eps)
        return y.view(b, c, h, w)


class StrengthEmbedding(nn.Module):
    """h(s) = [s - 1, ReLU(W2 ReLU(W1 s + b1) + b2)]: the strength s (B,) as H features (B, H).

    The first feature is s itself, centred on the trained default 1: the MLP's features start out
    nearly constant over the range, so a read-out of them alone learns an s-independent offset
    first; s - 1 gives every norm layer a direct, zero-mean handle on s from the first step
    (with the MLP alone, a short training left the output almost independent of s).
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


# ------------------------------------------------------------------------------------- descriptions
def style_names(paths: Sequence[str]) -> list[str]:
    """Names of the styles of a network trained on ``paths`` (what ``--style`` and ``--mix`` accept):
    :func:`fastmmd.base.inputs.unique_labels`, the one label rule (file stems, ``candy``)."""
    return unique_labels(paths)


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

