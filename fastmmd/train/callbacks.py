"""Training side jobs kept out of the LightningModule: image grids, the NaN guard, safe checkpoint files.

* :class:`ValidationGrid` stylizes the fixed validation images and logs them as a grid to TensorBoard
  and as a PNG in the run folder, so progress can be seen without TensorBoard.
* :class:`NonFiniteGuard` stops training before a NaN/Inf loss reaches the weights, so the last
  checkpoint written stays the last good one.
* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file beside the target and
  renames it in one step. Lightning's own local save goes through an fsspec transaction whose
  temporary file lives in the system temp folder and is ``shutil.move``-d into place: when that
  folder is on another file system the "move" is a copy straight into the final path, so a run
  killed mid-save can leave a truncated ``last.ckpt``.
* :class:`StylizedImageWriter` saves what ``fastmmd predict`` produces.
* :class:`ValidationScores` scores the validation photos with ``fastmmd compare``'s metrics
  (``val/style_swd``, ``val/content_distance``) and their stability (``val/temporal_error``), and :class:`ElapsedTime` logs the fit's wall-clock
  (``time/elapsed_s``), so a learning curve can be read against time in ``metrics.csv``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid

from fastmmd.base.errors import NonFiniteLossError
from fastmmd.base.images import read_image, save_image
from fastmmd.base.outputs import atomic_path
from fastmmd.core import motion
from fastmmd.losses.metrics import content_score, masked_abs_error, style_swd
from fastmmd.model.conditioning import style_names
from fastmmd.vgg.features import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures


def photos_of(batch: Any) -> torch.Tensor:
    """The photos of a validation batch: the batch itself, or the first of (photos, paintings)."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def run_folder(trainer: L.Trainer) -> Path:
    """The run's folder: the logger's folder (``checkpoints/<run>/`` under ``fastmmd fit``).

    Read from the logger, not ``trainer.log_dir``: that one broadcasts from rank 0, a collective that
    would hang a DDP run when called from rank 0 alone.
    """
    return Path(getattr(trainer.logger, "log_dir", None) or trainer.default_root_dir)


class ValidationGrid(L.Callback):
    """Logs content (top row) over stylized (bottom row) validation images after each validation.

    The grid of the first ``max_images`` validation images goes to TensorBoard as ``val/grid`` and to
    ``<run>/grids/step-NNNNNNN.png`` plus ``<run>/grids/latest.png`` (written atomically).

    Args:
        max_images: most images shown per row.
    """

    def __init__(self, max_images: int = 8) -> None:
        self.max_images = max_images
        self._rows: list[tuple[torch.Tensor, ...]] = []  # (content, [painting,] stylized) batches, CPU

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        have = sum(row[0].shape[0] for row in self._rows)
        if have >= self.max_images or not trainer.is_global_zero or not isinstance(outputs, dict):
            return
        n = self.max_images - have
        content = photos_of(batch)[:n].float().cpu()
        paintings = outputs.get("paintings")
        middle = () if paintings is None else (torch.nn.functional.interpolate(
            paintings[:n].float().cpu(), size=content.shape[-2:], mode="bilinear", antialias=True),)
        self._rows.append((content, *middle, outputs["generated"][:n].float().cpu()))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows, self._rows = self._rows, []
        if not rows or trainer.sanity_checking or not trainer.is_global_zero:
            return
        parts = [torch.cat(t) for t in zip(*rows, strict=True)]
        grid = make_grid(torch.cat(parts).clamp(0, 1), nrow=parts[0].shape[0], padding=2, pad_value=1.0)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/grid", grid, trainer.global_step)
        folder = run_folder(trainer) / "grids"
        meta = {"step": trainer.global_step, "rows": "content / painting / stylized" if len(parts) == 3
                else "content / stylized"}
        save_image(grid, folder / f"step-{trainer.global_step:07d}.png", meta)
        save_image(grid, folder / "latest.png", meta)


