"""Feed-forward training (Johnson et al. 2016) with any style loss of Li et al. (2017).

:class:`StyleTransferModule` only wires things together: a :class:`~fastmmd.model.networks.TransformerNet`
is trained so that ``criterion(network(x), x)`` is small, where the criterion is the same
:class:`~fastmmd.losses.criterion.StyleCriterion` that ``fastmmd optimize`` uses (one implementation of
every loss for both modes). The style targets are computed once from the style image(s); the VGG
is frozen and never enters a checkpoint, which holds only ``network.*`` weights, the optimizer and
schedule state, the config and the ``"fastmmd"`` description of :mod:`fastmmd.model.checkpoints`.

Each step runs the network on the content batch, then VGG over the generated images with gradients
and over the content images without (truncated at the content layer, which beats one joint pass:
docs/benchmarks.md, "Feed-forward training"). Precision comes from the Trainer (``32``, ``16-mixed``,
``bf16-mixed``): the network and VGG run under autocast, every statistic and loss in float32.
Image grids, the NaN guard and checkpoint I/O live in :mod:`fastmmd.train.callbacks`.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from PIL import Image
from torch import Tensor, nn
from torchmetrics import MeanMetric

from fastmmd.base.errors import UserError, did_you_mean
from fastmmd.base.images import read_image
from fastmmd.base.paintings import resolve_paintings
from fastmmd.base.precision import cpu_nnpack_is_faster
from fastmmd.core import motion
from fastmmd.losses import StyleLoss
from fastmmd.losses.criterion import StyleCriterion
from fastmmd.losses.stability import stability_loss
from fastmmd.model.arbitrary import EMBEDDING_LAYERS, EMBEDDING_WIDTH, statistics_width, style_statistics
from fastmmd.model.checkpoints import KEY, NETWORK_PREFIX, check_format_version, checkpoint_entries, description
from fastmmd.model.conditioning import STRENGTH_WIDTH, copy_into_every_slot, style_names
from fastmmd.model.conditioning import describe as describe_conditioning
from fastmmd.model.networks import TransformerNet
from fastmmd.train.callbacks import TRAINED_STATE_KEY
from fastmmd.train.draws import Draw, draw_conditions, validation_conditions
from fastmmd.vgg.features import VGGFeatures

RNG_KEY = "fastmmd_criterion_rng"  # the Gaussian estimators' generator state, for exact resumes
#: px along the border of a whole-pixel stability crop that are not compared (2 cells of the network's 4 px grid)
STABILITY_CROP_MARGIN = 8
STABILITY_RNG_KEY = "fastmmd_stability_rng"  # the training step's perturbations: stability shifts and noise, loss jitter
CONDITION_RNG_KEY = "fastmmd_condition_rng"  # the styles and strengths drawn per batch
#: Largest model.loss_jitter: VGG-19's coarsest pooling grid (relu5_1 sits at 1/16 resolution).
MAX_LOSS_JITTER = 15
#: Smallest default long edge of the style image. With the style as small as 128 px crops, VGG's
#: deepest style layers see it in 5x8 positions, nearly all at its border, so the painting's motif at
#: its top (Starry Night's stars) is learned as "motif along the top edge": networks trained that way
#: drew a row of stars along the top of every output. At 256 px the band was gone
#: (docs/benchmarks.md, "Edge band and lattice").
MIN_STYLE_SIZE = 256


class StyleTransferModule(L.LightningModule):
    """Trains a TransformerNet for one style (or a blend of several, or several at once) with a chosen style loss.

    Args:
        style_images: style image file(s), or shipped styles' names for their downloaded paintings
            (:func:`fastmmd.base.paintings.resolve_painting`); several are blended as a mixture distribution, unless
            ``conditioning`` holds ``styles``. None with ``conditioning: [arbitrary]``.
        style_blend: their weights (default equal).
        conditioning: what the network takes as input besides the photo (:mod:`fastmmd.model.conditioning`):
            ``styles``: one network for all ``style_images``, each its own target, with conditional
            instance norm (Dumoulin et al. 2017); ``strength``: the style weight is
            s x ``loss.style_weight`` with s drawn from ``strength_range`` and fed to the network
            (Babaeizadeh & Ghiasi 2020), so it can be chosen at inference; ``arbitrary``: one
            network for any painting (:mod:`fastmmd.model.arbitrary`): every training photo comes with a
            painting drawn by the data module (``data.painting_root``), the network reads the
            painting's VGG statistics and the loss is measured against that painting alone
            (per-sample targets, :meth:`~fastmmd.losses.criterion.StyleCriterion.sample_targets`);
            combines with ``strength``. Default: none.
        embedding_width: D of an arbitrary-style network's style embedding.
        strength_range: [lo, hi] of s, with lo <= 1 <= hi (1 = the trained default; default [0, 2]).
        condition_draw: ``image`` (default: each photo of a batch its own style and s) or ``batch``
            (one per batch, as both papers). Draws come from a generator seeded with ``seed``
            whose state travels in checkpoints (exact resumes; under DDP every rank draws the same).
        style_size: long edge of the style image(s) in px (default: ``image_size``, at least
            :data:`MIN_STYLE_SIZE`; see :meth:`style_sizes`).
        image_size: training crop size, linked from ``data.image_size`` by the CLI.
        loss: the style loss (:class:`~fastmmd.losses.StyleLoss`, ``--model.loss.*``: method, term
            weights, taps, normalisation, kernel and estimator settings), the one declaration that
            ``optimize``, ``compare`` and ``evaluate`` share; kept in the hyper-parameters as a dict.
        vgg_weights, vgg_pooling, vgg_width_divisor: the frozen VGG-19 (``random`` and ``8`` in tests).
        network_width, residual_blocks, downsample_kernel: the TransformerNet (Johnson: 32, 5 and 3;
            :mod:`fastmmd.model.networks` says why the default is 4).
        init_from: warm start: the network's weights from any fastmmd file (a ``.ckpt`` of another
            run, or an exported ``.pt``/``.pt2``), read by :func:`fastmmd.model.files.read_network`
            (weights only, no code). The optimizer, schedule and step start fresh; ``--ckpt_path``
            (resume) overrides these weights with the checkpoint's. Started from a network that
            already reproduces photos, a new style ends a short CPU run closer to the photos at the
            same style distance (measured: docs/benchmarks.md, "A new style on the CPU").
        lr: Adam learning rate. ``lr_schedule``: ``constant``, ``cosine`` (to ``lr_min`` at the last
            step) or ``step`` (times ``lr_gamma`` every ``lr_step_size`` steps).
        channels_last: NHWC memory format for ``vgg`` (default: its convolutions run faster, most of
            all under bf16) or ``all`` (the network and its inputs too; on CPU this is slower, because
            instance norm converts NHWC back to NCHW at every layer; docs/benchmarks.md,
            "Feed-forward training").
        compile: ``torch.compile`` the network and VGG in place (``nn.Module.compile``, so checkpoint
            keys do not change) when fitting starts: faster steps on the CPU and on a GPU
            (measured: docs/benchmarks.md, "Feed-forward training" and "On one GPU"), after the
            first steps have paid the compilation. Off by default:
            a short run may not earn the compile time back, and resumes are not bitwise exact
            across eager and compiled runs.
        stability_weight: weight of Gupta et al.'s stability loss (:mod:`fastmmd.losses.stability`),
            0 = off. Each step then also runs the network on a copy of the batch shifted by up to
            ``stability_shift`` px (sub-pixel, per image) plus Gaussian noise of std
            ``stability_noise``, and penalises the squared difference from the equally shifted
            output: video frames stop flickering (docs/benchmarks.md, "Video flicker"). The term is
            logged as ``train/stability``; it costs one more network pass, no VGG pass.
        stability_crop: make the stability loss's moves whole pixels, 0..ceil(``stability_shift``)
            per axis, by cropping input and output alike (:func:`fastmmd.core.motion.crop_moves`; a
            ``STABILITY_CROP_MARGIN`` px border, where padding differs, is not compared) instead of
            sub-pixel bilinear shifts. Exact: the target is not blurred by resampling, so fine
            texture is not what the term removes; what it removes is texture tied to the network's
            4 px grid instead of the photo (docs/benchmarks.md, "Grid lock"), which 1..3 px moves
            change most. Against sub-pixel moves at the same weights it removes the period-4 lattice
            and flickers less at the same style distance (measured: docs/benchmarks.md, "The fix:
            whole-pixel stability moves").
        loss_jitter: J px: each training step scores the output and the photo cropped by J px at
            one random offset in 0..J (same for both), so VGG-19's pooling grid (stride 2..16 from
            the crop's corner) and the network's 4 px grid no longer line up the same way every
            step, and a pattern phased with both stops paying: 3 cut the lattice's period-2
            component in a fine-tune (measured: docs/benchmarks.md, "Grid lock"). 0 = off (validation
            never jitters).
        seed: seeds the criterion's generator (Gaussian estimators) and the one of the training step's
            perturbations (the stability loss's shifts and noise, the loss jitter's offsets).
    """

    #: FLOPs per training batch for Lightning's ``ThroughputMonitor``: not counted (None), which the
    #: monitor reads as "no FLOPs metrics" instead of warning that the attribute is missing.
    flops_per_batch: float | None = None

    def __init__(
        self,
        style_images: list[str] | None = None,
        style_blend: list[float] | None = None,
        conditioning: list[Literal["styles", "strength", "arbitrary"]] | None = None,
        embedding_width: int = EMBEDDING_WIDTH,
        strength_range: list[float] | None = None,
        condition_draw: Literal["image", "batch"] = "image",
        style_size: int | None = None,
        image_size: int = 256,
        loss: StyleLoss = StyleLoss(),
        vgg_weights: str = "caffe",
        vgg_pooling: Literal["max", "avg"] = "max",
        vgg_width_divisor: int = 1,
        network_width: int = 32,
        residual_blocks: int = 5,
        downsample_kernel: int = 4,
        init_from: str | None = None,
        lr: float = 1e-3,
        lr_schedule: Literal["constant", "cosine", "step"] = "constant",
        lr_min: float = 0.0,
        lr_step_size: int = 10000,
        lr_gamma: float = 0.5,
        channels_last: Literal["none", "vgg", "all"] = "vgg",
        compile: bool = False,
        stability_weight: float = 0.0,
        stability_shift: float = 1.0,
        stability_noise: float = 0.02,
        stability_crop: bool = False,
        loss_jitter: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        loss = StyleLoss.of(loss)  # a dict when Lightning rebuilds the module from a checkpoint's hyper-parameters
        self.save_hyperparameters(ignore=["loss"])
        self.hparams["loss"] = asdict(loss)  # plain data: the checkpoint stays loadable with weights_only=True
        # a shipped style's name -> its downloaded painting (fastmmd.base.paintings); files stay as given
        style_images = [str(p) for p in resolve_paintings(style_images or [])]
        self.hparams["style_images"] = style_images
        arbitrary = "arbitrary" in (conditioning or [])
        if not style_images and not arbitrary:
            raise UserError("model.style_images needs at least one style image")
        if arbitrary and style_images:
            raise UserError("model.conditioning: [arbitrary] draws its paintings from data.painting_root; "
                            "give no model.style_images")
        if arbitrary and not 1 <= embedding_width <= 1024:
            raise UserError(f"model.embedding_width must be 1..1024, not {embedding_width}")
        if not lr > 0:
            raise UserError(f"model.lr must be positive, not {lr}")
        for name, value in (("stability_weight", stability_weight), ("stability_shift", stability_shift),
                            ("stability_noise", stability_noise)):
            if not (value >= 0 and value < float("inf")):
                raise UserError(f"model.{name} must be a finite number >= 0, not {value}")
        if not 0 <= loss_jitter <= MAX_LOSS_JITTER:
            raise UserError(f"model.loss_jitter must be 0..{MAX_LOSS_JITTER} px, not {loss_jitter}")
        conditioning = self._check_conditioning(style_images, style_blend, conditioning, strength_range, condition_draw)
        self.strength_range = tuple(strength_range or (0.0, 2.0)) if "strength" in conditioning else None
        self.arbitrary = arbitrary
        self.network = TransformerNet(network_width, residual_blocks, downsample_kernel,
                                      styles=len(style_images) if "styles" in conditioning else 1,
                                      strength_width=STRENGTH_WIDTH if "strength" in conditioning else 0,
                                      style_embedding=embedding_width if arbitrary else 0,
                                      style_features=statistics_width(vgg_width_divisor) if arbitrary else 0)
        self.condition_generator = torch.Generator().manual_seed(seed)
        if init_from:
            self._warm_start(init_from)
        vgg = None
        if arbitrary:  # the style pass also feeds the embedding: tap its layers too
            vgg = VGGFeatures(tuple(loss.style_layers) + EMBEDDING_LAYERS + tuple(loss.content_layers), vgg_weights,
                              vgg_pooling, vgg_width_divisor)
        self.criterion = StyleCriterion(loss, vgg=vgg, vgg_weights=vgg_weights, vgg_pooling=vgg_pooling,
                                        vgg_width_divisor=vgg_width_divisor, seed=seed)
        self.metric_names = ["total", "style", "content", "tv", *(f"style/{m}" for m, _ in self.criterion.fusion)]
        if stability_weight > 0:
            self.metric_names.append("stability")  # training steps only
        self.stability_generator = torch.Generator().manual_seed(seed)
        self.train_metrics = nn.ModuleDict({n.replace("/", "_"): MeanMetric() for n in self.metric_names})
        self.val_metrics = nn.ModuleDict({n.replace("/", "_"): MeanMetric() for n in self.metric_names})
        self.test_metrics = nn.ModuleDict({n.replace("/", "_"): MeanMetric() for n in self.metric_names})
        self.last_terms: dict[str, Tensor] = {}  # batch means of the last training step (NaN guard)
        if channels_last not in ("none", "vgg", "all"):
            raise UserError(f"model.channels_last must be none, vgg or all, not {channels_last!r}")
        if channels_last != "none":
            self.criterion.vgg.to(memory_format=torch.channels_last)
        if channels_last == "all":
            self.network.to(memory_format=torch.channels_last)

    @staticmethod
    def _check_conditioning(style_images: list[str], style_blend: list[float] | None, conditioning: list[str] | None,
                            strength_range: list[float] | None, draw: str) -> list[str]:
        """The conditioning list, after one-line checks of it and of the settings it needs."""
        conditioning = list(conditioning or [])
        known = ["styles", "strength", "arbitrary"]
        unknown = [c for c in conditioning if c not in known]
        if unknown:
            raise UserError(f"model.conditioning takes styles, strength and/or arbitrary, not {unknown[0]!r}"
                            f"{did_you_mean(str(unknown[0]), known)}")
        if "styles" in conditioning and "arbitrary" in conditioning:
            raise UserError("model.conditioning: styles (a fixed list of paintings) and arbitrary (any painting) "
                            "exclude each other")
        if "styles" in conditioning and len(style_images) < 2:
            raise UserError("model.conditioning: [styles] trains one network for several styles; give at least two "
                            "model.style_images")
        if "styles" in conditioning and style_blend is not None:
            raise UserError("model.style_blend mixes the style images into one target; with model.conditioning: "
                            "[styles] each is its own style (blend them at inference with --mix)")
        if strength_range is not None:
            lo, hi = (list(strength_range) + [math.nan, math.nan])[:2]
            if len(strength_range) != 2 or not (0 <= lo <= 1 <= hi < math.inf and lo < hi):
                raise UserError(f"model.strength_range must be [lo, hi] with 0 <= lo <= 1 <= hi, finite, "
                                f"not {strength_range}")
        if draw not in ("image", "batch"):
            raise UserError(f"model.condition_draw must be image or batch, not {draw!r}")
        return conditioning

    def _warm_start(self, path: str) -> None:
        """Copies the weights of the network in ``path``, which must have this network's layout; a
        single-style network into a conditioned one goes into every style slot
        (:func:`fastmmd.model.conditioning.copy_into_every_slot`)."""
        from fastmmd.model.files import read_network

        source, _ = read_network(path)
        layout = ("width", "residual_blocks", "downsample_kernel")
        if (self.network.conditioned and not source.conditioned
                and [source.config()[k] for k in layout] == [self.network.config()[k] for k in layout]):
            copy_into_every_slot(self.network, source)
            return
        if source.config() != self.network.config():
            mine = ", ".join(f"{k}={v}" for k, v in self.network.config().items())
            theirs = ", ".join(f"{k}={v}" for k, v in source.config().items())
            raise UserError(f"--model.init_from {path!r} holds a network with {theirs}, but this run trains {mine}; "
                            "set model.network_width/residual_blocks/downsample_kernel to match")
        self.network.load_state_dict(source.state_dict())

    # ------------------------------------------------------------------------- style targets
    def _ensure_style(self) -> None:
        """Reads the style image(s) and computes the targets once, on the module's device (an
        arbitrary-style network has no fixed targets: each batch brings its paintings)."""
        if self.criterion.has_style or self.arbitrary:
            return
        images = [read_image(p, size).unsqueeze(0) for p, size in zip(self.hparams.style_images, self.style_sizes())]
        self.criterion.set_style(images, self.hparams.style_blend, separate=self.network.styles > 1)

    def style_sizes(self) -> list[int]:
        """Long edge each style image is read at: ``style_size`` if set, else
        ``max(image_size, min(MIN_STYLE_SIZE, the image's own long edge))`` (a small painting is not
        enlarged to reach the minimum)."""
        hp = self.hparams
        if hp.style_size:
            return [hp.style_size] * len(hp.style_images)
        sizes = []
        for path in hp.style_images:
            try:
                with Image.open(path) as img:
                    own = max(img.size)
            except OSError:  # unreadable: read_image reports it properly
                own = MIN_STYLE_SIZE
            sizes.append(max(hp.image_size, min(MIN_STYLE_SIZE, own)))
        return sizes

    def configure_model(self) -> None:
        """Computes the style targets, once, for every Trainer stage (fit, validate, test, predict).

        The Trainer calls this before it restores a checkpoint and moves the module to its device,
        under its default-device context: the targets are computed where the VGG is (the CPU) and
        move with the module. (Weight averaging, :class:`~fastmmd.train.callbacks.NetworkEMA`,
        copies the network alone, by name, so it does not care when the targets appear.)
        """
        self._ensure_style()

    def use_fast_convolutions(self, precision: Any) -> bool:
        """Runs VGG's convolutions on large maps through NNPACK
        (:meth:`~fastmmd.vgg.features.VGGFeatures.use_nnpack`) where that is faster: fp32 training
        (``precision`` is the Trainer's, e.g. ``32-true``) on a CPU whose convolutions run AVX2 kernels
        at most (:func:`fastmmd.base.precision.cpu_nnpack_is_faster`), not compiled. The same features
        to float rounding; what it bought: docs/benchmarks.md, "bf16 without bf16 instructions".
        Called when fitting, validating or testing starts; returns whether NNPACK is on."""
        on = (self.device.type == "cpu" and str(precision) in ("32", "32-true") and not self.hparams.get("compile")
              and cpu_nnpack_is_faster())
        self.criterion.vgg.use_nnpack(on)
        return on

    def on_fit_start(self) -> None:
        self.use_fast_convolutions(self.trainer.precision)
        if self.hparams.get("compile") and not getattr(self, "_compiled", False):
            self.network.compile()
            self.criterion.vgg.compile()
            self._compiled = True

    def on_validation_start(self) -> None:
        self.use_fast_convolutions(self.trainer.precision)

    def on_test_start(self) -> None:
        self.use_fast_convolutions(self.trainer.precision)

    # ------------------------------------------------------------------------- steps
    def _prepare(self, images: Tensor) -> Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last == "all" else images

    def forward(self, images: Tensor, mix: Tensor | None = None, strength: Tensor | None = None,
                style: Tensor | None = None) -> Tensor:
        """Stylizes RGB images in [0, 1], (B, 3, H, W), any H and W (a conditioned network: in style
        ``mix`` (B, S) at ``strength`` (B,), default style 0 at 1; an arbitrary-style network: in
        the paintings whose statistics are ``style``, :func:`fastmmd.model.arbitrary.style_statistics`)."""
        return self.network(self._prepare(images), mix, strength, style)

    def _split(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        """(photos, paintings): an arbitrary-style network's batches pair them; others are photos only."""
        if isinstance(batch, (tuple, list)):
            if not self.arbitrary:
                raise UserError("the data module pairs photos with paintings (data.painting_root), but the model "
                                "is not an arbitrary-style network; set model.conditioning: [arbitrary]")
            return batch[0], batch[1]
        if self.arbitrary:
            raise UserError("an arbitrary-style network trains on photos paired with paintings; give data.painting_root")
        return batch, None

    @torch.no_grad()
    def _paintings(self, paintings: Tensor) -> tuple[Tensor, list[dict[str, dict[str, Tensor]]]]:
        """One VGG pass over the batch's paintings: their statistics phi (the network's input) and
        their per-sample style targets (the loss's), in the step's precision."""
        layers = tuple(dict.fromkeys(self.criterion.style_layers + EMBEDDING_LAYERS))
        features = self.criterion.vgg(self._prepare(paintings), layers)
        return style_statistics(features), self.criterion.sample_targets(features)

    def _draw(self, batch: Tensor, batch_idx: int | None = None) -> Draw:
        """The batch's conditions: random in training (``batch_idx`` None), fixed in validation
        (an arbitrary-style network's paintings come with the batch, :meth:`_terms`)."""
        if not self.network.conditioned:
            return Draw()
        if batch_idx is not None:
            draw = validation_conditions(batch.shape[0], batch_idx, self.network.styles,
                                         self.strength_range is not None)
        else:
            draw = draw_conditions(batch.shape[0], self.network.styles, self.strength_range,
                                   self.hparams.get("condition_draw", "image"), self.condition_generator)
        return draw.to(batch.device)

    def _terms(self, content: Tensor, draw: Draw | None = None, jitter: int = 0,
               paintings: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The network's output and the loss terms for a batch, in conditions ``draw`` (None = the
        defaults; an arbitrary-style network's painting statistics are stored into it from
        ``paintings``); ``jitter`` > 0 scores both images cropped by that many px at a random offset."""
        draw = draw or Draw()
        targets = None
        if paintings is not None:
            draw.style, targets = self._paintings(paintings)
        content = self._prepare(content)
        generated = self.network(content, draw.mix, draw.strength, draw.style)
        scored, photo = generated, content
        if jitter:
            dy, dx = torch.randint(0, jitter + 1, (2,), generator=self.stability_generator).tolist()
            h, w = generated.shape[-2] - jitter, generated.shape[-1] - jitter
            scored, photo = (t[..., dy:dy + h, dx:dx + w] for t in (generated, content))
        return generated, self.criterion(scored, photo, styles=draw.styles, style_scale=draw.strength,
                                         style_targets=targets)

    def _outputs(self, generated: Tensor, draw: Draw) -> dict[str, Tensor]:
        """What validation/test steps hand the callbacks: the images and the conditions they were made with."""
        out = {"generated": generated.detach()}
        out.update({k: v for k, v in (("styles", draw.styles), ("mix", draw.mix), ("strength", draw.strength),
                                      ("style", draw.style)) if v is not None})
        return out

    def _log_terms(self, stage: str, metrics: nn.ModuleDict, terms: dict[str, Tensor]) -> None:
        on_step = stage == "train"
        for name in self.metric_names:
            if name not in terms:
                continue
            metric = metrics[name.replace("/", "_")]
            metric(terms[name].detach().float())
            self.log(f"{stage}/{name}", metric, on_step=on_step, on_epoch=True, prog_bar=name == "total")

    def _stability(self, content: Tensor, generated: Tensor, draw: Draw) -> Tensor:
        """Gupta et al.'s term: f(shift(x) + noise) against shift(f(x)), per sample."""
        hp = self.hparams
        if hp.stability_crop:
            most = math.ceil(hp.stability_shift)
            offsets = motion.random_crop_offsets(content.shape[0], most, self.stability_generator)
            move = lambda t: motion.crop_moves(t, offsets, most, STABILITY_CROP_MARGIN)  # noqa: E731
        else:
            offsets = motion.random_offsets(content.shape[0], hp.stability_shift, self.stability_generator)
            move = lambda t: motion.shift(t, offsets)  # noqa: E731
        moved, _ = move(content)
        noise = torch.randn(moved.shape, generator=self.stability_generator).to(moved) * hp.stability_noise
        perturbed = self.network(self._prepare((moved + noise).clamp(0, 1)), draw.mix, draw.strength, draw.style)
        target, mask = move(generated)
        return stability_loss(perturbed, target, mask)

    def training_step(self, batch: Tensor | list[Tensor], batch_idx: int) -> Tensor:
        batch, paintings = self._split(batch)
        draw = self._draw(batch)
        generated, terms = self._terms(batch, draw, self.hparams.loss_jitter, paintings)
        if self.hparams.stability_weight > 0:
            terms["stability"] = self._stability(batch, generated, draw)
            terms["total"] = terms["total"] + self.hparams.stability_weight * terms["stability"]
        self.last_terms = {k: v.detach().mean() for k, v in terms.items()}
        self._log_terms("train", self.train_metrics, terms)
        return terms["total"].mean()

    def validation_step(self, batch: Tensor | list[Tensor], batch_idx: int) -> dict[str, Tensor]:
        batch, paintings = self._split(batch)
        draw = self._draw(batch, batch_idx)
        generated, terms = self._terms(batch, draw, 0, paintings)
        self._log_terms("val", self.val_metrics, terms)
        return self._outputs(generated, draw) | ({} if paintings is None else {"paintings": paintings})

    def test_step(self, batch: Tensor | list[Tensor], batch_idx: int) -> dict[str, Tensor]:
        """As validation, logged under ``test/*`` (``fastmmd test``)."""
        batch, paintings = self._split(batch)
        draw = self._draw(batch, batch_idx)
        generated, terms = self._terms(batch, draw, 0, paintings)
        self._log_terms("test", self.test_metrics, terms)
        return self._outputs(generated, draw)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        if self.arbitrary:  # predict's batches are photos alone
            raise UserError("fastmmd predict has no painting to give an arbitrary-style network; use fastmmd stylize "
                            "CHECKPOINT photos/ --style-image PAINTING")
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).float()

    # ------------------------------------------------------------------------- optimization
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = torch.optim.Adam(self.network.parameters(), lr=hp.lr)
        if hp.lr_schedule == "constant":
            return optimizer
        if hp.lr_schedule == "cosine":
            steps = self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches
            if not 0 < steps < float("inf"):
                raise UserError("lr_schedule cosine needs a finite trainer.max_steps or max_epochs")
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(steps), eta_min=hp.lr_min)
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=hp.lr_step_size, gamma=hp.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------------- checkpoints
    def describe(self) -> dict[str, Any]:
        """The checkpoint's ``"fastmmd"`` entry (format of :mod:`fastmmd.model.checkpoints`)."""
        hp, c = self.hparams, self.criterion
        blend = hp.style_blend or [1.0] * len(hp.style_images)
        extra = {"conditioning": describe_conditioning(
            style_names(hp.style_images) if self.network.styles > 1 else None, self.strength_range,
            hp.get("condition_draw", "image"),
            arbitrary_layers=EMBEDDING_LAYERS if self.arbitrary else None)} if self.network.conditioned else {}
        return description(self.network, **extra, **{
            "style_images": [Path(p).name for p in hp.style_images],
            "style_blend": [float(b) / sum(blend) for b in blend], "style_size": max(self.style_sizes(), default=hp.style_size or MIN_STYLE_SIZE),
            "image_size": hp.image_size, "loss": c.loss_spec, "style_weight": c.style_weight,
            "content_weight": c.content_weight, "tv_weight": c.tv_weight, "vgg": c.vgg.describe(),
            "init_from": Path(hp.init_from).name if hp.init_from else None,
            "stability_weight": float(hp.get("stability_weight", 0.0)),
            "global_step": self._global_step(),
        })

    def _global_step(self) -> int:
        """The attached Trainer's step; 0 for a module not attached to one (``trainer`` raises then)."""
        try:
            return int(self.trainer.global_step)
        except RuntimeError:
            return 0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keeps only the network's weights (never the frozen VGG) and adds the description.

        Under weight averaging (:class:`~fastmmd.train.callbacks.NetworkEMA`, or Lightning's
        own ``WeightAveraging`` in a Trainer built by hand) ``state_dict`` holds the averaged network
        and ``current_model_state`` the trained one: both keep only their network, so the file's
        network (what export, stylize and evaluate read) is the average. With fastmmd's callback
        the file is the same whether its hook runs before this one (as Lightning calls them) or after."""
        entries = checkpoint_entries(self.network, self.describe())
        if isinstance(checkpoint.get(TRAINED_STATE_KEY), dict):  # the callback's two module states, network only
            for key in ("state_dict", TRAINED_STATE_KEY):
                entries[key] = {k: v for k, v in checkpoint[key].items() if k.startswith(NETWORK_PREFIX)}
        checkpoint.update(entries)
        checkpoint[RNG_KEY] = self.criterion.generator.get_state()
        checkpoint[STABILITY_RNG_KEY] = self.stability_generator.get_state()
        checkpoint[CONDITION_RNG_KEY] = self.condition_generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Re-adds this module's own frozen (non-network) weights so strict loading still checks the network."""
        if isinstance(checkpoint.get(KEY), dict):  # what fastmmd wrote; the CLI has read the file whole before
            check_format_version(checkpoint[KEY], "the checkpoint")
        own = {k: v for k, v in self.state_dict().items() if not k.startswith(NETWORK_PREFIX)}
        for key in ("state_dict", TRAINED_STATE_KEY):  # Lightning's WeightAveraging loads the second strictly
            if isinstance(checkpoint.get(key), dict):
                checkpoint[key] = {**own, **checkpoint[key]}
        if RNG_KEY in checkpoint:
            self.criterion.generator.set_state(checkpoint[RNG_KEY])
        if STABILITY_RNG_KEY in checkpoint:
            self.stability_generator.set_state(checkpoint[STABILITY_RNG_KEY])
        if CONDITION_RNG_KEY in checkpoint:
            self.condition_generator.set_state(checkpoint[CONDITION_RNG_KEY])
