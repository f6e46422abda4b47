"""Every shipped config parses through the real CLI and trains a step; bad configs are one line + exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fastmmd.__main__ import main
from fastmmd.checkpoints import read_checkpoint
from fastmmd.cli import run_lightning

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
TRAINING = [c for c in CONFIGS if "model" in yaml.safe_load(c.read_text())]


def test_every_loss_has_a_config():
    names = {c.stem for c in TRAINING}
    assert {"quickstart", "gram", "linear", "poly", "gaussian", "bn", "bn_poly"} <= names


@pytest.mark.parametrize("config", TRAINING, ids=lambda c: c.stem)
def test_config_prints_resolved(config, capsys):
    assert run_lightning("fit", ["--config", str(config), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    written = yaml.safe_load(config.read_text())
    for section in ("model", "data", "trainer"):
        for key, value in written.get(section, {}).items():
            assert printed[section][key] == value, f"{section}.{key}"
    assert printed["trainer"]["use_distributed_sampler"] is False  # fastmmd's CLI default


@pytest.mark.parametrize("config", [c for c in TRAINING if c.stem in ("quickstart", "bn_poly")], ids=lambda c: c.stem)
def test_config_trains_one_step_on_tiny_data(config, fit_args, tmp_path):
    # the config's own settings, with paths, sizes and the VGG swapped for the test stand-in
    # (every loss also trains a few steps in tests/test_training.py)
    args = ["--config", str(config), *fit_args, "--trainer.max_steps", "1", "--trainer.precision", "32",
            "--model.network_width", "8", "--trainer.val_check_interval", "1", "--run_name", "one"]
    assert run_lightning("fit", args) == 0
    ckpt = read_checkpoint(tmp_path / "runs" / "one" / "last.ckpt")
    written = yaml.safe_load(config.read_text())["model"]
    assert ckpt["global_step"] == 1 and ckpt["fastmmd"]["loss"] == written["loss"]


@pytest.mark.parametrize("bad, message", [
    (["--model.style_wieght", "5"], "unrecognized arguments: --model.style_wieght"),
    (["--model.style_weight", "strong"], "model.style_weight"),
    (["--config", "no/such/config.yaml"], "no/such/config.yaml"),
    (["--model.loss", "grma"], "did you mean 'gram'"),
    (["--data.root", "no/such/folder"], "no/such/folder"),
])
def test_bad_config_is_one_line_and_exit_2(bad, message, fit_args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *fit_args, *bad])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert err.startswith("fastmmd: error:") and message in err and "\n" not in err and "Traceback" not in err


def test_unknown_key_in_a_config_file(fit_args, tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("model:\n  style_weigth: 5.0\n")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), *fit_args])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "style_weigth" in err and "\n" not in err


def test_missing_style_image_is_one_line(fit_args, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *fit_args, "--model.style_images", f"[{tmp_path / 'gone.jpg'}]", "--trainer.max_steps", "1"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "gone.jpg" in err and "\n" not in err
