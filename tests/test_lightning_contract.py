"""What fastmmd.train takes from Lightning beyond its documented API, pinned per Lightning version.

Supported: Lightning 2.5.1 and 2.6.6 (pyproject.toml), each run against these tests. fastmmd.train
uses public hooks, arguments and attributes; what remains is pinned here, so that a Lightning
release that changes it fails a test instead of a training run:

* ``RunCheckpoint`` lets ``ModelCheckpoint`` save from its own hooks except at a step it has just
  saved: that needs ``ModelCheckpoint`` to save from no hooks but the ones it gates;
* ``FastMMDCLI.parse_arguments`` parses as ``LightningCLI.parse_arguments`` does, without its warning;
* ``build_cli`` silences a fixed list of Lightning warnings (:data:`fastmmd.train.cli.QUIET_WARNINGS`),
  each of which a ``fastmmd fit`` must still emit (a filter whose warning is gone fails here), and
  quiets the "Seed set to" log line by its logger's name;
* fastmmd's ``NetworkEMA`` stands in for Lightning's (Lightning >= 2.6): same arguments, same
  numbers, same checkpoint entries, so a checkpoint of either resumes with it; its file does not
  depend on the order Lightning calls the checkpoint hooks in.
* exact resume (``fastmmd.train.sampling``) takes Lightning's data protocol as it is: ``set_epoch``
  before an epoch's first batch is drawn, and no prefetch from a loader with a length.
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
import sys
import textwrap
import warnings
from pathlib import Path

import lightning
import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from packaging.version import Version

from fastmmd.model.files import read_checkpoint
from fastmmd.train import cli as cli_module
from fastmmd.train.callbacks import TRAINED_STATE_KEY, NetworkEMA, RunCheckpoint
from fastmmd.train.cli import QUIET_WARNINGS, SEED_LOGGER, build_cli
from fastmmd.train.module import StyleTransferModule

LIGHTNING = Version(lightning.__version__)
LIGHTNING_EMA = getattr(lightning.pytorch.callbacks, "EMAWeightAveraging", None)  # Lightning >= 2.6
OWN_EMA = "fastmmd.train.callbacks.NetworkEMA"


# ----------------------------------------------------------------------------- ModelCheckpoint
#: The hooks ModelCheckpoint overrides in the Lightning versions checked; those that may write a file
#: are gated by RunCheckpoint (on_exception writes only with save_on_exception, which fastmmd leaves off).
_BASE_HOOKS = {"setup", "on_train_start", "on_train_batch_end", "on_train_epoch_end", "on_validation_end",
               "state_dict", "load_state_dict"}
CHECKPOINT_HOOKS = {"2.5.1": _BASE_HOOKS, "2.6.6": _BASE_HOOKS | {"on_exception", "on_train_end"}}
GATED = {"on_train_batch_end", "on_train_epoch_end", "on_validation_end", "on_train_end"}


def overridden(cls: type) -> set[str]:
    return {name for name, value in vars(Callback).items()
            if callable(value) and not name.startswith("_") and getattr(cls, name) is not value}


def test_model_checkpoint_saves_only_from_the_hooks_run_checkpoint_gates():
    """A ModelCheckpoint that saved from another hook (say on_fit_end) could write last.ckpt again after
    RunCheckpoint's final save: a checkpoint of the same step that resumes one epoch off."""
    hooks = overridden(ModelCheckpoint)
    assert hooks in CHECKPOINT_HOOKS.values(), f"Lightning {LIGHTNING} overrides {sorted(hooks)}: review RunCheckpoint"
    for known in CHECKPOINT_HOOKS.values():  # on_train_start only starts ModelCheckpoint's clock
        assert {h for h in known if h.startswith("on_")} - {"on_train_start", "on_exception"} <= GATED
    assert GATED <= overridden(RunCheckpoint)


