"""The one bf16 rule (fastmmd/base/precision.py): the CPU check and both of its branches in every command
and in ``fit``, injected so that no AVX2-only machine is needed."""

from __future__ import annotations

import pytest
import torch
from conftest import synthetic_image, write_tiny_checkpoint

from fastmmd.__main__ import main
from fastmmd.base import precision
from fastmmd.base.errors import UserError
from fastmmd.infer.stylize import load_stylizer
from fastmmd.train.cli import build_cli


def _cpu(monkeypatch, bf16: bool, amx: bool = False, capability: str = "AVX512", onednn: str | None = None) -> None:
    """Makes this CPU look like one with (or without) bf16 instructions, whatever it is."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    if onednn is not None:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", onednn)


@pytest.mark.parametrize("bf16, amx, capability, onednn, fast", [
    (True, False, "AVX512", None, True),          # AVX512-BF16
    (False, True, "AVX512", "ALL", True),         # AMX
    (True, True, "AVX512", "AVX512_CORE_AMX", True),
    (False, False, "AVX512", None, False),        # AVX-512 without bf16
    (False, False, "AVX2", None, False),          # AVX2 only (issue 29's CPU)
    (True, False, "AVX2", None, False),           # ATEN_CPU_CAPABILITY=avx2 on a bf16 CPU
    (True, False, "AVX512", "AVX2", False),       # ONEDNN_MAX_CPU_ISA=AVX2: convolutions emulated
    (True, False, "AVX512", "avx512_core", False),
])
def test_cpu_bf16_is_fast_needs_the_instructions_and_kernels_that_use_them(monkeypatch, bf16, amx, capability,
                                                                         onednn, fast):
    _cpu(monkeypatch, bf16, amx, capability, onednn)
    assert precision.cpu_bf16_is_fast() is fast
    assert precision.bf16_is_fast("cpu") is fast


@pytest.mark.parametrize("fast", [True, False])
def test_auto_picks_bf16_only_where_it_is_fast_and_explicit_bf16_is_refused_elsewhere(monkeypatch, fast):
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: fast)
    assert precision.resolve_precision("auto", "cpu") == ("bf16" if fast else "32")
    assert precision.resolve_precision("32", "cpu") == "32"
    assert precision.resolve_trainer_precision("auto", "cpu") == ("bf16-mixed" if fast else "32-true")
    assert precision.resolve_trainer_precision("32", "cpu") == "32"
    assert precision.resolve_trainer_precision(None, "cpu") is None  # Lightning's default
    if fast:
        assert precision.resolve_precision("bf16", "cpu") == "bf16"
        assert precision.resolve_trainer_precision("bf16-mixed", "cpu") == "bf16-mixed"
        return
    with pytest.raises(UserError, match="--precision bf16 on a CPU without bf16 instructions.*--precision auto or 32"):
        precision.resolve_precision("bf16", "cpu")
    for value in ("bf16-mixed", "bf16-true", "bf16"):
        with pytest.raises(UserError, match=f"--trainer.precision {value} on a CPU without bf16"):
            precision.resolve_trainer_precision(value, "cpu")


def test_trainer_auto_on_a_gpu_follows_the_gpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.resolve_trainer_precision("auto", "auto") == "bf16-mixed"
    assert precision.resolve_trainer_precision("auto", "gpu") == "bf16-mixed"
    assert precision.resolve_trainer_precision("bf16-mixed", "auto") == "bf16-mixed"  # the GPU has it
    assert precision.resolve_trainer_precision("auto", "cpu") == "32-true"  # accelerator cpu beside a GPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.resolve_trainer_precision("auto", "auto") == "32-true"


@pytest.mark.parametrize("fast", [True, False])
def test_fit_takes_precision_auto_and_refuses_bf16_on_a_cpu_without_it(monkeypatch, fit_args, fast):
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: fast)
    cli = build_cli(["fit", *fit_args, "--trainer.precision", "auto", "--trainer.max_steps", "1",
                     "--trainer.limit_val_batches", "0"])
    assert cli.trainer.precision == ("bf16-mixed" if fast else "32-true") and cli.trainer.global_step == 1
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
