"""The image transformation network of Johnson et al. (2016), with instance normalisation.

Layout (width w = 32 by default): reflection-padded 9x9 conv (w) -> two stride-2 4x4 convs
(2w, 4w) -> ``residual_blocks`` residual blocks (4w) -> two nearest-neighbour x2 upsamplings each
followed by a 3x3 conv (2w, w) -> 9x9 conv (3) -> sigmoid. Every conv is followed by instance norm
(Ulyanov et al. 2016), and by ReLU except the second conv of each residual block (added to the
skip path before any non-linearity) and the last conv (which goes to the sigmoid).

* Downsampling convs are 4x4 with stride 2 (Johnson et al. used 3x3). A 3x3 stride-2 conv on an
  even size is lopsided: output row i is centred on input row 2i, so its first row reads the
  reflected padding while its last row reads none, and it covers even input rows twice and odd
  rows once, a period-2 unevenness (Odena et al.'s "kernel size not divisible by the stride"). A
  4x4 stride-2 conv with 1 px of padding is centred on 2i + 0.5, reads padding at both ends and
  covers every input pixel exactly twice. Measured (docs/benchmarks.md, "Edge band and lattice"):
  it lowered the period-4 lattice in both runs compared (by 11 % and 21 %); the period-2 part
  fell at 128 px and rose at 256 px; the top-edge band had another cause (the style's scale, see
  ``fastmmd.training.MIN_STYLE_SIZE``). ``downsample_kernel=3`` rebuilds the original layout
  (files written before this change record no kernel and load as 3, see
  :meth:`TransformerNet.from_config`).
* Upsampling is resize-then-conv, not a transposed conv, which avoids checkerboard artifacts
  (Odena et al., "Deconvolution and Checkerboard Artifacts", distill.pub 2016).
* Reflection padding everywhere avoids dark borders.
* Any input size works: H and W are reflect-padded to :func:`padded_size` (a multiple of 4 for the
  two stride-2 convs, at least 8 px) and the output is cropped back, so the output has exactly the
  input's size. Exports (:mod:`fastmmd.export`) and tiling (:mod:`fastmmd.tiling`) call the same
  function, so the rule lives here only.
* ``forward`` takes and returns tensors only (RGB in [0, 1], (B, 3, H, W)), so the module scripts
  with TorchScript and exports with ``torch.export`` and ONNX with dynamic H and W.
* Conditioning (``styles > 1`` or ``strength_width > 0``, :mod:`fastmmd.conditioning`): every
  instance norm becomes a conditional one (Dumoulin et al. 2017; strength as in Babaeizadeh &
  Ghiasi 2020), a non-affine ``nn.InstanceNorm2d`` followed by a
  :class:`~fastmmd.conditioning.ConditionalAffine`, and ``forward`` takes the style mix and the
  strength as two more optional tensors. An unconditioned network keeps its layers, state_dict keys
  and ``forward(x)`` exactly as before.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastmmd.conditioning import MAX_STYLES, ConditionalAffine, StrengthEmbedding

#: The network's two stride-2 convs need sides that are multiples of this.
SIZE_MULTIPLE = 4
#: The smallest side the network runs at: the 9x9 reflection pad needs 5 px after the padding.
MIN_SIZE = 8


def size_padding(length: int, multiple: int = SIZE_MULTIPLE) -> int:
    """Pixels to add to a side of ``length`` px to reach a multiple of :data:`SIZE_MULTIPLE`: all
    the padding a side of at least :data:`MIN_SIZE` needs. Branch-free, so exported graphs with
    symbolic sizes (which require >= MIN_SIZE) use it alone."""
    return (multiple - length % multiple) % multiple


def padded_size(length: int, minimum: int = MIN_SIZE) -> int:
    """The side the network runs at for an input side of ``length`` px: up to a multiple of
    :data:`SIZE_MULTIPLE` and at least :data:`MIN_SIZE` (the output is cropped back to ``length``).
    The constants come in as defaults because TorchScript cannot read module globals."""
    return max(minimum, length + size_padding(length))


class ConvLayer(nn.Sequential):
    """Reflection pad + conv (+ instance norm + ReLU); with ``styles`` > 0 the norm is conditional
    (non-affine IN + :class:`~fastmmd.conditioning.ConditionalAffine`, which reads ``condition``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True,
                 padding: int | None = None, styles: int = 0, strength_width: int = 0) -> None:
        pad = kernel // 2 if padding is None else padding
        layers: list[nn.Module] = [nn.ReflectionPad2d(pad), nn.Conv2d(cin, cout, kernel, stride)]
        if norm and styles:
            layers += [nn.InstanceNorm2d(cout, affine=False), ConditionalAffine(cout, styles, strength_width)]
        elif norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)

    def forward(self, x: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        for layer in self:
            x = layer(x)
        return x


class ConditionalConvLayer(ConvLayer):
    """A :class:`ConvLayer` whose norm is conditional: passes ``condition`` to its ConditionalAffine."""

    def forward(self, x: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        for layer in self:
            if isinstance(layer, ConditionalAffine):
                assert condition is not None, "a conditioned layer needs its condition"
                x = layer(x, condition)
            else:
                x = layer(x)
        return x


def conv_layer(cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True,
               padding: int | None = None, styles: int = 0, strength_width: int = 0) -> ConvLayer:
    """A :class:`ConvLayer`, conditional when ``styles`` > 0 and it has a norm (the class decides
    ``forward``, so TorchScript compiles an unconditioned layer without the conditional code)."""
    cls = ConditionalConvLayer if styles and norm else ConvLayer
    return cls(cin, cout, kernel, stride, norm, relu, padding, styles, strength_width)


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))) with 3x3 convs (He et al. 2016; Gross & Wilber's variant)."""

    def __init__(self, channels: int, styles: int = 0, strength_width: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_layer(channels, channels, 3, styles=styles, strength_width=strength_width),
                                  conv_layer(channels, channels, 3, relu=False, styles=styles,
                                             strength_width=strength_width))

    def forward(self, x: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        y = x
        for layer in self.body:
            y = layer(y, condition)
        return x + y


class UpsampleConv(nn.Module):
    """Nearest-neighbour x2 upsampling, then a 3x3 conv + IN + ReLU (no checkerboard)."""

    def __init__(self, cin: int, cout: int, styles: int = 0, strength_width: int = 0) -> None:
        super().__init__()
        self.conv = conv_layer(cin, cout, 3, styles=styles, strength_width=strength_width)

    def forward(self, x: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        x = F.interpolate(x, size=(x.shape[2] * 2, x.shape[3] * 2), mode="nearest")
        return self.conv(x, condition)


class TransformerNet(nn.Module):
    """Feed-forward stylization network (Johnson et al. 2016, instance norm).

    Args:
        width: channels of the first layer (the paper: 32); the bottleneck has 4 x width.
        residual_blocks: number of residual blocks (the paper: 5).
        downsample_kernel: 4 (symmetric, default) or 3 (Johnson et al.; see the module docstring).
        styles: S styles in one network (Dumoulin et al. 2017); 1 = a single-style network.
        strength_width: H units of the strength MLP (Babaeizadeh & Ghiasi 2020); 0 = no strength
            input. With ``styles > 1`` or ``strength_width > 0`` every instance norm is conditional
            (:mod:`fastmmd.conditioning`).
    """

    def __init__(self, width: int = 32, residual_blocks: int = 5, downsample_kernel: int = 4, styles: int = 1,
                 strength_width: int = 0) -> None:
        super().__init__()
        if width < 1 or residual_blocks < 0 or downsample_kernel not in (3, 4):
            raise ValueError("width must be >= 1, residual_blocks >= 0 and downsample_kernel 3 or 4")
        if not (1 <= styles <= MAX_STYLES and (strength_width == 0 or 2 <= strength_width <= MAX_STYLES)):
            raise ValueError(f"styles must be 1..{MAX_STYLES} and strength_width 0 or 2..{MAX_STYLES}")
        self.width = width
        self.residual_blocks = residual_blocks
        self.downsample_kernel = downsample_kernel
        self.styles = styles
        self.strength_width = strength_width
        self.conditioned = styles > 1 or strength_width > 0
        w, k = width, downsample_kernel
        c = {"styles": styles if self.conditioned else 0, "strength_width": strength_width}
        self.encoder = nn.Sequential(conv_layer(3, w, 9, **c), conv_layer(w, 2 * w, k, 2, padding=1, **c),
                                     conv_layer(2 * w, 4 * w, k, 2, padding=1, **c))
        self.residuals = nn.Sequential(*[ResidualBlock(4 * w, **c) for _ in range(residual_blocks)])
        self.decoder = nn.Sequential(UpsampleConv(4 * w, 2 * w, **c), UpsampleConv(2 * w, w, **c),
                                     ConvLayer(w, 3, 9, norm=False, relu=False))
        if strength_width:
            self.strength_net = StrengthEmbedding(strength_width)

    def condition(self, x: Tensor, mix: Optional[Tensor] = None, strength: Optional[Tensor] = None) -> Optional[Tensor]:
        """The condition c = [m, m (x) h(s)] (B, S + S H) every conditional norm reads; None when unconditioned.

        Args:
            x: the batch (B, ...), for its size, device and dtype.
            mix: style weights (B, S) or (S,) for the whole batch; None = style 0. Used as given
                (convex mixes are what the network was trained near; callers normalise).
            strength: s (B,), (1,) or () for the whole batch; None = 1, the trained default.
        """
        if not self.conditioned:
            if mix is not None or strength is not None:
                raise ValueError("this network is not conditioned: it takes no style mix or strength")
            return None
        batch = x.shape[0]
        if mix is None:
            m = F.one_hot(torch.zeros(batch, dtype=torch.long, device=x.device), self.styles).to(x.dtype)
        else:
            m = mix.to(device=x.device, dtype=x.dtype)
            if m.dim() == 1:
                m = m.unsqueeze(0)
            m = m.expand(batch, self.styles)
        if hasattr(self, "strength_net"):  # decided when TorchScript compiles, as in eager
            if strength is None:
                s = torch.ones(batch, device=x.device, dtype=x.dtype)
            else:
                s = strength.to(device=x.device, dtype=x.dtype).reshape(-1).expand(batch)
            h = self.strength_net(s)  # (B, H)
            return torch.cat([m, (m[:, :, None] * h[:, None, :]).flatten(1)], dim=1)
        if strength is not None:
            raise ValueError("this network has no strength input")
        return m

    def trunk(self, x: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        """encoder -> residual blocks -> decoder on an already padded batch (logits, before the sigmoid)."""
        if condition is None:
            return self.decoder(self.residuals(self.encoder(x)))
        for layer in self.encoder:
            x = layer(x, condition)
        for block in self.residuals:
            x = block(x, condition)
        for layer in self.decoder:
            x = layer(x, condition)
        return x

    def forward(self, x: Tensor, mix: Optional[Tensor] = None, strength: Optional[Tensor] = None) -> Tensor:
        """RGB in [0, 1], (B, 3, H, W), any H and W -> stylized RGB in [0, 1] of the same size.

        ``mix`` and ``strength`` condition a conditioned network (:meth:`condition`); an
        unconditioned one takes neither.
        """
        condition = self.condition(x, mix, strength)
        h, w = x.shape[2], x.shape[3]
        pad_h, pad_w = padded_size(h) - h, padded_size(w) - w
        if pad_h > 0 or pad_w > 0:
            mode = "reflect" if h > pad_h and w > pad_w else "replicate"
            x = F.pad(x, [0, pad_w, 0, pad_h], mode=mode)
        y = self.trunk(x, condition)
        return torch.sigmoid(y[:, :, :h, :w])

    def config(self) -> dict[str, int]:
        """Constructor arguments, recorded in checkpoints and exported files (``styles`` and
        ``strength_width`` only when not the default, so single-style files read as before)."""
        config = {"width": self.width, "residual_blocks": self.residual_blocks,
                  "downsample_kernel": self.downsample_kernel}
        if self.styles != 1:
            config["styles"] = self.styles
        if self.strength_width:
            config["strength_width"] = self.strength_width
        return config

    @classmethod
    def from_config(cls, config: dict[str, int]) -> "TransformerNet":
        """The network a recorded :meth:`config` describes; files written before ``downsample_kernel``
        existed used 3x3 downsampling and record no kernel."""
        return cls(**{"downsample_kernel": 3, **config})
