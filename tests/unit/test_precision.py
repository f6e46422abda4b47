"""The one bf16 rule (fastmmd/base/precision.py): the CPU check and how ``auto`` resolves, injected so
that no AVX2-only machine is needed (both branches in ``fit`` and ``stylize``: tests/integration/test_precision.py)."""

from __future__ import annotations

import pytest
import torch

from fastmmd.base import precision
from fastmmd.base.errors import UserError


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


@pytest.mark.parametrize("nnpack, capability, onednn, faster", [
    (True, "AVX2", None, True),             # AVX2 only (issue 29's CPU)
    (True, "AVX512", "AVX2", True),         # oneDNN capped at AVX2: its convolutions are AVX2 kernels
    (True, "AVX512", None, False),          # AVX-512 kernels beat NNPACK
    (True, "AVX512", "AVX512_CORE", False),
    (False, "AVX2", None, False),           # no NNPACK in this torch
])
def test_nnpack_only_where_the_cpus_convolutions_are_avx2_at_most(monkeypatch, nnpack, capability, onednn, faster):
    _cpu(monkeypatch, False, capability=capability, onednn=onednn)
    monkeypatch.setattr(torch, "_nnpack_available", lambda: nnpack, raising=False)
    assert precision.nnpack_available() is nnpack
    assert precision.cpu_nnpack_is_faster() is faster
