"""Any painting in one pass: the style embedding of an arbitrary-style network.

Ghiasi et al. ("Exploring the structure of a real-time, arbitrary neural artistic stylization
network", BMVC 2017) predict the affine parameters of every instance norm of the transformation
network from the style image. Here the style image is described by exactly the statistics the
BN-statistics loss of Li et al. (2017) aligns: for each VGG-19 layer l of
:data:`EMBEDDING_LAYERS` (relu1_1..relu5_1), the per-channel means mu_l and standard deviations
sigma_l of its activations,

    phi(S) = [log(1 + mu_l), log(1 + sigma_l)]_l        (F = 2 sum_l C_l = 2944 numbers for VGG-19),

log-compressed because Caffe activations span two orders of magnitude across layers. A small MLP
with a bottleneck (:class:`StylePredictor`, Ghiasi: 100-d) maps phi, standardised per feature
(:class:`StatisticsNorm`), (and, with a strength input,
h(s) of :class:`~fastmmd.model.conditioning.StrengthEmbedding`) to an embedding e (D numbers), and every
norm layer reads gamma = Gamma_0 + e A, beta = Beta_0 + e B (:class:`~fastmmd.model.conditioning.ConditionalAffine`
with the condition c = [1, e]; A and B start at zero, so a fresh or warm-started network computes
its plain instance norm for every painting).

Why these statistics rather than a separate image CNN: during training they come for free, from
the same VGG pass that computes the painting's loss targets (the training step needs that pass
anyway), and they are a fixed, documented description of a painting that a user can compute once
and reuse (``Stylizer.with_paintings`` keeps phi per painting for any number of photos).
Inference then runs VGG-19 up to relu5_1 once per painting, not per photo.

Blending paintings (Ghiasi Sec. 5.2) interpolates embeddings: e = sum_k m_k P(phi_k, s).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from fastmmd.model.conditioning import StrengthEmbedding
from fastmmd.model.style_files import (
    DECODE_MARGIN,
    EMBEDDING_LAYERS,
    encoder_settings,
    is_style_file,
    read_style_file,
    write_style_file,
)

#: VGG-19's channels at those layers.
EMBEDDING_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)
#: The embedding's size D (Ghiasi et al.'s bottleneck).
EMBEDDING_WIDTH = 100
#: Hidden units of the predictor MLP.
PREDICTOR_HIDDEN = 256
#: Variance floor of the statistics (as the BN loss's ``bn_eps``).
STATISTICS_EPS = 1e-5


def statistics_width(width_divisor: int = 1) -> int:
    """F, the length of phi for a VGG-19 whose widths are divided by ``width_divisor`` (tests: 8)."""
    return 2 * sum(max(1, c // width_divisor) for c in EMBEDDING_CHANNELS)


def style_statistics(features: Mapping[str, Tensor], layers: Sequence[str] = EMBEDDING_LAYERS) -> Tensor:
    """phi: per-channel log(1 + mean) and log(1 + std) of each layer's map, concatenated.

    Args:
        features: ``{layer: (B, C, H, W)}`` VGG activations (post-ReLU, so both statistics are >= 0).
        layers: the layers used, in order.

    Returns:
        (B, F) float32.
    """
    parts = []
    for layer in layers:
        x = features[layer].float().flatten(2)  # (B, C, N)
        var, mean = torch.var_mean(x, dim=-1, unbiased=False)
        parts += [torch.log1p(mean.clamp_min(0)), torch.log1p((var.clamp_min(0) + STATISTICS_EPS).sqrt())]
    return torch.cat(parts, dim=1)


class StatisticsNorm(nn.Module):
    """(phi - m) / sqrt(v + eps) per feature, m and v running estimates of phi's mean and variance
    over the paintings seen in training (updated in training mode, fixed in eval mode and exports).

    Why: paintings differ little in phi compared with what all share, and a network trained on raw
    phi learned that shared part: every painting got nearly the same gamma, beta and look
    (measured: docs/benchmarks.md, "Arbitrary style"). Standardised, each feature says how this
    painting differs from the others. Running estimates rather than batch statistics: a
    painting's embedding must not depend on which paintings share its batch. The first batch sets
    them; later ones move them by ``momentum``; a batch of one updates the mean only.
    """

    def __init__(self, features: int, momentum: float = 0.01, eps: float = 1e-4) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("var", torch.ones(features))
        self.register_buffer("batches", torch.zeros(()))  # a count; float, as every weight a model file holds

    def forward(self, statistics: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                x = statistics.detach().float()
                first = bool(self.batches == 0)
                weight = 1.0 if first else self.momentum
                self.mean.lerp_(x.mean(0), weight)
                if x.shape[0] > 1:
                    self.var.lerp_(x.var(0), weight)
                self.batches += 1
        return (statistics - self.mean.to(statistics.dtype)) * torch.rsqrt(self.var + self.eps).to(statistics.dtype)


class StylePredictor(nn.Module):
    """e = W2 ReLU(W1 [n(phi), h(s)] + b1) + b2: the style statistics (and strength) as an embedding,
    n the running standardisation of :class:`StatisticsNorm`.

    Args:
        features: F, the length of phi (:func:`statistics_width`).
        embedding: D.
        hidden: units of the hidden layer.
        strength_width: H of the strength MLP h(s) (0: no strength input).
    """

    def __init__(self, features: int, embedding: int = EMBEDDING_WIDTH, hidden: int = PREDICTOR_HIDDEN,
                 strength_width: int = 0) -> None:
        super().__init__()
        self.features = features
        self.norm = StatisticsNorm(features)
        self.mlp = nn.Sequential(nn.Linear(features + strength_width, hidden), nn.ReLU(), nn.Linear(hidden, embedding))
        if strength_width:
            self.strength_net = StrengthEmbedding(strength_width)

    def forward(self, statistics: Tensor, strength: Optional[Tensor] = None) -> Tensor:
        """phi (N, F) and s (N,) -> e (N, D); s is required when the predictor has a strength input."""
        x = self.norm(statistics)
        if hasattr(self, "strength_net"):  # decided when TorchScript compiles, as in eager
            assert strength is not None, "a predictor with a strength input needs the strength"
            x = torch.cat([x, self.strength_net(strength.to(x.dtype))], dim=1)
        return self.mlp(x)


class PaintingEncoder:
    """phi of paintings for an arbitrary-style network, computed as in its training.

    The VGG-19 its description names (weights, pooling, width divisor) runs once per painting on the
    painting resized to a short side of ``style_size`` x :data:`~fastmmd.model.style_files.INFERENCE_ZOOM` (the whole painting:
    its statistics, not a crop's). Build it once and reuse it: a painting's phi does not depend on
    the photo, and a style file (:mod:`fastmmd.model.style_files`, ``.npz``) keeps it across runs.

    Three things keep it fast without moving phi from what training saw (each measured, phi's
    change and the output's: docs/benchmarks.md, "Arbitrary style", "Speed and exports"):

    * VGG in bfloat16 (autocast; the statistics in float32) where the hardware runs it fast
      (``bf16=None``: :func:`fastmmd.base.precision.bf16_is_fast`), as training computed phi
      (``precision: auto``, bf16-mixed), and in channels-last memory format (equal to float rounding);
    * a large painting file decoded at a reduced scale (a JPEG in the decoder, by DCT scaling),
      down to :data:`~fastmmd.model.style_files.DECODE_MARGIN` x the side VGG reads (:func:`fastmmd.base.images.open_image`);
    * VGG built on first use: paintings given as style files need none.

    Args:
        description: the model's description (a checkpoint's ``fastmmd`` entry or an export's
            metadata; its ``vgg``, ``style_size`` and the network's ``style_features``).
        device: where VGG runs.
        bf16: VGG in bfloat16 autocast; None = where it is fast on ``device``.
    """

    def __init__(self, description: Mapping[str, object], device: torch.device | str = "cpu",
                 bf16: bool | None = None) -> None:
        from fastmmd.base.precision import bf16_is_fast

        self.settings = encoder_settings(description)
        self.size = int(self.settings["size"])
        self.device = torch.device(device)
        self.bf16 = bf16_is_fast(self.device) if bf16 is None else bool(bf16)
        self._vgg: nn.Module | None = None

    @property
    def vgg(self) -> nn.Module:
        """The VGG-19 to relu5_1 (built on first use, channels-last, frozen)."""
        if self._vgg is None:
            from fastmmd.vgg.features import VGGFeatures

            vgg = self.settings["vgg"]
            self._vgg = VGGFeatures(EMBEDDING_LAYERS, vgg["weights"], vgg["pooling"], vgg["width_divisor"]).to(
                self.device, memory_format=torch.channels_last)
        return self._vgg

    @property
    def precision(self) -> str:
        """The dtype VGG computes in: ``bfloat16`` or ``float32``."""
        return "bfloat16" if self.bf16 else "float32"

    def image(self, painting: object) -> Tensor:
        """A painting (a file, a PIL image or a (3, H, W) tensor in [0, 1]) as the (3, h, w) float32
        image VGG reads: its shorter side ``size`` px (antialiased)."""
        from PIL import Image

        from fastmmd.base.images import open_image, pil_to_tensor, resize, to_rgb

        if isinstance(painting, Tensor):
            rgb = painting.float()
        else:  # a file as every image is read (decoded smaller where that is free); a PIL image through the same mode rule
            image = (to_rgb(painting)[0] if isinstance(painting, Image.Image)
                     else open_image(painting, min_side=DECODE_MARGIN * self.size)[0])
            rgb = pil_to_tensor(image)
        h, w = rgb.shape[-2:]
        scale = self.size / min(h, w)
        return resize(rgb, (max(16, round(h * scale)), max(16, round(w * scale))))

    @torch.no_grad()
    def statistics(self, painting: object) -> Tensor:
        """phi (1, F) float32 of one painting: an image (as :meth:`image` takes) or a style file."""
        if is_style_file(painting):
            values, _ = read_style_file(painting, self.settings)
            return torch.from_numpy(values.copy()).unsqueeze(0)
        x = self.image(painting).unsqueeze(0).to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            features = self.vgg(x, EMBEDDING_LAYERS)
        return style_statistics(features).cpu()

    def __call__(self, paintings: Sequence[object]) -> Tensor:
        """Paintings (paths of images or style files, PIL images or (3, H, W) tensors in [0, 1]) ->
        phi (K, F), float32 on the CPU."""
        return torch.cat([self.statistics(painting) for painting in paintings])

    def save(self, painting: object, path: str | os.PathLike, name: str | None = None) -> Path:
        """Computes phi of one painting and writes it as a style file (:mod:`fastmmd.model.style_files`);
        ``name`` labels it (default: the file's stem). Returns the file written."""
        label = name or (Path(painting).stem if isinstance(painting, (str, os.PathLike)) else "painting")
        return self.write(self.statistics(painting)[0], path, label)

    def write(self, statistics: Tensor, path: str | os.PathLike, name: str) -> Path:
        """Writes phi (F,) that this encoder computed for the painting ``name`` as a style file."""
        return write_style_file(path, statistics.detach().float().cpu().numpy(), self.settings, name, self.precision)
