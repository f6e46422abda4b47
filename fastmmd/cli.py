"""``fastmmd fit|validate|test|predict``: LightningCLI with fastmmd's defaults and run folders.

Every run lives in ``<runs_dir>/<run_name>/`` (default ``checkpoints/<config stem>-<timestamp>/``):
the resolved ``config.yaml``, TensorBoard events, ``last.ckpt`` plus periodic ``step=NNNNNNN.ckpt``
files and ``grids/*.png``. ``--ckpt_path last`` resumes the newest run of the same config (or the
run named by ``--run_name``); a checkpoint file resumes in its own folder. Defaults set here:

* ``trainer.use_distributed_sampler=False`` (the data module shards by rank itself, keeping its
  seeded order), ``seed_everything=0``;
* callbacks always present: LearningRateMonitor (``lr-Adam``), ThroughputMonitor
  (``train/device/samples_per_sec`` = images/s per device, plus ``train/samples_per_sec`` under
  DDP), :class:`~fastmmd.callbacks.NonFiniteGuard`; configurable: ``checkpoint``
  (:class:`~fastmmd.callbacks.RunCheckpoint`: ``save_last``, every 1000 steps, all kept,
  ``step=NNNNNNN.ckpt``), ``grid`` (:class:`~fastmmd.callbacks.ValidationGrid`) and ``predictions``
  (:class:`~fastmmd.callbacks.StylizedImageWriter`);
* checkpoint files are written atomically (:class:`~fastmmd.callbacks.AtomicCheckpointIO`);
* ``data.image_size`` is linked to ``model.image_size`` (the default style size).

Parse errors (unknown key, wrong type, missing file) become one-line
:class:`~fastmmd.errors.UserError`, which ``fastmmd.__main__`` turns into exit code 2.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ThroughputMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger

from fastmmd.callbacks import AtomicCheckpointIO, NonFiniteGuard, RunCheckpoint, StylizedImageWriter, ValidationGrid
from fastmmd.errors import UserError, one_line
from fastmmd.training import StyleTransferModule


#: Lightning warnings that do not apply to fastmmd's layout (checked: the frozen VGG is meant to stay
#: in eval mode, checkpoints share the run folder with the config and logs, FLOPs are not counted).
QUIET_WARNINGS = (
    "LightningCLI's args parameter is intended",
    r"Checkpoint directory .* exists and is not empty",
    r"Found \d+ module\(s\) in eval mode",
    "When using the `ThroughputMonitor`, you need to define a `flops_per_batch`",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


class FastMMDParser(LightningArgumentParser):
    """Reports parse errors as one-line :class:`UserError` instead of usage text and ``exit(2)``."""

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        text = one_line(message)
        raise UserError(f"{text[:400]}{'...' if len(text) > 400 else ''} (--help lists the options)")


class RunConfig(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` (fit) or ``config-<stage>.yaml`` in the run folder."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        stage = str(getattr(stage, "value", stage))  # a TrainerFn enum or its value
        self.config_filename = "config.yaml" if stage == "fit" else f"config-{stage}.yaml"
        super().setup(trainer, pl_module, stage)


class FastMMDCLI(LightningCLI):
    """LightningCLI plus run folders, fastmmd's callbacks and linked arguments (see module docstring)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="run folder name under runs_dir (default: <config stem>-<timestamp>)")
        parser.add_argument("--runs_dir", type=str, default="checkpoints", help="folder that holds the run folders")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.every_n_train_steps": 1000,
                             "checkpoint.save_top_k": -1, "checkpoint.filename": "{step:07d}"})
        parser.add_lightning_class_args(ValidationGrid, "grid")
        parser.add_lightning_class_args(StylizedImageWriter, "predictions")
        parser.link_arguments("data.image_size", "model.image_size")

    def _run_dir(self, cfg: Any) -> Path:
        """Picks the run folder: --run_name, the checkpoint's folder, the newest run (``last``) or a new one."""
        runs, ckpt = Path(cfg.runs_dir), cfg.get("ckpt_path")
        if cfg.run_name:
            return runs / cfg.run_name
        if ckpt and Path(ckpt).is_file():
            return Path(ckpt).resolve().parent
        configs = cfg.get("config") or []
        stem = Path(str(configs[-1])).stem if configs else "run"
        if ckpt == "last":
            found = sorted(runs.glob(f"{stem}-*/last.ckpt"), key=lambda p: p.stat().st_mtime)
            if not found:
                raise UserError(f"--ckpt_path last: no run of {stem!r} with a last.ckpt in {str(runs)!r}; "
                                f"give --run_name NAME of the run to resume")
            return found[-1].parent
        return runs / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand]
        self.run_dir = self._run_dir(cfg)
        cfg.run_name = self.run_dir.name
        cfg.runs_dir = str(self.run_dir.parent)
        if cfg.checkpoint.dirpath is None:
            cfg.checkpoint.dirpath = str(self.run_dir)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        config = self._get(self.config_init, "trainer", default={})
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs.setdefault("plugins", plugins)
        if config.get("logger") in (None, True):
            kwargs.setdefault("logger", TensorBoardLogger(save_dir=str(self.run_dir.parent), name=self.run_dir.name,
                                                          version="", default_hp_metric=False))
        kwargs.setdefault("default_root_dir", str(self.run_dir))
        return super().instantiate_trainer(**kwargs)


def build_cli(args: list[str], run: bool = True) -> FastMMDCLI:
    """The CLI object for ``args`` (e.g. ``["fit", "--config", "configs/quickstart.yaml"]``)."""
    from fastmmd.data import StyleDataModule

    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    return FastMMDCLI(
        StyleTransferModule, StyleDataModule, args=args, run=run, parser_class=FastMMDParser,
        save_config_callback=RunConfig, save_config_kwargs={"overwrite": True},
        seed_everything_default=0, auto_configure_optimizers=False,
        trainer_defaults={
            "use_distributed_sampler": False,
            "callbacks": [LearningRateMonitor(logging_interval="step"),
                          ThroughputMonitor(batch_size_fn=len, window_size=10), NonFiniteGuard()],
        },
    )


def run_lightning(command: str, argv: list[str]) -> int:
    """Runs ``fastmmd <command> <argv>``; returns the exit code (``--help``/``--print_config`` give 0)."""
    try:
        build_cli([command, *argv])
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except MisconfigurationException as err:
        raise UserError(f"fastmmd {command}: {one_line(str(err))}") from None
    return 0
