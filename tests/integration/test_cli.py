"""``fastmmd fit`` on bad input (issue 8): one line and exit 2 before any work, no run overwritten,
no run folder left behind by a fit that failed before its first checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import tiny_fit_args, write_tiny_checkpoint

from fastmmd.__main__ import main


def fit(args: list[str], *extra: str) -> int:
    return main(["fit", *args, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", *extra])


def fails_with_one_line(argv: list[str], capsys, *needles: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        fit(*argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("fastmmd: error:"), err
    assert all(n in err[0] for n in needles) and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fit_data) -> tuple[list[str], Path]:
    """A finished 1-step run ``r`` (its folder and arguments)."""
    root = tmp_path_factory.mktemp("cli")
    args = tiny_fit_args(root, data=fit_data)
    assert fit(args, "--run_name", "r") == 0
    return args, root / "runs" / "r"


def test_rerun_of_an_existing_run_is_refused(trained, capsys):
    args, run = trained
    config = (run / "config.yaml").read_bytes()
    fails_with_one_line([args, "--run_name", "r"], capsys, "--ckpt_path last", "--run_name", "--overwrite")
    assert (run / "config.yaml").read_bytes() == config
    assert sorted(p.name for p in run.glob("*.ckpt")) == ["last.ckpt"]


def test_overwrite_replaces_the_run(trained, capsys, tmp_path):
    args, run = trained
    runs = Path(args[args.index("--runs_dir") + 1])
    assert fit(args, "--run_name", "again") == 0
    (runs / "again" / "stale.txt").write_text("from the old run")
    assert fit(args, "--run_name", "again", "--overwrite", "true") == 0
    assert sorted(p.name for p in (runs / "again").glob("*.ckpt")) == ["last.ckpt"]  # no last-v1.ckpt
    assert not (runs / "again" / "stale.txt").exists()


@pytest.mark.parametrize("name", ["../escape", ".", "a/b"])
def test_run_name_is_a_plain_folder_name(trained, capsys, name):
    fails_with_one_line([trained[0], "--run_name", name], capsys, "--run_name")


@pytest.mark.parametrize("case", ["missing", "folder", "truncated", "random", "not-fastmmd", "network-only", "crafted"])
def test_bad_ckpt_path_is_one_line_before_any_work(trained, tmp_path, capsys, case):
    args, run = trained
    path = tmp_path / f"{case}.ckpt"
    if case == "folder":
        path.mkdir()
    elif case == "truncated":
        path.write_bytes((run / "last.ckpt").read_bytes()[:4000])
    elif case == "random":
        path.write_bytes(os.urandom(4000))
    elif case == "not-fastmmd":
        torch.save({"state_dict": {"layer.weight": torch.zeros(2)}, "epoch": 0}, path)
    elif case == "network-only":
        write_tiny_checkpoint(path)
    elif case == "crafted":
        from payloads import Payload

        torch.save({"state_dict": {}, "fastmmd": Payload(tmp_path / "MARKER")}, path)
    needle = {"missing": "does not exist", "folder": "is a folder", "network-only": "--model.init_from"}.get(
        case, "not a fastmmd checkpoint or model")
    runs = Path(args[args.index("--runs_dir") + 1])
    fails_with_one_line([args, "--run_name", f"bad-{case}", "--ckpt_path", str(path)], capsys, needle)
    assert not (runs / f"bad-{case}").exists() and not (tmp_path / "MARKER").exists()


def test_resume_from_a_checkpoint_file_still_works(trained, capsys):
    args, run = trained
    assert fit(args, "--run_name", "r", "--ckpt_path", str(run / "last.ckpt"), "--trainer.max_steps", "2") == 0


def test_fit_that_fails_early_leaves_no_run_folder(tmp_path, capsys):
    args = tiny_fit_args(tmp_path, photos=1)
    bad = tmp_path / "corrupt"
    bad.mkdir()
    for i in range(4):
        (bad / f"{i}.jpg").write_bytes(os.urandom(300))
    args[args.index("--data.root") + 1] = str(bad)
    args[args.index("--data.val_size") + 1] = "2"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # fails once training has started: Lightning's banner lines come first
        fit(args, "--run_name", "doomed", "--trainer.limit_val_batches", "1")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "none of the 4 images" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "runs" / "doomed").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict"])
def test_only_the_subcommand_given_has_its_parser_built(command, fit_args, monkeypatch, capsys):
    """``fastmmd fit`` builds the parser of ``fit`` alone, not those of the three subcommands it does
    not run (each as costly as its own: docs/benchmarks.md, "The test suite")."""
    from fastmmd.train.cli import FastMMDCLI

    built, prepare = [], FastMMDCLI._prepare_subcommand_parser

    def recorded(self, klass, subcommand, **kwargs):
        built.append(subcommand)
        return prepare(self, klass, subcommand, **kwargs)

    monkeypatch.setattr(FastMMDCLI, "_prepare_subcommand_parser", recorded)
    assert main([command, *fit_args, "--print_config"]) == 0
    assert built == [command] and "model:" in capsys.readouterr().out
