"""The one rule for bfloat16: used only where the hardware runs it fast.

On a CPU without bf16 instructions (AVX2 only, no AVX512-BF16 or AMX) every bf16 convolution is
emulated and runs far slower than fp32 (docs/benchmarks.md, "bf16 without bf16 instructions"), so
a bf16 run there is a crawl, never a speed-up. Every command and ``fastmmd fit`` therefore decide
through :func:`bf16_is_fast`:

* ``auto`` (``optimize``/``compare``/``evaluate --precision auto``, ``fit --trainer.precision auto``)
  resolves to bf16 where it is fast and to fp32 elsewhere (:func:`resolve_precision`,
  :func:`resolve_trainer_precision`);
* an explicit bf16 request on a CPU where it is not fast (``stylize --bf16``,
  ``load_stylizer(bf16=True)``, ``optimize --precision bf16``, ``fit --trainer.precision
  bf16-mixed``/``bf16-true`` on the CPU) is **refused** with a one-line
  :class:`~fastmmd.base.errors.UserError` naming the fix, before any work (:func:`require_fast_bf16`);
  why refused rather than quietly run in fp32: docs/safety.md, "bf16 only where the hardware has it".

The CPU check is :func:`cpu_bf16_is_fast`, one function so that tests (and callers that know
better) can replace it; it honours ``ATEN_CPU_CAPABILITY`` and ``ONEDNN_MAX_CPU_ISA``, which make
an AVX-512 machine behave like an AVX2-only one.

Where training runs in fp32 on the CPU, :func:`cpu_nnpack_is_faster` (the same kind of check)
decides whether VGG's convolutions on large maps go through NNPACK's fast kernels instead
(:mod:`fastmmd.core.nnpack`; ``fastmmd fit`` asks it when fitting starts).
"""

from __future__ import annotations

import os
from typing import Any

from fastmmd.base.errors import UserError

#: oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``/``DNNL_MAX_CPU_ISA``) below ``AVX512_CORE_BF16``: capped
#: there, oneDNN has no bf16 convolution kernel and emulates it (docs/benchmarks.md, "bf16 without bf16 instructions").
_ONEDNN_ISAS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                       "AVX512_CORE_VNNI"})


def cpu_bf16_is_fast() -> bool:
    """True where this CPU has bf16 instructions that torch uses: AVX512-BF16 or AMX (``torch.cpu``'s
    cpuinfo query), with ATen dispatching to its AVX-512 kernels
    (``torch.backends.cpu.get_cpu_capability()``) and oneDNN not capped below ``AVX512_CORE_BF16``.

    The cpuinfo query reads the instruction set only: under ``ATEN_CPU_CAPABILITY=avx2`` and
    ``ONEDNN_MAX_CPU_ISA=AVX2`` it still says True while ``get_cpu_capability()`` says ``AVX2`` and
    bf16 convolutions crawl, hence the other two checks.
    """
    import torch

    cpu = torch.cpu
    has = any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    if not has:
        return False
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    return cap not in _ONEDNN_ISAS_WITHOUT_BF16


#: oneDNN ISA caps at AVX2 or below: capped there, oneDNN's fp32 convolutions are AVX2 kernels
_ONEDNN_ISAS_AVX2_AT_MOST = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"})


def nnpack_available() -> bool:
    """Whether this torch has NNPACK and it initialised on this CPU (on x86 it needs AVX2). Calling it
    initialises NNPACK, which must happen before its first convolution."""
    import torch

    check = getattr(torch, "_nnpack_available", None)
    return bool(check is not None and check())


def cpu_nnpack_is_faster() -> bool:
    """True where VGG's fp32 3x3 convolutions on large maps run faster through NNPACK
    (:mod:`fastmmd.core.nnpack`) than through oneDNN: this torch has NNPACK for this CPU and the
    CPU's convolutions run AVX2 kernels at most (``torch.backends.cpu.get_cpu_capability()`` is not
    AVX-512, or ``ONEDNN_MAX_CPU_ISA`` caps oneDNN at AVX2 or below). With AVX-512 kernels oneDNN
    was faster (docs/benchmarks.md, "bf16 without bf16 instructions")."""
    import torch

    if not nnpack_available():
        return False
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    return not torch.backends.cpu.get_cpu_capability().startswith("AVX512") or cap in _ONEDNN_ISAS_AVX2_AT_MOST


def bf16_is_fast(device: Any) -> bool:
    """True where bfloat16 runs fast on ``device`` (a ``torch.device`` or its name): a CUDA GPU with
    bf16 (``torch.cuda.is_bf16_supported()``) or a CPU where :func:`cpu_bf16_is_fast` holds."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_bf16_is_fast()
    return False


def require_fast_bf16(device: Any, request: str, instead: str) -> None:
    """Raises a one-line :class:`UserError` if ``request`` (e.g. ``--bf16``) asks for bf16 on a CPU
    without bf16 instructions; other devices are left to torch. ``instead`` names the fix."""
    import torch

    if torch.device(device).type == "cpu" and not cpu_bf16_is_fast():
        raise UserError(f"{request} on a CPU without bf16 instructions (AVX512-BF16 or AMX, as torch uses them; its CPU "
                        f"capability: {torch.backends.cpu.get_cpu_capability()}) would be emulated, far slower than "
                        f"fp32; {instead}")


def resolve_precision(name: str, device: Any) -> str:
    """``optimize``/``compare``/``evaluate --precision``: ``auto`` -> ``bf16`` where :func:`bf16_is_fast`,
    else ``32``; ``bf16`` on a CPU without bf16 instructions is refused (:func:`require_fast_bf16`);
    ``32`` stays. bf16 runs VGG under autocast only; statistics and the optimizer stay in fp32, and
    the final loss matches fp32's (measured: docs/benchmarks.md, "Per-image optimization")."""
    if name == "auto":
        return "bf16" if bf16_is_fast(device) else "32"
    if name == "bf16":
        require_fast_bf16(device, "--precision bf16", "use --precision auto or 32")
    return name


#: ``fit --trainer.precision`` values that run in bfloat16
BF16_TRAINER_PRECISIONS = frozenset({"bf16", "bf16-mixed", "bf16-true"})


def resolve_trainer_precision(precision: Any, accelerator: Any) -> Any:
    """``fit --trainer.precision``: ``auto`` -> ``bf16-mixed`` where bf16 is fast on the device the
    Trainer will use (``accelerator`` ``cpu``, ``gpu``/``cuda`` or ``auto``: CUDA when available), else
    ``32-true``; a bf16 value on a CPU without bf16 instructions is refused; any other value is
    returned unchanged (Lightning checks it)."""
    import torch

    on_cpu = _on_cpu(accelerator, torch.cuda.is_available())
    if precision == "auto":
        fast = cpu_bf16_is_fast() if on_cpu else bf16_is_fast("cuda") if torch.cuda.is_available() else False
        return "bf16-mixed" if fast else "32-true"
    if on_cpu and str(precision) in BF16_TRAINER_PRECISIONS:
        require_fast_bf16("cpu", f"--trainer.precision {precision}", "use --trainer.precision auto (bf16 where the "
                          "hardware has it, else 32) or 32")
    return precision


def _on_cpu(accelerator: Any, cuda: bool) -> bool:
    """Whether Lightning's ``accelerator`` setting trains on the CPU (``auto``: when no CUDA GPU is there)."""
    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__.lower().replace("accelerator", "")
    name = (name or "auto").lower()
    if name == "cpu":
        return True
    if name == "auto":
        return not cuda
    return False
