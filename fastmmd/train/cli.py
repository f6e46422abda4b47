"""``fastmmd fit|validate|test|predict``: LightningCLI with fastmmd's defaults and run folders.

Every run lives in ``<runs_dir>/<run_name>/`` (default ``checkpoints/<config stem>-<timestamp>/``):
the resolved ``config.yaml``, TensorBoard events, ``metrics.csv`` (every logged scalar, one row per
logging step; see :func:`csv_logger` for resumes), ``last.ckpt`` plus periodic ``step=NNNNNNN.ckpt``
files and ``grids/*.png``. ``--ckpt_path last`` resumes the newest run of the same config (or the
run named by ``--run_name``); a checkpoint file resumes in its own folder. Defaults set here:

* ``trainer.use_distributed_sampler=False`` (the data module shards by rank itself, keeping its
  seeded order; its sampler is a ``DistributedSampler``, which Lightning keeps under either value),
  ``seed_everything=0``;
* callbacks always present: LearningRateMonitor (``lr-Adam``), ThroughputMonitor
  (``train/device/samples_per_sec`` = images/s per device, plus ``train/samples_per_sec`` under
  DDP), :class:`~fastmmd.train.callbacks.NonFiniteGuard`, :class:`~fastmmd.train.callbacks.ValidationScores`
  (``val/style_swd``, ``val/content_distance``, ``val/temporal_error``),
  :class:`~fastmmd.train.callbacks.ElapsedTime` (``time/elapsed_s``);
  configurable: ``checkpoint``
  (:class:`~fastmmd.train.callbacks.RunCheckpoint`: ``save_last``, every 1000 steps, all kept,
  ``step=NNNNNNN.ckpt``), ``grid`` (:class:`~fastmmd.train.callbacks.ValidationGrid`) and ``predictions``
  (:class:`~fastmmd.train.callbacks.StylizedImageWriter`);
* checkpoint files are written atomically (:class:`~fastmmd.train.callbacks.AtomicCheckpointIO`);
* weight averaging is :class:`~fastmmd.train.callbacks.NetworkEMA` (``--trainer.callbacks+=``
  its class path, or Lightning's ``lightning.pytorch.callbacks.EMAWeightAveraging``, which runs as
  fastmmd's: same arguments, same checkpoint entries);
* the Lightning warnings that do not apply to fastmmd are silenced while the CLI runs, each for a
  stated reason (:data:`QUIET_WARNINGS`);
* ``data.image_size`` is linked to ``model.image_size`` (the default style size);
* ``trainer.precision`` also takes ``auto``: ``bf16-mixed`` where the device has bf16 instructions
  (a CPU with AVX512-BF16/AMX, a bf16 GPU), else ``32-true``; an explicit bf16 precision on a CPU
  without them is refused (:mod:`fastmmd.base.precision`, the rule every command follows).

Parse errors (unknown key, wrong type, missing file) become one-line
:class:`~fastmmd.base.errors.UserError`, which ``fastmmd.__main__`` turns into exit code 2.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Literal, get_type_hints

from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer as LightningTrainer
from lightning.pytorch.callbacks import LearningRateMonitor, ThroughputMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from fastmmd.base.errors import UserError, one_line
from fastmmd.train.callbacks import (
    AtomicCheckpointIO,
    ElapsedTime,
    NetworkEMA,
    NonFiniteGuard,
    RunCheckpoint,
    StylizedImageWriter,
    ValidationGrid,
    ValidationScores,
)
from fastmmd.train.module import StyleTransferModule

#: The Lightning warnings that ``fastmmd fit|validate|test|predict`` silences: (message regex, category,
#: why it does not apply). Only while the CLI runs (:func:`build_cli`), and only these: each is emitted by
#: every ``fastmmd fit`` on the Lightning/torch versions named, which tests/integration/test_lightning_contract.py
#: checks, so a filter whose warning is gone fails a test instead of lingering. Warnings fastmmd can
#: avoid are avoided instead (``flops_per_batch`` on the module, the CLI's own ``parse_arguments``,
#: fastmmd's own weight averaging).
QUIET_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"Checkpoint directory .* exists and is not empty", UserWarning,
     ("ModelCheckpoint's: checkpoints share the run folder with config.yaml and the logs by design, and a "
      "new fit never starts in a run folder holding checkpoints unless resuming or --overwrite")),
    (r"Experiment logs directory .* exists and is not empty", UserWarning,
     "CSVLogger's: csv_logger() has already read the rows a resume keeps, and logs them again"),
    (r"Found \d+ module\(s\) in eval mode", UserWarning,  # Lightning >= 2.6 (a PossibleUserWarning)
     "the fit loop's: the only modules in eval mode are the frozen VGG's (VGGFeatures stays in eval mode)"),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning,
     "torch's deprecation (torch 2.14 has it) hit by Lightning's own pytree code, not by fastmmd's"),
)

#: Class paths of Lightning's own EMA callback (Lightning >= 2.6), run as
#: :class:`~fastmmd.train.callbacks.NetworkEMA` (see :func:`own_weight_averaging`).
LIGHTNING_EMA = ("lightning.pytorch.callbacks.EMAWeightAveraging",
                 "lightning.pytorch.callbacks.weight_averaging.EMAWeightAveraging")
FASTMMD_EMA = f"{NetworkEMA.__module__}.{NetworkEMA.__qualname__}"
#: The logger Lightning's ``seed_everything`` reports "Seed set to N" on (pinned by
#: tests/integration/test_lightning_contract.py).
SEED_LOGGER = "lightning.fabric.utilities.seed"


_STAGES = ("fit.", "validate.", "test.", "predict.")
#: What to pass for a required value that no config sets (the recipes name no data of their own).
REQUIRED_HINTS = {"model.style_images": "--model.style_images '[my_painting.jpg]' (the painting(s) to learn)"}


def own_weight_averaging(callbacks: Any) -> None:
    """Makes the parsed ``trainer.callbacks`` config run fastmmd's EMA where it names Lightning's.

    Each entry whose ``class_path`` is in :data:`LIGHTNING_EMA` gets :data:`FASTMMD_EMA` instead, with
    the same ``init_args`` (the two take the same arguments), so configs written for Lightning's
    callback keep working and checkpoints keep their entries; the saved ``config.yaml`` names
    fastmmd's class. An argument only Lightning's takes, set to anything but None, is refused.
    """
    import inspect

    entries = callbacks if isinstance(callbacks, list) else [callbacks]
    accepted = set(inspect.signature(NetworkEMA).parameters)
    for entry in entries:
        if getattr(entry, "class_path", None) not in LIGHTNING_EMA:
            continue
        init_args = entry.get("init_args") or {}
        extra = {k: v for k, v in init_args.items() if k not in accepted}
        if any(v is not None for v in extra.values()):
            raise UserError(f"{entry.class_path} runs as {FASTMMD_EMA}, which takes no "
                            f"{', '.join(sorted(k for k, v in extra.items() if v is not None))}")
        for key in extra:
            del init_args[key]
        entry.class_path = FASTMMD_EMA


def plain_required_error(message: str) -> str:
    """jsonargparse's "the following arguments are required: fit.model.style_images" -> "missing
    --model.style_images: pass it on the command line, e.g. --model.style_images '[my_painting.jpg]' ..."."""
    match = re.search(r"the following arguments are required: (.+)$", message)
    if not match:
        return message
    keys = [key.strip().split(".", 1)[-1] if key.strip().startswith(_STAGES) else key.strip()
            for key in match[1].split(",")]
    examples = "; ".join(REQUIRED_HINTS.get(key, f"--{key} VALUE") for key in keys)
    return f"missing {', '.join(f'--{key}' for key in keys)}: pass it on the command line, e.g. {examples}"


