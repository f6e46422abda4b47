"""What an exported file runs: the network behind one forward with the conditioning inputs as tensors."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastmmd.model.conditioning import DEFAULT_STRENGTH
from fastmmd.model.networks import TransformerNet, size_padding


class ExportedStylizer(nn.Module):
    """A :class:`TransformerNet` behind an image-in, image-out interface that scripts and exports.

    ``forward(x, mix=None, strength=None, style=None)``: x is RGB (B, 3, H, W), uint8 0-255 or float
    0-1; the result has x's dtype and size (uint8: ``round(255 y)``). Inputs are cast to the weights'
    dtype, so fp16 weights take fp32 images (int8 weights compute in float32,
    :mod:`fastmmd.model.storage`). ``mix``, ``strength`` and ``style`` condition a conditioned
    network as in :meth:`TransformerNet.forward <fastmmd.model.networks.TransformerNet.forward>`.

    Args:
        net: the trained network (its padding logic is reused by the TorchScript path).
        metadata: JSON text carried as the ``metadata`` attribute.
        traceable: use a branch-free pad/crop for ``torch.export``/ONNX: reflect-pad by the
            network's :func:`~fastmmd.model.networks.size_padding` (its whole padding rule for sides
            >= ``MIN_SIZE``, which the exported graph requires) and crop with a negative constant
            pad, so one graph serves every H, W >= 8 (the shape-dependent ``if`` and ``max`` of
            ``TransformerNet.forward`` would specialise).
    """

    def __init__(self, net: TransformerNet, metadata: str = "{}", traceable: bool = False) -> None:
        # forward(x, mix, strength, style): a conditioned network's mix (S,) or (B, S) and strength (1,)
        # or (B,), None = its defaults (style 0, strength 1); each export format's form of these
        # inputs: the module docstring of fastmmd.infer.export
        super().__init__()
        self.net = net
        self.metadata = metadata
        self.traceable = traceable

    def forward(self, x: Tensor, mix: Optional[Tensor] = None, strength: Optional[Tensor] = None,
                style: Optional[Tensor] = None) -> Tensor:
        bias = self.net.encoder[0][1].bias  # its dtype is the compute dtype (int8 storage computes in float32)
        assert bias is not None  # TransformerNet's convolutions have biases (and TorchScript needs to know)
        dtype = bias.dtype
        if x.dtype == torch.uint8:
            y = self._stylize(x.to(dtype) / 255.0, mix, strength, style)
            return y.float().mul(255.0).round().clamp(0.0, 255.0).to(torch.uint8)
        return self._stylize(x.to(dtype), mix, strength, style).to(x.dtype)

    def _stylize(self, x: Tensor, mix: Optional[Tensor], strength: Optional[Tensor], style: Optional[Tensor]) -> Tensor:
        if not self.traceable:
            return self.net(x, mix, strength, style)
        condition = self.net.condition(x, mix, strength, style)
        h, w = x.shape[2], x.shape[3]
        x = F.pad(x, [0, size_padding(w), 0, size_padding(h)], mode="reflect")
        y = torch.sigmoid(self.net.trunk(x, condition))
        return F.pad(y, [0, w - y.shape[3], 0, h - y.shape[2]])  # negative pad = crop, no shape guard


def condition_defaults(net: "TransformerNet") -> dict[str, Tensor]:
    """The conditioning inputs ``net`` takes and their defaults: ``mix`` = style 0 (when it has
    several styles; for an arbitrary-style network, [1]: the one painting given), ``strength`` = 1
    (when it has a strength input); empty when unconditioned. (An arbitrary-style network's
    ``style``, the paintings' statistics, has no default.)"""
    inputs = {}
    if net.styles > 1:
        inputs["mix"] = F.one_hot(torch.tensor(0), net.styles).float()
    elif net.style_embedding:
        inputs["mix"] = torch.ones(1)
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
