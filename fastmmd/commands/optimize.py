"""``fastmmd optimize``: per-image style transfer (:mod:`fastmmd.apps.optimize`) from the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from fastmmd import __version__
from fastmmd.apps.optimize import check_memory, optimize_image, out_of_memory
from fastmmd.base.devices import resolve_device
from fastmmd.base.errors import UserError
from fastmmd.base.images import check_image_output, fit_size, image_size, read_image, resize, save_image
from fastmmd.base.outputs import refuse_inputs
from fastmmd.base.paintings import resolve_paintings
from fastmmd.base.precision import resolve_precision
from fastmmd.base.settings import (
    OptimizerSettings,
    RuntimeSettings,
    VGGSettings,
    dataclass_from_args,
    float_list,
    optimization_settings,
)
from fastmmd.commands.parsing import CommandParser, add_dataclass_flags
from fastmmd.losses import StyleLoss
from fastmmd.losses.criterion import StyleCriterion
from fastmmd.vgg.features import MIN_SIDE as VGG_MIN_SIDE


def build_parser() -> CommandParser:
    """``fastmmd optimize`` options (also readable from ``--config FILE.yaml``)."""
    p = CommandParser("fastmmd optimize", "Per-image style transfer: optimise the pixels of one image "
                      "against a style loss (Gatys et al. 2016; Li et al. 2017).")
    p.add_argument("--content", required=True, help="content photo")
    p.add_argument("--style", action="append", required=True, help="style image, or a shipped style's name for its "
                   "painting (fastmmd data paintings); repeat for several")
    p.add_argument("--style-blend", default=None, help="weights of several styles, e.g. 0.7,0.3 (default equal)")
    add_dataclass_flags(p, StyleLoss, aliases={"method": "--loss"})  # the loss: one declaration for every command
    p.add_argument("--size", type=int, default=512, help="long edge of the output in px (content aspect kept)")
    p.add_argument("--style-size", type=int, default=None, help="long edge of the style image(s) in px (default: --size x --style-scale)")
    p.add_argument("--style-scale", type=float, default=1.0, help="style size relative to --size when --style-size is not given")
    p.add_argument("--init", default="content", help="content | random | PATH of an image")
    add_dataclass_flags(p, OptimizerSettings)
    add_dataclass_flags(p, VGGSettings)
    add_dataclass_flags(p, RuntimeSettings)
    p.add_argument("--preserve-color", action="store_true", help="keep the content's colours (luminance-only transfer)")
    p.add_argument("--save-every", type=int, default=0, help="also save every N steps as OUTPUT_STEM.NNNN.png")
    p.add_argument("--output", default="out.png", help="output image (PNG keeps the settings as metadata)")
    return p


def _check_positive(args) -> None:
    for flag, value in (("--size", args.size), ("--style-size", args.style_size)):
        if value is not None and value < VGG_MIN_SIDE:
            raise UserError(f"{flag} must be at least {VGG_MIN_SIDE} px (VGG pools 4 times), not {value}")
    if not args.style_scale > 0:
        raise UserError(f"--style-scale must be positive, not {args.style_scale}")
    if args.save_every < 0:
        raise UserError(f"--save-every must be 0 (off) or a number of steps, not {args.save_every}")


def run(args) -> int:
    """Runs ``fastmmd optimize``: validates everything up front, then optimises and saves atomically."""
    from tqdm.auto import tqdm

    _check_positive(args)
    opt, vgg, runtime = optimization_settings(args)
    blend = float_list(args.style_blend, "--style-blend")
    loss = dataclass_from_args(StyleLoss, args)
    torch.manual_seed(opt.seed)
    args.style = [str(p) for p in resolve_paintings(args.style)]  # a shipped style's name -> its painting
    inputs = [("--content", args.content), *(("--style", s) for s in args.style),
              ("--init", args.init if args.init not in ("content", "random") else None)]
    output = check_image_output(args.output, inputs, "--output")
    if args.save_every:
        for step in range(args.save_every, opt.iterations + 1, args.save_every):
            refuse_inputs(output.with_name(f"{output.stem}.{step:04d}{output.suffix}"), inputs)
    device = resolve_device(runtime.device)
    precision = resolve_precision(runtime.precision, device)
    h, w = fit_size(*image_size(args.content), args.size)
    style_edge = args.style_size or max(VGG_MIN_SIDE, round(max(h, w) * args.style_scale))
    style_pixels = sum(math.prod(fit_size(*image_size(s), style_edge)) for s in args.style)
    check_memory(h * w, style_pixels, device, "--size", args.size)
    content = read_image(args.content, args.size).unsqueeze(0)
    h, w = content.shape[-2:]
    styles = [read_image(s, style_edge).unsqueeze(0) for s in args.style]
    init = _initial_image(args.init, content, opt.seed)
    criterion = StyleCriterion(loss, vgg_weights=vgg.vgg_weights, vgg_pooling=vgg.pooling,
                               vgg_width_divisor=vgg.vgg_width_divisor, seed=opt.seed).to(device)
    criterion.set_style(styles, blend)
    criterion.set_content(content)
    settings = {"fastmmd_version": __version__, "content": Path(args.content).name, "styles": [Path(s).name for s in args.style],
                "style_blend": blend, "size": [h, w], "style_size": style_edge, "init": args.init,
                "optimizer": opt.optimizer, "iterations": opt.iterations, "lr": opt.lr, "seed": opt.seed,
                "precision": precision, "preserve_color": args.preserve_color, **criterion.describe()}
    bar = tqdm(total=opt.iterations, desc="optimize", disable=runtime.no_progress, unit="it")

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
        result = optimize_image(criterion, init.to(device), opt.optimizer, opt.iterations, opt.lr, precision,
                                opt.stop_tol, on_step=on_step)
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
