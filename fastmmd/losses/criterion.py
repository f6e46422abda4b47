"""The one loss used by both per-image optimization and feed-forward training.

total = style_weight * style + content_weight * content + tv_weight * tv, per sample, with

    style = sum_l w_l * sum_k a_k * s_k * L_k(F_l, S_l) / n_lk

where l runs over the style layers (weights w_l normalised to sum to 1), k over the fused methods
(weights a_k), L_k is the paper-normalised distance of :mod:`fastmmd.losses.style`, and under
``normalization="relative"`` (default) n_lk is the target's ``null`` value (L_k for an all-zero
map) and s_k a per-method calibration constant (:data:`CALIBRATION`) that makes one style weight
about equally strong for every method; under ``"paper"`` both are 1 (the paper's (1/Z)·MMD² as
it stands: the constants were measured for relative errors and mean nothing on raw scales). The content term is the relative feature MSE at the content layer(s),
mean (F - P)^2 / mean P^2, and tv the total variation of the image (:mod:`fastmmd.losses.content`).

Style targets are computed once (:meth:`StyleCriterion.set_style`) and stored as non-persistent
buffers: they follow the module across devices but never enter a checkpoint. VGG activations may
be computed under autocast (bf16); every statistic and loss is evaluated in float32.

Conditioned training (:mod:`fastmmd.model.conditioning`) uses the same criterion with two more per-sample
inputs: ``styles`` (B,) picks each sample's target among S separately prepared style targets
(``set_style(..., separate=True)``; Dumoulin et al. 2017 train one network on S styles this way),
and ``style_scale`` (B,) multiplies the style weight, total = s_b style_weight style + ... (the
strength s of Babaeizadeh & Ghiasi 2020, sampled per batch or per image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from fastmmd.base.errors import UserError
from fastmmd.losses import METHODS, StyleLoss, moments, parse_loss, relative_content_loss, total_variation
from fastmmd.vgg.features import VGGFeatures

#: Per-method constants s_k under relative normalisation, measured by scripts/calibrate_losses.py:
#: the median over 12 real (content, style) pairs of ||d gram / d image|| / ||d method / d image||
#: at the content image (Caffe VGG, 256 px, relu1_1..relu5_1), to two significant digits (the
#: medians and their spread: docs/benchmarks.md, "Loss calibration"). Poly (c=0) equals Gram exactly
#: under relative normalisation, so its constant is 1 by construction. The Gaussian's constant is
#: for the default ``subset`` estimator (the ``linear`` estimator's median differs: same section).
CALIBRATION: dict[str, float] = {"gram": 1.0, "poly": 1.0, "linear": 1.8, "gaussian": 9.3, "bn": 2.8}



class StyleCriterion(nn.Module):
    """Style + content + total-variation loss against fixed style (and optionally content) targets.

    Args:
        settings: the loss (:class:`~fastmmd.losses.StyleLoss`: method, term weights, taps and their
            weights, normalisation, kernel and estimator settings); default its declared defaults.
        vgg: a :class:`VGGFeatures` to use; built from ``vgg_weights``/``vgg_pooling``/
            ``vgg_width_divisor`` with exactly the needed taps when not given.
        seed: seeds the generator behind the Gaussian estimators' random positions.
    """

    def __init__(
        self,
        settings: StyleLoss | None = None,
        vgg: VGGFeatures | None = None,
        vgg_weights: str = "caffe",
        vgg_pooling: Literal["max", "avg"] = "max",
        vgg_width_divisor: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        s = self.settings = StyleLoss.of(settings)
        self.style_layers = tuple(s.style_layers)
        self.content_layers = tuple(s.content_layers)
        layer_weights = [1.0] * len(self.style_layers) if s.style_layer_weights is None else s.style_layer_weights
        total = float(sum(layer_weights))  # StyleLoss checked them: finite, non-negative, one per layer
        self.layer_weights = {t: float(w) / total for t, w in zip(self.style_layers, layer_weights, strict=True)}
        self.options = s
        self.loss_spec = str(s.method)
        self.fusion = parse_loss(s.method, s.fusion_weights)
        self.methods = {name: METHODS[name](s) for name, _ in self.fusion}
        self.normalization = s.normalization
        self.style_weight, self.content_weight, self.tv_weight = float(s.style_weight), float(s.content_weight), float(s.tv_weight)
        if vgg is None:
            vgg = VGGFeatures(self.style_layers + self.content_layers, vgg_weights, vgg_pooling, vgg_width_divisor)
        missing = [t for t in self.style_layers + self.content_layers if t not in vgg.taps]
        if missing:
            raise UserError(f"the VGG extractor does not tap {missing}")
        self.vgg = vgg
        self.generator = torch.Generator().manual_seed(seed)
        self._targets: dict[str, dict[str, str]] = {}  # (layer/method) -> {key: buffer name}
        self.style_sets = 0  # separately prepared style targets (1: one image or one blend of several)
        self.has_style = False
        self.has_content = False

    # ----------------------------------------------------------------------------- targets
    def _store(self, key: str, tensors: dict[str, Tensor]) -> None:
        names = {}
        for k, v in tensors.items():
            name = f"target__{key.replace('/', '__')}__{k}"
            self.register_buffer(name, v.detach().float(), persistent=False)
            names[k] = name
        self._targets[key] = names

    def _target(self, key: str) -> dict[str, Tensor]:
        return {k: getattr(self, name) for k, name in self._targets[key].items()}

    @staticmethod
    def _style_key(layer: str, method: str, index: int = 0) -> str:
        return f"{layer}/{method}" if index == 0 else f"style{index}/{layer}/{method}"

    @torch.no_grad()
    def set_style(self, images: Sequence[Tensor], blend: Sequence[float] | None = None, separate: bool = False) -> None:
        """Computes the style targets once from one or more (1, 3, H, W) RGB images in [0, 1].

        Several images are blended as a mixture distribution with weights ``blend`` (default equal),
        or, with ``separate``, each is its own target (index = position), picked per sample by
        ``forward(..., styles=...)``.
        """
        images = list(images)
        if not images:
            raise UserError("at least one style image is needed")
        if separate and blend is not None:
            raise UserError("style_blend mixes the style images into one target; several separate styles take none")
        blend = [1.0] * len(images) if blend is None else [float(b) for b in blend]
        if len(blend) != len(images) or min(blend) < 0 or sum(blend) <= 0 or not all(math.isfinite(b) for b in blend):
            raise UserError(f"--style-blend needs {len(images)} finite non-negative weights, not all zero (got {blend})")
        device = self._device()
        with torch.autocast(device.type, enabled=False):
            maps = [self.vgg(img.to(device, torch.float32), self.style_layers) for img in images]
        sets = [[(m, 1.0)] for m in maps] if separate else [list(zip(maps, blend))]
        for index, members in enumerate(sets):
            for layer in self.style_layers:
                y, w = moments.weighted_sample([m[layer].float() for m, _ in members], [b for _, b in members])
                for name, method in self.methods.items():
                    self._store(self._style_key(layer, name, index), method.prepare(y, w, self.generator))
        self.style_sets = len(sets)
        self.has_style = True

    @torch.no_grad()
    def sample_targets(self, features: dict[str, Tensor]) -> list[dict[str, dict[str, Tensor]]]:
        """One style target per sample, from the VGG features ``{layer: (B, C, H, W)}`` of B style
        images (an arbitrary-style network's paintings, :mod:`fastmmd.model.arbitrary`): the same
        ``prepare`` of every method that :meth:`set_style` runs, on each image's positions alone.

        Returns:
            B dicts ``{"layer/method": target}``, for ``forward(..., style_targets=...)``.
        """
        batch = next(iter(features.values())).shape[0]
        targets: list[dict[str, dict[str, Tensor]]] = [{} for _ in range(batch)]
        for layer in self.style_layers:
            maps = moments.positions(features[layer].float())  # (B, C, N)
            weights = maps.new_full((maps.shape[-1],), 1.0 / maps.shape[-1])
            for b in range(batch):
                for name, method in self.methods.items():
                    targets[b][f"{layer}/{name}"] = method.prepare(maps[b], weights, self.generator)
        return targets

    def _style_distance(self, name: str, layer: str, x: Tensor, styles: Tensor | None,
                        sample_targets: list[dict[str, dict[str, Tensor]]] | None = None) -> Tensor:
        """Method ``name``'s normalised distance (B,) of positions x (B, C, N) to each sample's style target."""
        if sample_targets is not None:
            return torch.cat([self._distance(name, sample_targets[b][f"{layer}/{name}"], x[b:b + 1])
                              for b in range(x.shape[0])])
        if styles is None or self.style_sets == 1:
            return self._distance_to(name, layer, 0, x)
        d = x.new_zeros(x.shape[0])
        for index in styles.unique(sorted=True).tolist():  # one call per style present in the batch
            rows = (styles == index).nonzero().squeeze(1)
            d = d.index_copy(0, rows, self._distance_to(name, layer, int(index), x.index_select(0, rows)))
        return d

    def _distance_to(self, name: str, layer: str, index: int, x: Tensor) -> Tensor:
        return self._distance(name, self._target(self._style_key(layer, name, index)), x)

    def _distance(self, name: str, target: dict[str, Tensor], x: Tensor) -> Tensor:
        d = self.methods[name](x, target, self.generator)
        if self.normalization == "relative":
            d = CALIBRATION[name] * d / target["null"].clamp_min(1e-12)
        return d

    @torch.no_grad()
    def set_content(self, image: Tensor) -> None:
        """Fixes the content target to the features of one (1, 3, H, W) image (per-image optimization)."""
        with torch.autocast(self._device().type, enabled=False):
            feats = self.vgg(image.to(self._device(), torch.float32), self.content_layers)
        for layer in self.content_layers:
            self._store(f"content/{layer}", {"features": feats[layer].float()})
        self.has_content = True

    def _device(self) -> torch.device:
        return next(self.vgg.parameters()).device

    # ----------------------------------------------------------------------------- loss
    def forward(self, generated: Tensor, content: Tensor | None = None, styles: Tensor | None = None,
                style_scale: Tensor | None = None,
                style_targets: list[dict[str, dict[str, Tensor]]] | None = None) -> dict[str, Tensor]:
        """Loss terms for a batch of generated images (B, 3, H, W), RGB in [0, 1].

        Args:
            generated: the images being optimised or produced by the network.
            content: the matching content images (B, 3, H, W) (training); when ``None`` the target
                fixed by :meth:`set_content` is used, or the content term is skipped.
            styles: (B,) index of each sample's style target (``set_style(..., separate=True)``);
                None = target 0.
            style_scale: (B,) factor s_b of the style weight in ``total`` (the strength); None = 1.
            style_targets: one target per sample (:meth:`sample_targets`) instead of the fixed ones.

        Returns:
            ``{"total", "style", "content", "tv"}`` plus ``"style/<method>"`` per fused method,
            each of shape (B,) (unweighted terms; ``total`` applies the weights).
        """
        if not self.has_style and style_targets is None:
            raise RuntimeError("call set_style() or pass style_targets before computing the loss")
        if style_targets is not None and len(style_targets) != generated.shape[0]:
            raise ValueError("style_targets needs one target per sample")
        need_content = self.content_weight > 0 and (content is not None or self.has_content)
        taps = self.style_layers + (self.content_layers if need_content else ())
        feats = self.vgg(generated, taps)
        terms: dict[str, Tensor] = {}
        style = generated.new_zeros(generated.shape[0], dtype=torch.float32)
        if styles is not None and not (styles.shape == style.shape and 0 <= int(styles.min()) and
                                       int(styles.max()) < self.style_sets):
            raise ValueError(f"styles must be (B,) indices below {self.style_sets}")
        for name, weight in self.fusion:
            value = 0.0
            for layer in self.style_layers:
                x = moments.positions(feats[layer].float())  # (B, C, N)
                value = value + self.layer_weights[layer] * self._style_distance(name, layer, x, styles, style_targets)
            terms[f"style/{name}"] = value
            style = style + weight * value
        terms["style"] = style
        content_term = style.new_zeros(style.shape)
        if need_content:
            if content is not None:
                with torch.no_grad():
                    targets = self.vgg(content, self.content_layers)
            else:
                targets = {layer: self._target(f"content/{layer}")["features"] for layer in self.content_layers}
            for layer in self.content_layers:
                p = targets[layer].float()
                content_term = content_term + relative_content_loss(feats[layer].float(), p) / len(self.content_layers)
        terms["content"] = content_term
        terms["tv"] = total_variation(generated.float())
        style_weight = self.style_weight if style_scale is None else self.style_weight * style_scale.float()
        terms["total"] = style_weight * style + self.content_weight * content_term + self.tv_weight * terms["tv"]
        return terms

    def describe(self) -> dict[str, object]:
        """Settings recorded in outputs and checkpoints."""
        return {
            "loss": self.loss_spec, "fusion": self.fusion, "style_weight": self.style_weight,
            "content_weight": self.content_weight, "tv_weight": self.tv_weight,
            "style_layers": list(self.style_layers), "content_layers": list(self.content_layers),
            "normalization": self.normalization, "vgg": self.vgg.describe(),
        }
