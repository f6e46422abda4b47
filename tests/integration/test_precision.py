"""The one bf16 rule (fastmmd/base/precision.py): both of its branches in ``fit`` and ``stylize``, injected so
that no AVX2-only machine is needed (the CPU check itself: tests/unit/test_precision.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import synthetic_image, write_tiny_checkpoint

from fastmmd.__main__ import main
from fastmmd.base import precision
from fastmmd.base.errors import UserError
from fastmmd.infer.stylize import load_stylizer
from fastmmd.train.cli import build_cli


@pytest.mark.parametrize("fast", [True, False])
def test_fit_takes_precision_auto_and_refuses_bf16_on_a_cpu_without_it(monkeypatch, fit_args, fast):
    """... and in fp32 runs VGG through NNPACK where the CPU rule says that is faster (here: wherever
    this torch has NNPACK; the rule itself: tests/unit/test_precision.py)."""
    import fastmmd.train.module as module_file

    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: fast)
    monkeypatch.setattr(module_file, "cpu_nnpack_is_faster", precision.nnpack_available)
    cli = build_cli(["fit", *fit_args, "--trainer.precision", "auto", "--trainer.max_steps", "1",
                     "--trainer.limit_val_batches", "0"])
    assert cli.trainer.precision == ("bf16-mixed" if fast else "32-true") and cli.trainer.global_step == 1
    assert cli.model.criterion.vgg.nnpack is (not fast and precision.nnpack_available())
    if fast:
        return
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *fit_args, "--trainer.precision", "bf16-mixed", "--trainer.max_steps", "1"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("fast", [True, False])
def test_stylize_bf16_runs_only_on_a_cpu_with_bf16(monkeypatch, tmp_path, capsys, fast):
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: fast)
    ckpt = write_tiny_checkpoint(tmp_path / "tiny.ckpt")
    synthetic_image(24, 20, seed=1).save(tmp_path / "photo.png")
    argv = ["stylize", str(ckpt), str(tmp_path / "photo.png"), "--device", "cpu", "--bf16", "--quiet",
            "--output-dir", str(tmp_path / "out")]
    if fast:
        assert main(argv) == 0 and (tmp_path / "out" / "photo_stylized.png").is_file()
        assert load_stylizer(ckpt, device="cpu", bf16=True) is not None
        return
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "--bf16 on a CPU without bf16 instructions" in err
    assert not (tmp_path / "out").exists()  # refused before any work
    with pytest.raises(UserError, match="drop --bf16"):
        load_stylizer(ckpt, device="cpu", bf16=True)
    assert load_stylizer(ckpt, device="cpu") is not None  # fp32 is untouched
