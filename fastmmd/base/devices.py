"""Devices: which one a command runs on and how much memory it has free (torch is imported only
where a device needs it, so the torch-free ONNX path reads the CPU's memory here too)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fastmmd.base.errors import UserError

if TYPE_CHECKING:
    import torch


def available_memory(device: torch.device) -> int:
    """Bytes free for activations: CUDA's free memory, or the CPU's (:func:`available_cpu_memory`)."""
    if device.type == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0]
    return available_cpu_memory()


def available_cpu_memory() -> int:
    """Bytes of memory available to a new allocation: the OS's MemAvailable (8 GiB where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


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
