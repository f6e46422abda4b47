"""Plumbing shared by the non-Lightning subcommands (optimize, export, stylize, compare).

Each command module defines ``build_parser() -> ArgumentParser`` (dashed flags, help strings and a
``--config`` YAML file whose keys are the flags with underscores) and ``run(args) -> int``. The
parser here reports a bad flag or value as a :class:`~fastmmd.errors.UserError`, so the entry
point prints one line and exits 2 like every other user error.
"""

from __future__ import annotations

from collections.abc import Sequence

from jsonargparse import ActionConfigFile, ArgumentParser

from fastmmd.errors import UserError, one_line


class CommandParser(ArgumentParser):
    """A jsonargparse parser whose errors are one-line :class:`UserError` instead of usage + exit."""

    def __init__(self, prog: str, description: str, **kwargs) -> None:
        super().__init__(prog=prog, description=description, exit_on_error=False, **kwargs)
        self.add_argument("--config", action=ActionConfigFile, help="YAML file with any of these options (keys use underscores)")

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        raise UserError(f"{self.prog}: {one_line(message)} (see `{self.prog} --help`)")


def float_list(text: str | Sequence[float] | None) -> list[float] | None:
    """``"0.7,0.3"`` (or a YAML list) -> ``[0.7, 0.3]``."""
    if text is None or text == "":
        return None
    if isinstance(text, (list, tuple)):
        return [float(v) for v in text]
    try:
        return [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated numbers such as 0.7,0.3, not {text!r}") from None


def str_list(text: str | Sequence[str] | None) -> list[str] | None:
    """``"relu1_1,relu2_1"`` (or a YAML list) -> ``["relu1_1", "relu2_1"]``."""
    if text is None or text == "":
        return None
    if isinstance(text, (list, tuple)):
        return [str(v) for v in text]
    return [v.strip() for v in str(text).split(",") if v.strip()]


def resolve_device(name: str) -> "torch.device":  # noqa: F821
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is a user error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    return device


def resolve_precision(name: str, device: "torch.device") -> str:  # noqa: F821
    """``auto`` -> ``bf16`` where bfloat16 convolutions are fast (CUDA with bf16, a CPU with
    AVX512-BF16 or AMX), else ``32``. bf16 runs VGG under autocast only; statistics and the
    optimizer stay in fp32 (quality measured in docs/benchmarks.md: final loss ratio 0.994).
    """
    import torch

    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "32"
    cpu = torch.cpu
    fast = any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return "bf16" if device.type == "cpu" and fast else "32"