class NonFiniteGuard(L.Callback):
    """Stops with :class:`~fastmmd.base.errors.NonFiniteLossError` when the loss is NaN or Inf.

    Checked before the backward pass, so no optimizer step ever sees the bad loss and the last
    checkpoint holds the last good weights. Under DDP the decision is shared by all ranks, so they
    stop together instead of one waiting for the others in an all-reduce.
    """

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        terms = getattr(pl_module, "last_terms", {})
        which = [k for k, v in terms.items() if not torch.isfinite(v).all()] or ["total"]
        raise NonFiniteLossError(
            f"loss term(s) {', '.join(which)} became NaN/Inf at step {trainer.global_step}; training stopped and "
            f"the last checkpoint is kept. Lower model.lr or model.loss.style_weight, use trainer.gradient_clip_val, "
            f"or precision 32, then resume with --ckpt_path last")


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose ``last.ckpt`` also holds the final step.

    Lightning's ModelCheckpoint writes ``last.ckpt`` only together with a periodic checkpoint, so a
    run ending between two periodic saves (max_steps, max_epochs, max_time) would leave ``last.ckpt``
    behind the trained network. At the end of the final batch (the same point as a periodic save)
    this writes ``last.ckpt`` with the public ``Trainer.save_checkpoint``, unless a checkpoint of
    this step was just written. Only public API: the step of the newest checkpoint is noted in the
    ``on_save_checkpoint`` hook, which Lightning calls for every checkpoint it writes.

    ModelCheckpoint's own later saves of a step already saved are skipped, as ModelCheckpoint skips
    its own: after a validation (the ``metrics.csv`` clock would then run ahead of the checkpoint's),
    at the epoch's end and in ``on_train_end`` (Lightning >= 2.5.x writes ``last.ckpt`` there when it
    has not written one itself). A save after the epoch loop ended records the epoch as finished, so
    a run stopped mid-epoch by ``max_steps`` would resume at the next epoch, one epoch off.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.saved_step = -1  # global step of the newest checkpoint written by this process

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        self.saved_step = int(checkpoint.get("global_step", trainer.global_step))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not self.save_last or trainer.fast_dev_run or self.dirpath is None:
            return
        final_step = 0 < trainer.max_steps <= trainer.global_step or trainer.should_stop  # max_time, early stop
        final_epoch = (trainer.max_epochs is not None and 0 <= trainer.max_epochs <= trainer.current_epoch + 1
                       and batch_idx + 1 >= trainer.num_training_batches)
        if (final_step or final_epoch) and self.saved_step != trainer.global_step:
            self.last_model_path = self.format_checkpoint_name({}, filename=self.CHECKPOINT_NAME_LAST)  # part of the saved state
            trainer.save_checkpoint(self.last_model_path, self.save_weights_only)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saved_step != trainer.global_step:
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saved_step != trainer.global_step:
            super().on_train_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saved_step != trainer.global_step:
            super().on_train_end(trainer, pl_module)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file in the target folder, fsync, then ``os.replace``; loads
    with the weights-only unpickler only (:func:`fastmmd.base.safe_load.load_pickle`), whatever Lightning asks."""

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        from fastmmd.base.safe_load import load_pickle

        return load_pickle(path)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())


class StylizedImageWriter(BasePredictionWriter):
    """Writes each stylized image of ``fastmmd predict`` as PNG, named after its source file.

    Args:
        output_dir: target folder (default: ``<run>/predictions``).
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        folder = Path(self.output_dir) if self.output_dir else run_folder(trainer) / "predictions"
        paths = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else [None] * len(prediction)
        for i, (image, source) in enumerate(zip(prediction, paths, strict=True)):
            name = Path(source).stem if source else f"{batch_idx:06d}-{i:03d}"
            save_image(image, folder / f"{name}.png", {"source": source or "", "step": trainer.global_step})


