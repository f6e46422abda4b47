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
* :class:`NetworkEMA` keeps an exponential moving average of the network's weights and
  ships it as the checkpoint's network.
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

from fastmmd.base.errors import NonFiniteLossError, UserError
from fastmmd.base.images import read_image, save_image
from fastmmd.base.outputs import atomic_path
from fastmmd.core import motion
from fastmmd.losses.metrics import content_score, masked_abs_error, style_swd
from fastmmd.model.checkpoints import NETWORK_PREFIX
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
    at the epoch's end and in ``on_train_end`` (Lightning 2.6 writes ``last.ckpt`` there when it
    has not written one itself). A save after the epoch loop ended records the epoch as finished, so
    a run stopped mid-epoch by ``max_steps`` would resume at the next epoch, one epoch off.

    This relies on ModelCheckpoint saving from no other hook than the four gated here (and
    ``on_exception``, only with ``save_on_exception``): tests/test_lightning_contract.py pins the hooks
    it overrides for each supported Lightning version.
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

    All three are means over the validation photos, measured as ``compare``/``evaluate`` measure a saved
    output: the output rounded to 8 bits, VGG in float32 (autocast off), the style image(s) the
    module trains on read at the validation size (long edge ``model.image_size``; several style
    images are pooled into one sample, their blend weights not applied; a network trained on
    several styles, ``model.conditioning: [styles]``, is scored per photo against the style that
    photo was drawn in, photo j in style j mod S, and also logs ``val/style_swd/<style name>``), the module's own VGG
    weights, ``projections`` directions seeded with ``seed``. The cost per validation: a VGG pass
    over the outputs and one over the photos (to the content layer), plus the temporal error's
    network pass, over the ``data.val_size`` photos. Skipped during the sanity check.

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


#: Checkpoint entry of the trained (not averaged) network under :class:`NetworkEMA`; the
#: ``state_dict`` holds the average. The entry names are the ones Lightning's own ``WeightAveraging``
#: writes, so checkpoints written with either callback resume with this one.
TRAINED_STATE_KEY = "current_model_state"
#: Checkpoint entry of the averaging's own state: ``{"n_averaged": tensor(updates so far)}``.
AVERAGING_STATE_KEY = "averaging_state"


