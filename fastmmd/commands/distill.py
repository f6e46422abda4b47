"""``fastmmd distill TEACHER --photos DIR... --output student.ckpt``: the command of :mod:`fastmmd.train.distill`.

Reads the teacher weights-only (a shipped style's name, an exported ``.pt``/``.pt2`` or a ``.ckpt``),
crops and stylizes the photos once, trains the student and writes a training checkpoint whose
description is the teacher's (style, loss, weights) plus a ``distillation`` entry (the teacher, its
network and these settings), so ``fastmmd export``/``stylize``/``evaluate`` take it like any other.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from fastmmd.base.errors import ImageError, UserError
from fastmmd.model.networks import TransformerNet
from fastmmd.train.distill import SETTINGS, random_crops, teacher_targets, train_student


def build_parser():
    """``fastmmd distill TEACHER --photos DIR... --output student.ckpt``."""
    from fastmmd.commands.parsing import CommandParser

    p = CommandParser("fastmmd distill", "Train a small, fast student network to reproduce a trained one (a shipped "
                      "style, an exported .pt/.pt2 or a .ckpt) on your photos; writes a training checkpoint for "
                      "fastmmd export / stylize.")
    p.add_argument("teacher", help="the network to imitate: shipped style name, exported .pt/.pt2, or .ckpt")
    p.add_argument("--photos", nargs="+", required=True, help="training photos: files, folders or globs "
                   "(quote globs such as 'photos/**/*.jpg')")
    p.add_argument("--output", "-o", required=True, help="the student's checkpoint (.ckpt)")
    p.add_argument("--width", type=int, default=8, help="the student's first-layer channels (the teacher's is 32)")
    p.add_argument("--residual-blocks", type=int, default=5, help="the student's residual blocks")
    p.add_argument("--size", type=int, default=256, help="crop side in px")
    p.add_argument("--crops-per-photo", type=int, default=2,
                   help="random crops per photo, stylized once by the teacher")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--edge-weight", type=float, default=1.0, help="weight of the L1 of the image gradients")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int | None, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    return p


def run(args) -> int:
    """Runs ``fastmmd distill``: checks every input and the output first, then crops, stylizes, trains, writes."""
    from fastmmd.base.images import expand_inputs, open_image
    from fastmmd.base.outputs import atomic_path, check_output_file
    from fastmmd.infer.zoo import resolve_model
    from fastmmd.model.checkpoints import checkpoint_entries, description
    from fastmmd.model.files import read_network

    for name in ("width", "steps", "batch_size", "crops_per_photo"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    if args.residual_blocks < 0 or args.size < 16 or not args.lr > 0 or not args.edge_weight >= 0:
        raise UserError("--residual-blocks must be >= 0, --size >= 16 px, --lr > 0 and --edge-weight >= 0")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, not {args.threads}")
        torch.set_num_threads(args.threads)
    teacher_path = resolve_model(args.teacher)
    out = check_output_file(args.output, [("the teacher", teacher_path)], suffixes=(".ckpt",), what="--output")
    files, problems = expand_inputs(list(args.photos))
    if not files:
        raise UserError(f"no photos to distill on: {'; '.join(problems) or 'no inputs'}")
    teacher, meta = read_network(teacher_path)
    if teacher.conditioned:
        raise UserError(f"{str(teacher_path)!r} is a conditioned network (several styles, a strength or any painting); "
                        "distill takes single-style networks")
    teacher.eval().requires_grad_(False)
    def say(text: str) -> None:
        if not args.quiet:
            print(f"fastmmd distill: {text}", file=sys.stderr, flush=True)
    images = []
    for f in files:
        try:
            images.append(open_image(f)[0])
        except ImageError as err:
            say(f"skipped: {err}")
    if not images:
        raise UserError("none of the photos could be read")
    start = time.perf_counter()
    crops = random_crops(images, args.size, args.crops_per_photo, args.seed)
    del images
    targets = teacher_targets(teacher, crops)
    say(f"{len(crops)} crops of {args.size} px stylized by the teacher in {time.perf_counter() - start:.0f} s")
    torch.manual_seed(args.seed)
    student = TransformerNet(args.width, args.residual_blocks, downsample_kernel=teacher.downsample_kernel)
    every = max(1, args.steps // 20)

    def log(step: int, loss: float) -> None:
        if (step + 1) % every == 0 or step == 0:
            say(f"step {step + 1}/{args.steps} loss {loss:.4f} ({time.perf_counter() - start:.0f} s)")

    losses = train_student(student, crops, targets, args.steps, args.batch_size, args.lr, args.edge_weight,
                           args.seed, log)
    trained = meta["training"] if isinstance(meta.get("training"), dict) else meta  # an export keeps its .ckpt's
    training = {k: v for k, v in trained.items()
                if k not in ("format_version", "fastmmd_version", "network", "global_step", "distillation")}
    settings = {k: getattr(args, k) for k in SETTINGS}
    final = sum(losses[-50:]) / len(losses[-50:])
    entry = description(student, **training, global_step=args.steps,
                        distillation={"teacher": Path(str(teacher_path)).name, "teacher_network": teacher.config(),
                                      "photos": len(crops) // args.crops_per_photo, "final_loss": final,
                                      "seconds": time.perf_counter() - start, **settings})
    with atomic_path(out) as tmp:
        torch.save(checkpoint_entries(student, entry), tmp)
    say(f"wrote {str(out)!r}: width {args.width} x {args.residual_blocks} blocks, "
        f"{sum(p.numel() for p in student.parameters())} parameters, final loss {final:.4f}")
    return 0