# ----------------------------------------------------------------------------- LightningCLI.parse_arguments
def test_lightning_cli_parse_arguments_only_warns_and_parses():
    """FastMMDCLI.parse_arguments replaces it: nothing else it does may be lost."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(LightningCLI.parse_arguments)))
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assigned = {ast.unparse(t) for node in ast.walk(tree) if isinstance(node, ast.Assign) for t in node.targets}
    assert calls == {"rank_zero_warn", "len", "isinstance", "parser.parse_object", "parser.parse_args"}, calls
    assert assigned == {"self.config"}, assigned


# ----------------------------------------------------------------------------- warnings
def applies(pattern: str) -> bool:
    """Whether the installed versions emit the warning of this QUIET_WARNINGS entry."""
    if "eval mode" in pattern:
        return LIGHTNING >= Version("2.6")  # the fit loop's check is new in 2.6
    if "LeafSpec" in pattern:
        return getattr(torch.utils._pytree.LeafSpec, "__deprecated__", None) is not None
    return True


def recorded_fit(args: list[str]) -> tuple[object, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = build_cli(["fit", *args])
    return cli, caught


def test_each_silenced_warning_is_still_emitted_and_the_avoided_ones_are_not(fit_args, monkeypatch):
    """One fit with fastmmd's filters off: every filter still has its warning (no stale filter), and
    the warnings fastmmd avoids (args beside sys.argv, flops_per_batch, WeightAveraging with
    configure_model) do not come. Then the same fit with them on: none shows, and the process's
    filters are as before (they hold only while the CLI runs)."""
    monkeypatch.setattr(sys, "argv", ["fastmmd", "fit", "--config", "x.yaml"])
    ema = "lightning.pytorch.callbacks.EMAWeightAveraging" if LIGHTNING_EMA else OWN_EMA
    args = [*fit_args, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", f"--trainer.callbacks+={ema}"]
    monkeypatch.setattr(cli_module, "QUIET_WARNINGS", ())
    _, caught = recorded_fit([*args, "--run_name", "loud"])
    monkeypatch.undo()
    messages = [(str(w.message), w.category) for w in caught]
    for pattern, category, why in QUIET_WARNINGS:
        hits = [m for m, c in messages if re.match(pattern, m, re.IGNORECASE) and issubclass(c, category)]
        assert bool(hits) == applies(pattern), (pattern, why, LIGHTNING, torch.__version__)
    for avoided in ("LightningCLI's args parameter", "When using the `ThroughputMonitor`",
                    "You're using the WeightAveraging callback"):
        assert not [m for m, _ in messages if avoided in m], avoided

    before = list(warnings.filters)
    cli, caught = recorded_fit([*args, "--run_name", "quiet"])
    assert list(warnings.filters) == before
    shown = [str(w.message) for w in caught]
    assert not [m for m in shown if any(re.match(p, m, re.IGNORECASE) for p, _, _ in QUIET_WARNINGS)]
    # the fit loop's eval-mode warning is about the frozen VGG alone
    module = cli.model.train()
    assert {n for n, m in module.named_modules() if not m.training} == {
        n for n, _ in module.named_modules() if n.startswith("criterion.vgg")}
    # callbacks run in list order and Lightning puts checkpoint callbacks last: the EMA update of the
    # final step comes before RunCheckpoint's final save
    kinds = [type(c) for c in cli.trainer.callbacks]
    assert kinds.index(NetworkEMA) < kinds.index(RunCheckpoint) == len(kinds) - 1


def test_the_seed_line_comes_from_the_logger_build_cli_quiets():
    from lightning.fabric.utilities.seed import seed_everything

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(SEED_LOGGER)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        seed_everything(0)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert any(r.getMessage().startswith("Seed set to 0") for r in records)


# ----------------------------------------------------------------------------- weight averaging
def test_fastmmd_ema_file_does_not_depend_on_the_checkpoint_hook_order(make_image):
    module = StyleTransferModule([str(make_image("style.png", 64, 64))], image_size=32, network_width=8,
                                 residual_blocks=1, vgg_weights="random", vgg_width_divisor=8)
    ema = NetworkEMA(decay=0.5)
    ema.setup(None, module, "fit")
    with torch.no_grad():
        for p in module.network.parameters():
            p.add_(1.0)  # trained != average
    files = []
    for callback_first in (True, False):
        checkpoint = {"state_dict": module.state_dict()}
        if callback_first:
            ema.on_save_checkpoint(None, module, checkpoint)
            module.on_save_checkpoint(checkpoint)
        else:
            module.on_save_checkpoint(checkpoint)
            ema.on_save_checkpoint(None, module, checkpoint)
        files.append(checkpoint)
    for entry in ("state_dict", TRAINED_STATE_KEY):
        assert set(files[0][entry]) == set(files[1][entry]) == {f"network.{k}" for k in module.network.state_dict()}
        for key, value in files[0][entry].items():
            assert torch.equal(value, files[1][entry][key]), (entry, key)
    key = "network.encoder.0.1.weight"
    assert torch.equal(files[0][TRAINED_STATE_KEY][key], module.network.state_dict()[key.removeprefix("network.")])
    assert torch.equal(files[0]["state_dict"][key], ema.average[key.removeprefix("network.")])


def test_a_decay_outside_0_1_is_one_line(make_image):
    from fastmmd.base.errors import UserError

    module = StyleTransferModule([str(make_image("style.png", 64, 64))], image_size=32, network_width=8,
                                 residual_blocks=1, vgg_weights="random", vgg_width_divisor=8)
    with pytest.raises(UserError, match=r"decay must be in \[0, 1\], not 1.5"):
        NetworkEMA(decay=1.5).setup(None, module, "fit")


@pytest.mark.skipif(LIGHTNING_EMA is None, reason=f"Lightning {LIGHTNING} has no EMAWeightAveraging")
@pytest.mark.filterwarnings("ignore:You're using the WeightAveraging callback")  # Lightning's own, run on purpose
def test_a_checkpoint_of_lightnings_ema_resumes_with_fastmmds_as_if_never_interrupted(fit_args, monkeypatch):
    """Checkpoints written before fastmmd had its own EMA (Lightning's callback, fastmmd <= 0.2) resume
    exactly: Lightning's callback for 4 steps, then resumed under Lightning's class name (run as
    fastmmd's) to 8, equals fastmmd's for 8 steps straight."""
    common = [*fit_args, "--checkpoint.every_n_train_steps", "100", "--trainer.val_check_interval", "4",
              "--model.lr", "3e-3", "--trainer.callbacks.decay", "0.5"]
    lightning_ema = "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging"
    with monkeypatch.context() as patch:  # the old behaviour: Lightning's own callback runs
        patch.setattr(cli_module, "own_weight_averaging", lambda callbacks: None)
        cli = build_cli(["fit", *common[:-2], lightning_ema, *common[-2:], "--trainer.max_steps", "4",
                         "--run_name", "split"])
        assert any(type(c) is LIGHTNING_EMA for c in cli.trainer.callbacks)
    split = Path(cli.trainer.log_dir)
    old = read_checkpoint(split / "last.ckpt")
    assert {TRAINED_STATE_KEY, "averaging_state"} <= set(old) and "EMAWeightAveraging" in old["callbacks"]
    resumed = build_cli(["fit", *common[:-2], "--trainer.callbacks+=EMAWeightAveraging", *common[-2:],  # short name
                         "--trainer.max_steps", "8", "--run_name", "split", "--ckpt_path", "last"])
    assert any(type(c) is NetworkEMA for c in resumed.trainer.callbacks)
    straight = build_cli(["fit", *common[:-2], f"--trainer.callbacks+={OWN_EMA}", *common[-2:],
                          "--trainer.max_steps", "8", "--run_name", "straight"])
    a = read_checkpoint(Path(straight.trainer.log_dir) / "last.ckpt")
    b = read_checkpoint(split / "last.ckpt")
    assert a["averaging_state"]["n_averaged"] == b["averaging_state"]["n_averaged"] == 8
    for entry in ("state_dict", TRAINED_STATE_KEY):
        assert set(a[entry]) == set(b[entry])
        for k, v in a[entry].items():
            assert torch.allclose(v, b[entry][k], rtol=0, atol=1e-6), (entry, k)


def test_the_data_protocol_exact_resume_relies_on():
    """fastmmd.train.sampling counts batches as the loader hands them out and starts its workers at
    the first ``next()``: that needs Lightning (a) to create the epoch's iterator no later than its
    ``set_epoch`` call and draw the first batch after it, (b) not to prefetch from a loader with a
    length (the count is then the batches trained on when a checkpoint is written)."""
    import lightning.pytorch as pl

    from fastmmd.train.sampling import EpochKeys, ResumableLoader, ResumableSampler

    events: list[tuple] = []

    class Recorded(EpochKeys):
        def set_epoch(self, epoch: int) -> None:
            events.append(("set_epoch", epoch))
            super().set_epoch(epoch)

    class Data(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 12

        def __getitem__(self, key):
            index, epoch = key
            events.append(("item", epoch))
            return torch.full((1,), float(index))

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            loader = self.trainer.train_dataloader
            events.append(("step", self.current_epoch, batch_idx, loader.state_dict()["batches"]))
            return (self.w * batch).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    sampler = ResumableSampler(12, seed=3, batch_size=4)
    loader = ResumableLoader(Data(), batch_sampler=torch.utils.data.BatchSampler(Recorded(sampler), 4, drop_last=True))
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Module(), train_dataloaders=loader)
    steps = [e for e in events if e[0] == "step"]
    assert [(epoch, i, done) for _, epoch, i, done in steps] == [(e, i, i + 1) for e in range(2) for i in range(3)]
    for epoch in range(2):  # set_epoch(e) comes before every item drawn for epoch e
        first_item = next(k for k, e in enumerate(events) if e == ("item", epoch))
        assert ("set_epoch", epoch) in events[:first_item]