class NetworkEMA(L.Callback):
    """An exponential moving average (EMA) of the network's weights; checkpoints ship the average.

    fastmmd's counterpart of Lightning's ``lightning.pytorch.callbacks.EMAWeightAveraging`` (Lightning
    >= 2.6), with its arguments, update rule, checkpoint entries and callback state key
    (``EMAWeightAveraging``), built only on public hooks: it averages ``pl_module.network`` alone (not
    the frozen VGG or the style targets, which never change) and pairs every tensor by its
    ``state_dict`` name, never by position. ``fastmmd fit`` runs it where a config names Lightning's
    class (:func:`fastmmd.train.cli.own_weight_averaging`).

    * Update: after an optimizer step ``s`` (0-based) with ``s >= update_starting_at_step`` (if set)
      and ``s % update_every_n_steps == 0``, and after each epoch ``e >= update_starting_at_epoch``
      (if set): ``average = decay * average + (1 - decay) * weights``
      (``torch.optim.swa_utils.get_ema_avg_fn``); the first update copies the weights. Parameters are
      averaged, and buffers too if ``use_buffers``, else copied.
    * Validation during fit runs on the average; when fit ends the network holds the average.
    * Checkpoints: ``state_dict`` holds the averaged network (what export, stylize and evaluate read),
      ``current_model_state`` the trained one (keys ``network.*``), ``averaging_state``
      ``{"n_averaged": tensor}`` and the callback state ``{"latest_update_step": int}``. Resuming
      restores both networks whatever order Lightning calls the hooks in: the average is read into
      the callback, the trained weights go into the network when training starts (a validation
      before that runs on the average). A checkpoint without these entries starts the average from
      its ``state_dict``.

    Args:
        device: where the average lives (default: the network's device when fit starts).
        use_buffers: average the buffers too (else they are copied at each update).
        decay: weight of the old average, in [0, 1].
        update_every_n_steps: update after every n-th optimizer step (0: never after steps).
        update_starting_at_step: first step that updates (default: the first).
        update_starting_at_epoch: update after every epoch from this one on (default: never after epochs).
    """

    def __init__(self, device: torch.device | str | int | None = None, use_buffers: bool = True, decay: float = 0.999,
                 update_every_n_steps: int = 1, update_starting_at_step: int | None = None,
                 update_starting_at_epoch: int | None = None) -> None:
        self.device = torch.device(device) if isinstance(device, (str, int)) else device
        self.use_buffers, self.decay = use_buffers, decay
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch
        self._avg_fn: Any = None  # torch's EMA rule for this decay, made at setup
        self._average: dict[str, torch.Tensor] | None = None  # network state name -> averaged tensor
        self._held: dict[str, torch.Tensor] | None = None  # the trained weights while the network shows the average
        self._count = 0  # updates so far
        self._latest_update_step = 0  # global step of the last update after a step
        self._latest_update_epoch = -1  # epoch of the last update after an epoch
        self._finished = False  # fit has ended: the network keeps showing the average

    @property
    def state_key(self) -> str:
        """Where the checkpoint keeps this callback's state: Lightning's EMA callback's key, so either resumes."""
        return "EMAWeightAveraging"

    @property
    def average(self) -> dict[str, torch.Tensor]:
        """The averaged network, by ``network.state_dict()`` name (empty before fit sets it up)."""
        return dict(self._average or {})

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """Whether to update after optimizer step ``step_idx`` or after epoch ``epoch_idx`` (both 0-based)."""
        if step_idx is not None and (self.update_starting_at_step is None or step_idx >= self.update_starting_at_step) \
                and self.update_every_n_steps > 0 and step_idx % self.update_every_n_steps == 0:
            return True
        return (epoch_idx is not None and self.update_starting_at_epoch is not None
                and epoch_idx >= self.update_starting_at_epoch)

    # ---------------------------------------------------------------- the network's tensors, by name
    @staticmethod
    def _state(pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        """The network's parameters and buffers by name (detached views: writing them writes the network)."""
        return pl_module.network.state_dict()

    @torch.no_grad()
    def _show_average(self, pl_module: L.LightningModule) -> None:
        """Puts the average into the network, holding the trained weights aside (once)."""
        if self._average is None:
            return
        live = self._state(pl_module)
        if self._held is None:
            self._held = {name: t.detach().clone() for name, t in live.items()}
        for name, t in live.items():
            t.copy_(self._average[name])

    @torch.no_grad()
    def _show_trained(self, pl_module: L.LightningModule) -> None:
        """Puts the held trained weights back into the network."""
        if self._held is None:
            return
        for name, t in self._state(pl_module).items():
            t.copy_(self._held[name])
        self._held = None

    @torch.no_grad()
    def _update(self, pl_module: L.LightningModule) -> None:
        assert self._average is not None
        buffers = {name for name, _ in pl_module.network.named_buffers()}
        for name, t in self._state(pl_module).items():
            average, now = self._average[name], t.detach().to(self._average[name].device)
            if self._count == 0 or (name in buffers and not self.use_buffers):
                average.copy_(now)
            else:
                average.copy_(self._avg_fn(average, now, self._count))
        self._count += 1

    # ---------------------------------------------------------------- hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if str(getattr(stage, "value", stage)) == "fit":
            if not 0.0 <= self.decay <= 1.0:  # here, not in __init__: jsonargparse would bury the message
                raise UserError(f"the EMA's decay must be in [0, 1], not {self.decay}")
            from torch.optim.swa_utils import get_ema_avg_fn

            self._avg_fn = get_ema_avg_fn(self.decay)
            device = self.device if self.device is not None else next(iter(self._state(pl_module).values())).device
            self._average = {name: t.detach().clone().to(device) for name, t in self._state(pl_module).items()}
            self._held, self._count, self._latest_update_epoch, self._finished = None, 0, -1, False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._average is not None and self.device is None:  # the Trainer has moved the network by now
            place = {name: t.device for name, t in self._state(pl_module).items()}
            self._average = {name: t.to(place[name]) for name, t in self._average.items()}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._show_trained(pl_module)  # a resumed run's trained weights

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if (self._average is not None and trainer.global_step > self._latest_update_step
                and self.should_update(step_idx=trainer.global_step - 1)):
            self._update(pl_module)
            self._latest_update_step = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (self._average is not None and trainer.current_epoch > self._latest_update_epoch
                and self.should_update(epoch_idx=trainer.current_epoch)):
            self._update(pl_module)
            self._latest_update_epoch = trainer.current_epoch

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._show_average(pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._finished:  # after fit the network keeps the average
            self._show_trained(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._show_average(pl_module)
        self._finished = True

    def state_dict(self) -> dict[str, Any]:
        return {"latest_update_step": self._latest_update_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._latest_update_step = int(state_dict["latest_update_step"])

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._average is None:  # not fitting: the module's state_dict is what there is
            return
        trained = self._held if self._held is not None else self._state(pl_module)
        others = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(NETWORK_PREFIX)}
        checkpoint["state_dict"] = others | {NETWORK_PREFIX + k: v.detach().clone() for k, v in self._average.items()}
        checkpoint[TRAINED_STATE_KEY] = {NETWORK_PREFIX + k: v.detach().clone() for k, v in trained.items()}
        checkpoint[AVERAGING_STATE_KEY] = {"n_averaged": torch.tensor(self._count, dtype=torch.long)}

    @torch.no_grad()
    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._average is None:  # validate/test/predict: the state_dict (the average) is the network
            return
        network = {k.removeprefix(NETWORK_PREFIX): v for k, v in checkpoint["state_dict"].items()
                   if k.startswith(NETWORK_PREFIX)}
        for name, t in self._average.items():
            t.copy_(network[name])
        trained = checkpoint.get(TRAINED_STATE_KEY)
        if isinstance(trained, dict) and AVERAGING_STATE_KEY in checkpoint:
            self._count = int(checkpoint[AVERAGING_STATE_KEY]["n_averaged"])
            self._held = {k.removeprefix(NETWORK_PREFIX): v.detach().clone() for k, v in trained.items()
                          if k.startswith(NETWORK_PREFIX)}
            missing = set(self._average) - set(self._held)
            if missing:
                raise UserError(f"the checkpoint's {TRAINED_STATE_KEY} lacks network weights {sorted(missing)[:3]}; "
                                "it was not written by `fastmmd fit`")
        else:  # written without weight averaging: the average starts from its network (the first update copies)
            self._count, self._held = 0, None
