"""The data module under a Lightning Trainer: a fit resumed mid-epoch (or right after an epoch's last
batch) sees exactly the batches of the uninterrupted fit; under DDP the sampler shards itself and
Lightning keeps it. The data module alone: tests/unit/test_data.py."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from conftest import write_images
from torch.utils.data import DistributedSampler

from fastmmd.train.data import StyleDataModule

S = 16  # image_size used throughout: tiny, so tests stay fast


class _Recorder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[float]] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seen.append([round(float(v), 5) for v in batch.mean((1, 2, 3))])
        return (self.w - batch.mean()).pow(2).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(root: Path, run_dir: Path, max_steps: int = -1, ckpt: str | None = None, every: int = 0) -> list[list[float]]:
    from lightning.pytorch.callbacks import ModelCheckpoint

    dm = StyleDataModule(root=str(root), image_size=S, batch_size=2, num_workers=0, val_size=1, seed=5)
    model = _Recorder()
    callbacks = [ModelCheckpoint(dirpath=run_dir, every_n_train_steps=every, save_top_k=-1, filename="{step}")] if every else []
    trainer = pl.Trainer(max_epochs=2, max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=bool(every), callbacks=callbacks, use_distributed_sampler=False,
                         limit_val_batches=0, default_root_dir=run_dir, accelerator="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, dm, ckpt_path=ckpt)
    return model.seen


def test_fit_resumed_mid_epoch_sees_the_uninterrupted_batches(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", 11, size=(26, 20))  # 10 training images -> 5 batches per epoch
    full = _fit(tmp_path / "imgs", tmp_path / "full")
    assert len(full) == 10 and full[:5] != full[5:]
    for step in (3, 5):  # mid-epoch, and right after the epoch's last batch
        first = _fit(tmp_path / "imgs", tmp_path / f"run{step}", max_steps=step, every=step)
        rest = _fit(tmp_path / "imgs", tmp_path / f"resume{step}", ckpt=str(tmp_path / f"run{step}" / f"step={step}.ckpt"))
        assert first + rest == full


def test_trainer_rank_and_distributed_sampler_setting(tmp_path: Path) -> None:
    write_images(tmp_path, 9)
    dm = StyleDataModule(root=str(tmp_path), image_size=S, batch_size=2, num_workers=0, val_size=1)
    for flag in (True, False):  # the sampler shards itself and is a DistributedSampler, which Lightning never replaces
        dm.trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", use_distributed_sampler=flag, logger=False)
        loader = dm.train_dataloader()
        assert isinstance(loader.sampler, DistributedSampler)
        sampler = loader.batch_sampler.sampler.sampler
        assert (sampler.rank, sampler.world_size, len(sampler)) == (0, 2, 4)
