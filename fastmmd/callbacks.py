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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid

from fastmmd.errors import NonFiniteLossError
from fastmmd.images import atomic_path, save_image


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
        self._rows: list[tuple[torch.Tensor, torch.Tensor]] = []  # (content, stylized) batches, CPU

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        have = sum(c.shape[0] for c, _ in self._rows)
        if have >= self.max_images or not trainer.is_global_zero or not isinstance(outputs, dict):
            return
        n = self.max_images - have
        self._rows.append((batch[:n].float().cpu(), outputs["generated"][:n].float().cpu()))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows, self._rows = self._rows, []
        if not rows or trainer.sanity_checking or not trainer.is_global_zero:
            return
        content, stylized = (torch.cat(t) for t in zip(*rows, strict=True))
        grid = make_grid(torch.cat([content, stylized]).clamp(0, 1), nrow=content.shape[0], padding=2, pad_value=1.0)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/grid", grid, trainer.global_step)
        folder = run_folder(trainer) / "grids"
        meta = {"step": trainer.global_step, "rows": "content / stylized"}
        save_image(grid, folder / f"step-{trainer.global_step:07d}.png", meta)
        save_image(grid, folder / "latest.png", meta)


class NonFiniteGuard(L.Callback):
    """Stops with :class:`~fastmmd.errors.NonFiniteLossError` when the loss is NaN or Inf.

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
            f"the last checkpoint is kept. Lower model.lr or model.style_weight, use trainer.gradient_clip_val, "
            f"or precision 32, then resume with --ckpt_path last")


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose ``last.ckpt`` also holds the final step.

    Lightning's ModelCheckpoint writes ``last.ckpt`` only together with a periodic checkpoint, so a
    run ending between two periodic saves (max_steps, max_epochs, max_time) would leave ``last.ckpt``
    behind the trained network.
    The extra save happens at the end of the final batch, the same point as a periodic save (a save
    in ``on_train_end`` would record a state that Lightning's loops resume one epoch off).
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        final_step = 0 < trainer.max_steps <= trainer.global_step or trainer.should_stop  # max_time, early stop
        final_epoch = (trainer.max_epochs is not None and 0 <= trainer.max_epochs <= trainer.current_epoch + 1
                       and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
        if self.save_last and (final_step or final_epoch) and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file in the target folder, fsync, then ``os.replace``."""

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
