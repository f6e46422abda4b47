"""``fastmmd stylize``: images, folders and videos through a network (:mod:`fastmmd.infer.stylize`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from torch import Tensor

from fastmmd.base.errors import ImageError, UserError
from fastmmd.base.images import WRITABLE_SUFFIXES, expand_inputs, open_image, pil_to_tensor, save_image
from fastmmd.base.inputs import regular_file
from fastmmd.base.outputs import OutputNames, check_output_dir, check_output_file, image_file_output
from fastmmd.commands.parsing import add_condition_flags
from fastmmd.infer.stylize import Stylizer, load_stylizer
from fastmmd.infer.video import CONTAINERS, VIDEO_SUFFIXES, is_video, stylize_video
from fastmmd.infer.zoo import print_styles, resolve_model


def build_parser():
    """``fastmmd stylize MODEL INPUT... --output-dir DIR`` and ``fastmmd stylize --list``."""
    from fastmmd.base.settings import RuntimeSettings
    from fastmmd.commands.parsing import CommandParser, add_dataclass_flags

    parser = CommandParser("fastmmd stylize", "Stylize images with a shipped style (--list), an exported model (.pt/.pt2/.onnx "
                           "from `fastmmd export`) or a training checkpoint (.ckpt). Outputs are <name>_stylized.png "
                           "(or the input's lossless suffix).")
    parser.add_argument("model", nargs="?", default=None, help="exported .pt / .pt2 / .onnx file, training .ckpt, or a "
                        "shipped style's name (--list shows them; NAME:pt picks its .pt, NAME:onnx its .onnx)")
    parser.add_argument("inputs", nargs="*", default=[], help="image files, folders or globs (quote globs such as 'photos/**/*.jpg')")
    parser.add_argument("--list", action="store_true", help="list the shipped styles (as `fastmmd models`) and exit")
    parser.add_argument("--output-dir", "--output", "-o", default="stylized", dest="output_dir",
                        help="folder for the results (created if missing); for one image, an image file (.png, .jpg, "
                        ".webp, .bmp, .tif) may be named instead, and for one video a video file (.mp4, .mov, .mkv, "
                        ".webm, .avi)")
    add_dataclass_flags(parser, RuntimeSettings, exclude=("precision", "no_progress"))  # precision: --bf16/--half
    parser.add_argument("--half", action="store_true", help="float16 inference (GPU only)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 inference (CUDA with bf16, or a CPU with "
                        "AVX512-BF16/AMX; refused on other CPUs, where it would be far slower than fp32); an "
                        "arbitrary-style network runs so by default where it is fast")
    parser.add_argument("--fp32", action="store_true", help="float32 inference throughout, also for an arbitrary-style "
                        "network and its paintings' VGG (their default: bfloat16 where the hardware runs it fast)")
    parser.add_argument("--channels-last", type=bool | None, default=None, help="channels-last memory format (default: on for CUDA)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per batch (same-size images are batched)")
    parser.add_argument("--max-size", type=int | None, default=None, help="downscale images whose longer side exceeds this (px)")
    parser.add_argument("--tile", type=int | None, default=None, help="tile side in px for large images (default: only when "
                        "memory would not suffice; 0: never tile)")
    parser.add_argument("--overlap", type=int | None, default=None, help="tile overlap in px (default: max(32, tile/4))")
    parser.add_argument("--tile-stats", type=Literal["global", "tile"], default="tile",
                        help="instance-norm statistics of tiles: tile (per tile, fast, no seams) or global "
                        "(whole image, matches the untiled output; one extra pass per norm layer)")
    parser.add_argument("--preserve-color", action="store_true", help="keep the content's colours (luminance-only transfer)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int | None, default=None, help="CPU threads (torch and onnxruntime; default: "
                        "theirs, one per core)")
    add_condition_flags(parser)
    parser.add_argument("--save-style", default=None, metavar="FILE.npz", help="also write the statistics of the "
                        "--style-image painting to FILE.npz (an arbitrary-style network; one painting), which "
                        "--style-image FILE.npz takes later without VGG; INPUT may then be left out")
    video = parser.add_argument_group("video (inputs .mp4/.mov/.mkv/.webm/.gif/...; or a folder of frames with --norm-stats "
                                      "or a video --output)")
    video.add_argument("--norm-stats", type=Literal["frame", "running", "clip"] | None, default=None,
                       help="instance-norm statistics across frames: frame (default: each frame its own, as images), "
                       "running (a moving average) or clip (one set for the whole clip); docs/benchmarks.md compares them")
    video.add_argument("--norm-momentum", type=float, default=0.9, help="moving-average momentum of --norm-stats running")
    video.add_argument("--codec", default=None, help="video encoder (default: libx264; libvpx-vp9 for .webm)")
    video.add_argument("--crf", type=int | None, default=None, help="constant rate factor, lower = better and larger "
                       "(default: 18 for libx264, 30 for VP9)")
    video.add_argument("--no-audio", action="store_true", help="drop the audio (default: copied unchanged)")
    video.add_argument("--fps", type=float | None, default=None, help="frame rate of a folder of frames (default 25)")
    return parser


def _stylizer_from_args(args, model: Path) -> Stylizer:
    """The :class:`Stylizer` the command-line flags describe (images and video alike)."""
    if args.fp32 and (args.bf16 or args.half):
        raise UserError("--fp32 excludes --bf16 and --half; pick one")
    bf16 = True if args.bf16 else False if args.fp32 else None  # None: the auto rule for an arbitrary-style network
    return load_stylizer(model, device=args.device, half=args.half, bf16=bf16, channels_last=args.channels_last,
                         tile=args.tile, overlap=args.overlap, max_size=args.max_size, preserve_color=args.preserve_color,
                         tile_stats=args.tile_stats, style=args.style, mix=args.mix, strength=args.strength,
                         style_images=args.style_image, threads=args.threads)


def run_video(args, model: Path, stylizer: Stylizer | None = None) -> int:
    """``fastmmd stylize MODEL clip.mp4 [--output out.mp4]``: each video (or one folder of frames) streamed."""
    sources = [Path(spec) for spec in args.inputs]
    for p in sources:
        if not p.exists():
            raise UserError(f"input {str(p)!r} does not exist")
        if not p.is_dir():
            regular_file(p, "input")  # before anything opens it: a FIFO blocks a reader forever
        if p.is_file() and not is_video(p):
            raise UserError(f"{str(p)!r} is not a video ({', '.join(VIDEO_SUFFIXES)}); stylize images and videos in "
                            "separate calls, and a folder of frames alone")
    inputs = [("input", p) for p in sources]
    out = Path(args.output_dir)
    if out.suffix.lower() in CONTAINERS and not out.is_dir():
        if len(sources) > 1:
            raise UserError(f"--output {str(out)!r} is one video file, but {len(sources)} inputs were given; "
                            "give a folder instead")
        targets = [check_output_file(out, inputs, CONTAINERS, "--output")]
    else:
        if out.suffix.lower() in VIDEO_SUFFIXES and not out.is_dir():
            raise UserError(f"fastmmd writes video as {', '.join(CONTAINERS)}, not {out.suffix}")
        out_dir = check_output_dir(out, inputs)
        if len(sources) == 1 and sources[0].is_dir():
            targets = [out_dir]  # frames in, frames out (named by the sink, through OutputNames too)
        else:
            names = OutputNames(sources)
            targets = [check_output_file(names.video(p, out_dir, CONTAINERS), inputs, CONTAINERS) for p in sources]
    stylizer = stylizer or _stylizer_from_args(args, model)
    for source, target in zip(sources, targets):
        result = stylize_video(stylizer, source, target, batch_size=args.batch_size, codec=args.codec, crf=args.crf,
                               audio=not args.no_audio, fps=args.fps, norm_stats=args.norm_stats or "frame",
                               momentum=args.norm_momentum, progress=not args.quiet,
                               metadata={"comment": f"fastmmd stylize {model.name}"})
        print(f"wrote {result.frames} frame(s) to {str(target)!r} ({result.fps:.1f} frames/s)", file=sys.stderr)
    return 0


def save_style(args, model: Path) -> Stylizer:
    """``--save-style FILE.npz``: writes the statistics of the one ``--style-image`` painting for reuse
    (:mod:`fastmmd.model.style_files`); returns the stylizer built for it (the painting's statistics
    computed once, for the inputs too)."""
    paintings = args.style_image or []
    if len(paintings) != 1:
        raise UserError(f"--save-style writes the statistics of one --style-image painting, not {len(paintings)}")
    if Path(paintings[0]).suffix.lower() == ".npz":
        raise UserError(f"--save-style: {paintings[0]!r} is a style file already; give the painting's image")
    check_output_file(args.save_style, [("--style-image", paintings[0])], (".npz",), "--save-style")
    stylizer = _stylizer_from_args(args, model)
    out = stylizer.painting_encoder("--save-style").write(stylizer.condition.style[0], args.save_style,
                                                          Path(paintings[0]).stem)
    print(f"wrote the statistics of {Path(paintings[0]).name} to {str(out)!r}", file=sys.stderr)
    return stylizer


def run(args) -> int:
    """Runs ``fastmmd stylize``; exit code 0, or 1 when some inputs were skipped."""
    from tqdm import tqdm

    if args.list:
        return print_styles()
    if not args.model or not (args.inputs or args.save_style):
        raise UserError("fastmmd stylize: give a MODEL (a file or a shipped style) and at least one INPUT image or "
                        "video, or --list for the shipped styles")
    model = resolve_model(args.model)
    stylizer = save_style(args, model) if args.save_style is not None else None
    if not args.inputs:
        return 0
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, not {args.threads}")
        torch.set_num_threads(args.threads)
    if any(is_video(spec) for spec in args.inputs) or is_video(args.output_dir) or args.norm_stats is not None:
        if args.grid:
            raise UserError("--grid draws images, not videos; give image inputs")
        return run_video(args, model, stylizer)
    files, problems = expand_inputs(list(args.inputs))
    if not files:
        raise UserError(f"no images to stylize: {'; '.join(problems) or 'no inputs'}")
    target = image_file_output(args.output_dir, files, WRITABLE_SUFFIXES)  # one photo, one named file
    if target is not None and args.grid:
        raise UserError(f"--grid writes its sheets into a folder; --output {args.output_dir!r} names an image file")
    out_dir = target.parent if target is not None else check_output_dir(args.output_dir)
    stylizer = stylizer or _stylizer_from_args(args, model)
    for line in problems:
        print(f"fastmmd stylize: skipped: {line}", file=sys.stderr)
    if args.grid:
        from fastmmd.infer.condition_grid import write_grids

        return write_grids(stylizer, files, out_dir, args.grid, model.name, len(problems))
    failures = len(problems)
    names = OutputNames(files)
    style = ", ".join(stylizer.metadata.get("style_images") or []) or "?"
    info = {"Software": "fastmmd stylize", "fastmmd:model": model.name, "fastmmd:style": style,
            **({"fastmmd:condition": stylizer.space.label(stylizer.condition)} if stylizer.space.conditioned else {})}
    bar = tqdm(total=len(files), unit="img", file=sys.stderr, disable=True if args.quiet else None, dynamic_ncols=True)
    pending: list[tuple[Path, Tensor, Image.Image | None]] = []

    def flush() -> None:
        nonlocal failures
        if not pending:
            return
        batch = torch.stack([t for _, t, _ in pending])
        for (src, _, alpha), out in zip(pending, stylizer.stylize_batch(batch)):
            dest = target or names.image(src, out_dir, alpha is not None)
            try:
                save_image(out, dest, metadata={**info, "fastmmd:source": src.name}, alpha=alpha)
            except OSError as err:
                tqdm.write(f"fastmmd stylize: could not write {str(dest)!r}: {err.strerror or err}", file=sys.stderr)
                failures += 1
        bar.update(len(pending))
        pending.clear()

    for src in files:
        try:
            rgb, alpha = open_image(src, with_alpha=True)
        except ImageError as err:
            tqdm.write(f"fastmmd stylize: skipped: {err}", file=sys.stderr)
            failures += 1
            bar.update(1)
            continue
        t = stylizer.fit(pil_to_tensor(rgb))
        if pending and (pending[0][1].shape != t.shape or len(pending) >= args.batch_size):
            flush()
        pending.append((src, t, alpha))
    flush()
    bar.close()
    written = len(files) - failures + len(problems)
    print(f"wrote {written} image(s) to {str(target or out_dir)!r}" + (f"; {failures} skipped" if failures else ""),
          file=sys.stderr)
    return 1 if failures else 0