class FastMMDParser(LightningArgumentParser):
    """Reports parse errors as one-line :class:`UserError` instead of usage text and ``exit(2)``."""

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        from fastmmd.base.errors import plain_parse_error

        text = plain_required_error(plain_parse_error(one_line(message), dashes=False))
        if "EMAWeightAveraging either not accessible" in text:  # Lightning < 2.6
            text = f"this Lightning has no EMAWeightAveraging; name {FASTMMD_EMA} instead (same arguments)"
        raise UserError(f"{text[:400]}{'...' if len(text) > 400 else ''} (--help lists the options)")


class RunConfig(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` (fit) or ``config-<stage>.yaml`` in the run folder."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        stage = str(getattr(stage, "value", stage))  # a TrainerFn enum or its value
        self.config_filename = "config.yaml" if stage == "fit" else f"config-{stage}.yaml"
        super().setup(trainer, pl_module, stage)


#: the values Lightning's Trainer takes for ``precision`` (read from its signature, so they stay in step)
LIGHTNING_PRECISION = get_type_hints(LightningTrainer.__init__)["precision"]


class Trainer(LightningTrainer):
    """Lightning's Trainer whose ``precision`` also takes ``auto`` (resolved, and a bf16 value on a CPU
    without bf16 instructions refused, by :func:`fastmmd.base.precision.resolve_trainer_precision`)."""

    def __init__(self, *args: Any, precision: LIGHTNING_PRECISION | Literal["auto"] = None, **kwargs: Any) -> None:
        from fastmmd.base.precision import resolve_trainer_precision

        super().__init__(*args, precision=resolve_trainer_precision(precision, kwargs.get("accelerator", "auto")), **kwargs)


class FastMMDCLI(LightningCLI):
    """LightningCLI plus run folders, fastmmd's callbacks and linked arguments (see module docstring)."""

    #: global step of the ``--ckpt_path`` checkpoint, noted when it is checked (inf: none checked)
    _resume_step: float = math.inf
    #: the subcommand ``args`` starts with, the only one whose parser is built (None: all of them)
    _only: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        argv = kwargs.get("args")
        if isinstance(argv, list) and argv and argv[0] in LightningCLI.subcommands():
            self._only = argv[0]
        super().__init__(*args, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]  # Lightning's is a staticmethod
        """Lightning's subcommands, or only the one this command line runs: building the parsers of the
        other three (every Trainer, model and data argument again) took half of the CPU time that a
        ``fit --print_config`` costs, for parsers that are never used (docs/benchmarks.md, "The test suite")."""
        every = LightningCLI.subcommands()
        return {self._only: every[self._only]} if self._only else every

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="run folder name under runs_dir (default: <config stem>-<timestamp>)")
        parser.add_argument("--runs_dir", type=str, default="checkpoints", help="folder that holds the run folders")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="fit: replace an existing run of the same --run_name (its checkpoints and logs are deleted)")
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
            name = str(cfg.run_name)
            if name in (".", "..") or "/" in name or "\\" in name or not name.strip():
                raise UserError(f"--run_name must be a plain folder name (no '/', not '.' or '..'), not {name!r}")
            return runs / name
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
        if cfg.trainer.get("callbacks"):
            own_weight_averaging(cfg.trainer.callbacks)
        arbitrary = "arbitrary" in (cfg.model.get("conditioning") or [])
        if not arbitrary and not cfg.model.get("style_images"):  # required unless the paintings come with the data
            raise UserError(f"missing --model.style_images: pass it on the command line, e.g. "
                            f"{REQUIRED_HINTS['model.style_images']}")
        if arbitrary != bool(cfg.data.get("painting_root") or cfg.data.get("painting_hf_dataset")):
            raise UserError("an arbitrary-style network (model.conditioning: [arbitrary]) trains on photos paired with "
                            "paintings: pass --data.painting_root DIR (or --data.painting_hf_dataset NAME)" if arbitrary
                            else "--data.painting_root/painting_hf_dataset pair photos with paintings for an "
                            "arbitrary-style network; add --model.conditioning '[arbitrary]' or drop them")
        self.run_dir = self._run_dir(cfg)
        cfg.run_name = self.run_dir.name
        cfg.runs_dir = str(self.run_dir.parent)
        if cfg.checkpoint.dirpath is None:
            cfg.checkpoint.dirpath = str(self.run_dir)
        if cfg.get("ckpt_path") == "last" and (self.run_dir / "last.ckpt").is_file():
            self._check_checkpoint(self.run_dir / "last.ckpt")
        if rank_zero_only.rank == 0:  # other ranks (DDP, torchrun, SLURM) use the folder rank 0 prepares
            self._claim_run_dir(cfg)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parses ``args`` (a list, as on a command line) into ``self.config``, then checks ``--ckpt_path``
        with fastmmd's safe reader before Lightning reads it (right after parsing, Lightning loads a
        checkpoint's hyper-parameters into the config); one line and exit 2 for anything that is not a
        fastmmd checkpoint this command can use.

        Parses as ``LightningCLI.parse_arguments`` does, without calling it: that one warns whenever
        ``args`` is given while ``sys.argv`` holds arguments too, which is every ``fastmmd`` command
        (``fastmmd.__main__`` hands on the arguments it read from ``sys.argv``)."""
        self.config = parser.parse_object(args) if isinstance(args, dict) else parser.parse_args(args)
        ckpt_path = self.config.get("subcommand") and self.config[self.config.subcommand].get("ckpt_path")
        if ckpt_path and ckpt_path != "last":
            if ckpt_path in ("best", "hpc", "registry") or not Path(ckpt_path).is_file():
                what = "is a folder" if Path(ckpt_path).is_dir() else "does not exist"
                raise UserError(f"--ckpt_path {ckpt_path!r} {what}; give last or a .ckpt file written by `fastmmd fit`")
            self._check_checkpoint(Path(ckpt_path))

    def _check_checkpoint(self, path: Path) -> None:
        """Reads the checkpoint once (safely) and notes its step for :meth:`_rows_to_keep`."""
        from fastmmd.model.files import network_in_checkpoint, read_checkpoint

        ckpt = read_checkpoint(path)
        network_in_checkpoint(ckpt, path)  # written by fastmmd, weights match their description
        for key in ("global_step", "epoch"):  # Lightning restores them as they are: counts, or nothing
            if key in ckpt and not (type(ckpt[key]) is int and 0 <= ckpt[key] < 2**53):
                raise UserError(f"--ckpt_path {str(path)!r}: its {key} {str(ckpt[key])[:40]!r} is not a count "
                                "of steps; it was not written by `fastmmd fit`")
        hparams = ckpt.get("hyper_parameters")
        if hparams is not None and not (isinstance(hparams, dict) and all(isinstance(k, str) for k in hparams)):
            raise UserError(f"--ckpt_path {str(path)!r}: its hyper_parameters are not settings by name; it was not "
                            "written by `fastmmd fit`")
        self._resume_step = float(ckpt.get("global_step", math.inf))
        if "_class_path" in (hparams or {}):
            raise UserError(f"--ckpt_path {str(path)!r} names a model class to import; fastmmd checkpoints never do")
        missing = [k for k in ("loops", "optimizer_states", "global_step") if k not in ckpt]
        if self.config.get("subcommand") == "fit" and missing:
            raise UserError(f"--ckpt_path {str(path)!r} holds a network but no training state ({missing[0]}); "
                            "to start a new run from its weights use --model.init_from instead")

    def _claim_run_dir(self, cfg: Any) -> None:
        """fit: refuses to write over an existing run unless resuming or ``--overwrite``; notes a new run folder
        so that a fit failing before its first checkpoint removes it again (:mod:`fastmmd.base.outputs`)."""
        from fastmmd.base.outputs import make_dirs

        run = self.run_dir
        if self.subcommand == "fit" and run.is_dir() and any(run.iterdir()) and not cfg.get("ckpt_path"):
            if not cfg.get("overwrite"):
                raise UserError(f"run folder {str(run)!r} already holds a run; resume it with --ckpt_path last, "
                                f"choose another --run_name, or pass --overwrite true to replace it")
            shutil.rmtree(run)
        if run.exists() and not run.is_dir():
            raise UserError(f"run folder {str(run)!r} is a file")
        make_dirs(run, keep="*.ckpt")

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        config = (self.config_init[self.subcommand] if self.subcommand else self.config_init).get("trainer") or {}
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs.setdefault("plugins", plugins)
        if config.get("logger") in (None, True):
            keep = self._rows_to_keep(self.config[self.subcommand].get("ckpt_path"))
            kwargs.setdefault("logger", [TensorBoardLogger(save_dir=str(self.run_dir.parent), name=self.run_dir.name,
                                                           version="", default_hp_metric=False),
                                         csv_logger(self.run_dir, keep)])
        kwargs.setdefault("default_root_dir", str(self.run_dir))
        return super().instantiate_trainer(**kwargs)

    def _rows_to_keep(self, ckpt_path: str | None) -> float | None:
        """Last step of an existing metrics.csv to keep: all for validate/test/predict, up to the
        checkpoint's step when fit resumes, none (a fresh curve) for a fit from scratch."""
        if self.subcommand != "fit":
            return math.inf
        if not ckpt_path:
            return None
        return self._resume_step


def csv_logger(run_dir: Path, keep_until: float | None) -> CSVLogger:
    """Lightning's CSVLogger writing ``<run_dir>/metrics.csv``, continuing the rows already there.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts. So that a resumed run
    (or ``fastmmd validate`` on a run folder) keeps the whole learning curve in one file, the rows
    with ``step <= keep_until`` are logged again first and written at once; rows after the resumed
    checkpoint's step (work the resumed run does again) are dropped. ``keep_until=None`` starts anew.
    """
    path = run_dir / "metrics.csv"
    rows: list[dict[str, float]] = []
    if keep_until is not None and path.is_file() and rank_zero_only.rank == 0:  # only rank 0 logs
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                numbers = {k: _number(v) for k, v in row.items() if k}
                numbers = {k: v for k, v in numbers.items() if v is not None}
                if "step" in numbers and numbers["step"] <= keep_until:
                    rows.append(numbers)
    logger = CSVLogger(save_dir=str(run_dir.parent), name=run_dir.name, version="")
    for row in rows:
        step = int(row.pop("step"))
        logger.log_metrics(row, step=step)
    if rows:
        logger.save()
    return logger


def _number(text: str | None) -> float | None:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def build_cli(args: list[str], run: bool = True) -> FastMMDCLI:
    """The CLI object for ``args`` (e.g. ``["fit", "--config", "configs/quickstart.yaml"]``)."""
    from fastmmd.train.data import StyleDataModule

    # "Seed set to 0" on stderr would precede every error line (the seed is in config.yaml anyway)
    logging.getLogger(SEED_LOGGER).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        quiet_lightning_warnings()
        return FastMMDCLI(
            StyleTransferModule, StyleDataModule, trainer_class=Trainer, args=args, run=run, parser_class=FastMMDParser,
            save_config_callback=RunConfig, save_config_kwargs={"overwrite": True},
            seed_everything_default=0, auto_configure_optimizers=False,
            trainer_defaults={
                "use_distributed_sampler": False,
                "callbacks": [LearningRateMonitor(logging_interval="step"),
                              ThroughputMonitor(batch_size_fn=len, window_size=10), NonFiniteGuard(),
                              ValidationScores(), ElapsedTime()],
            },
        )


def quiet_lightning_warnings() -> None:
    """Adds an "ignore" filter for each of :data:`QUIET_WARNINGS` (call inside ``warnings.catch_warnings()``)."""
    for message, category, _why in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def run_lightning(command: str, argv: list[str]) -> int:
    """Runs ``fastmmd <command> <argv>``; returns the exit code (``--help``/``--print_config`` give 0)."""
    try:
        build_cli([command, *argv])
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except MisconfigurationException as err:
        raise UserError(f"fastmmd {command}: {one_line(str(err))}") from None
    return 0