class ValidationScores(L.Callback):
    """Logs ``fastmmd compare``'s metrics of the stylized validation photos after each validation.

    * ``val/style_swd``: sliced-Wasserstein style distance, relu1_1..relu5_1, each layer divided by
      the RMS of the style's features, averaged over layers (:func:`fastmmd.losses.metrics.style_swd`);
    * ``val/content_distance``: relative relu4_2 distance mean (F - P)^2 / mean P^2 between the
      output and its input photo (:func:`fastmmd.losses.metrics.content_score`). Not ``val/content``: that
      name is the criterion's content term (same formula, on the training's own content layers and
      precision, before rounding);
    * ``val/temporal_error``: flicker on a two-frame "video" of each photo: the photo moved by a
      sub-pixel camera shake (0.5, 0.25) px plus pixel noise of std 0.01 (seeded) is stylized, and
      compared with the stylized photo moved the same way: mean |f(shift(x) + n) - shift(f(x))|
      over the pixels both show (:func:`fastmmd.losses.metrics.masked_abs_error`, as
      :func:`fastmmd.losses.metrics.temporal_error` measures clips). One extra network pass.

    Both are means over the validation photos, measured as ``compare``/``evaluate`` measure a saved
    output: the output rounded to 8 bits, VGG in float32 (autocast off), the style image(s) the
    module trains on read at the validation size (long edge ``model.image_size``; several style
    images are pooled into one sample, their blend weights not applied; a network trained on
    several styles, ``model.conditioning: [styles]``, is scored per photo against the style that
    photo was drawn in, photo j in style j mod S, and also logs ``val/style_swd/<style name>``), the module's own VGG
    weights, ``projections`` directions seeded with ``seed``. The cost is one extra VGG pass over
    the ``data.val_size`` photos per validation. Skipped during the sanity check.

    Args:
        projections: random directions of the sliced Wasserstein distance (``compare``: 64).
        seed: seeds the directions (``compare``: 0).
    """

    SHAKE = (0.5, 0.25)  # px (x, y) of the temporal-error pair
    NOISE = 0.01

    def __init__(self, projections: int = 64, seed: int = 0) -> None:
        self.projections, self.seed = projections, seed
        self._vgg: VGGFeatures | None = None
        self._style: list[dict[str, torch.Tensor]] = []  # per target style: layer -> (C, M) features, on the device
        self._names: list[str] = []  # the styles' names when each is its own target

    def _extractor(self, pl_module: L.LightningModule) -> VGGFeatures:
        """The module's VGG when it taps every layer scored, else a twin with the same weights (built once)."""
        vgg = pl_module.criterion.vgg
        if set(STYLE_LAYERS + CONTENT_LAYERS) <= set(vgg.taps):
            return vgg
        if self._vgg is None:
            self._vgg = VGGFeatures(STYLE_LAYERS + CONTENT_LAYERS, vgg.weights_name, vgg.pooling, vgg.width_divisor)
        return self._vgg.to(pl_module.device)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not hasattr(pl_module, "criterion") or not pl_module.hparams.get("style_images"):
            return  # (an arbitrary-style network's paintings come with each batch)
        hp = pl_module.hparams
        if self._style and next(iter(self._style[0].values())).device == pl_module.device:
            return  # computed by an earlier validation
        with torch.autocast(pl_module.device.type, enabled=False):
            maps = [self._extractor(pl_module)(read_image(p, hp.image_size).unsqueeze(0).to(pl_module.device), STYLE_LAYERS)
                    for p in hp.style_images]
        groups = [[m] for m in maps] if pl_module.network.styles > 1 else [maps]
        self._names = style_names(hp.style_images) if len(groups) > 1 else []
        self._style = [{t: torch.cat([m[t].float().flatten(2)[0] for m in group], dim=1) for t in STYLE_LAYERS}
                       for group in groups]  # (C, M) per layer

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        paintings = outputs.get("paintings") if isinstance(outputs, dict) else None
        if trainer.sanity_checking or not isinstance(outputs, dict) or not (self._style or paintings is not None):
            return
        batch = photos_of(batch)
        vgg = self._extractor(pl_module)
        with torch.autocast(pl_module.device.type, enabled=False):
            output = outputs["generated"].float().clamp(0, 1).mul(255).round().div(255)  # as saved in 8 bits
            features = vgg(output)
            content = vgg(batch.float(), CONTENT_LAYERS)
        offsets = torch.tensor([self.SHAKE] * batch.shape[0])
        moved, _ = motion.shift(batch.float(), offsets)
        g = torch.Generator().manual_seed(self.seed + batch_idx)
        noisy = (moved + self.NOISE * torch.randn(moved.shape, generator=g).to(moved)).clamp(0, 1)
        with trainer.precision_plugin.forward_context():  # the precision the validation step ran in
            perturbed = pl_module(noisy.to(batch.dtype), outputs.get("mix"), outputs.get("strength"),
                                  outputs.get("style")).float()
        target, mask = motion.shift(outputs["generated"].float(), offsets, 2.0)
        styles = outputs.get("styles") if len(self._style) > 1 else None
        swd = torch.zeros(output.shape[0], device=output.device)
        if paintings is not None:  # an arbitrary-style network: each photo against its own painting
            with torch.autocast(pl_module.device.type, enabled=False):
                own = vgg(paintings.float(), STYLE_LAYERS)
            for b in range(output.shape[0]):
                swd[b] = style_swd({t: f[b:b + 1] for t, f in features.items()}, {t: f[b:b + 1] for t, f in own.items()},
                                   STYLE_LAYERS, self.projections, self.seed)[0]
        for index, style in enumerate(self._style):
            every = torch.arange(output.shape[0], device=output.device)
            rows = every if styles is None else (styles == index).nonzero()[:, 0]
            if len(rows):
                part = style_swd({t: f[rows] for t, f in features.items()}, style, STYLE_LAYERS, self.projections,
                                 self.seed)
                swd[rows] = part
                if self._names:
                    pl_module.log(f"val/style_swd/{self._names[index]}", part.mean(), on_step=False, on_epoch=True,
                                  batch_size=len(rows))  # no sync: ranks may hold different styles
        scores = {"val/style_swd": swd,
                  "val/content_distance": content_score(features, content, CONTENT_LAYERS),
                  "val/temporal_error": masked_abs_error(perturbed, target, mask)}
        for name, value in scores.items():
            pl_module.log(name, value.mean(), on_step=False, on_epoch=True, batch_size=output.shape[0], sync_dist=True)


class ElapsedTime(L.Callback):
    """Logs ``time/elapsed_s``, the fit's wall-clock seconds, with the training losses and after each validation.

    The clock starts when ``fit`` starts (start-up, validation and checkpointing included). Its value
    travels in every checkpoint, so a resumed run goes on from the value of the checkpoint it resumes
    from: time after that checkpoint (work the resumed run does again) and the time the run was down
    are not counted, the resumed run's own start-up is. (A validation that ran just after that
    checkpoint keeps its row in ``metrics.csv``, so the clock can step back by about its duration
    there.) Not logged by ``validate``/``test``.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._start: float | None = None

    def elapsed(self) -> float:
        """Seconds of fit so far, across resumes."""
        return self._offset + (time.monotonic() - self._start if self._start is not None else 0.0)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._offset, self._start = self.elapsed(), None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        pl_module.log("time/elapsed_s", self.elapsed(), on_step=True, on_epoch=False, rank_zero_only=True)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is not None and not trainer.sanity_checking:
            pl_module.log("time/elapsed_s", self.elapsed(), on_step=False, on_epoch=True, rank_zero_only=True)

    def state_dict(self) -> dict[str, float]:
        return {"elapsed_s": self.elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = float(state_dict.get("elapsed_s", 0.0))
