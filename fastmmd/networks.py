"""The image transformation network of Johnson et al. (2016), with instance normalisation.

Layout (width w = 32 by default): reflection-padded 9x9 conv (w) -> two stride-2 3x3 convs
(2w, 4w) -> ``residual_blocks`` residual blocks (4w) -> two nearest-neighbour x2 upsamplings each
followed by a 3x3 conv (2w, w) -> 9x9 conv (3) -> sigmoid. Every conv but the last is followed by
instance norm (Ulyanov et al. 2016) and ReLU.

* Upsampling is resize-then-conv, not a transposed conv, which avoids checkerboard artifacts
  (Odena et al., "Deconvolution and Checkerboard Artifacts", distill.pub 2016).
* Reflection padding everywhere avoids dark borders.
* Any input size works: H and W are reflect-padded up to a multiple of 4 (the two stride-2 convs)
  and at least 8 px, and the output is cropped back, so the output has exactly the input's size.
* ``forward`` takes and returns tensors only (RGB in [0, 1], (B, 3, H, W)), so the module scripts
  with TorchScript and exports with ``torch.export`` and ONNX with dynamic H and W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvLayer(nn.Sequential):
    """Reflection pad + conv (+ instance norm + ReLU)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True) -> None:
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))) with 3x3 convs (He et al. 2016; Gross & Wilber's variant)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvLayer(channels, channels, 3), ConvLayer(channels, channels, 3, relu=False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Module):
    """Nearest-neighbour x2 upsampling, then a 3x3 conv + IN + ReLU (no checkerboard)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvLayer(cin, cout, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, size=(x.shape[2] * 2, x.shape[3] * 2), mode="nearest")
        return self.conv(x)


class TransformerNet(nn.Module):
    """Feed-forward stylization network (Johnson et al. 2016, instance norm).

    Args:
        width: channels of the first layer (the paper: 32); the bottleneck has 4 x width.
        residual_blocks: number of residual blocks (the paper: 5).
    """

    def __init__(self, width: int = 32, residual_blocks: int = 5) -> None:
        super().__init__()
        if width < 1 or residual_blocks < 0:
            raise ValueError("width must be >= 1 and residual_blocks >= 0")
        self.width = width
        self.residual_blocks = residual_blocks
        w = width
        self.encoder = nn.Sequential(ConvLayer(3, w, 9), ConvLayer(w, 2 * w, 3, 2), ConvLayer(2 * w, 4 * w, 3, 2))
        self.residuals = nn.Sequential(*[ResidualBlock(4 * w) for _ in range(residual_blocks)])
        self.decoder = nn.Sequential(UpsampleConv(4 * w, 2 * w), UpsampleConv(2 * w, w),
                                     ConvLayer(w, 3, 9, norm=False, relu=False))

    def forward(self, x: Tensor) -> Tensor:
        """RGB in [0, 1], (B, 3, H, W), any H and W -> stylized RGB in [0, 1] of the same size."""
        h, w = x.shape[2], x.shape[3]
        # up to a multiple of 4 and at least 8 px (the 9x9 reflection pad needs 5 px after the pad)
        pad_h = max(8, h + (4 - h % 4) % 4) - h
        pad_w = max(8, w + (4 - w % 4) % 4) - w
        if pad_h > 0 or pad_w > 0:
            mode = "reflect" if h > pad_h and w > pad_w else "replicate"
            x = F.pad(x, [0, pad_w, 0, pad_h], mode=mode)
        y = self.decoder(self.residuals(self.encoder(x)))
        return torch.sigmoid(y[:, :, :h, :w])

    def config(self) -> dict[str, int]:
        """Constructor arguments, recorded in checkpoints and exported files."""
        return {"width": self.width, "residual_blocks": self.residual_blocks}
