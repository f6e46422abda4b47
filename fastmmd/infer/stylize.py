"""Fast inference: stylize images with an exported model (.pt, .pt2, .onnx) or a training checkpoint.

The path is kept light (torch, Pillow and tqdm only; never Lightning or ``datasets``) so that
``fastmmd stylize`` starts quickly. Images of any size come out at their own size (the network
pads to a multiple of 4 and crops back); images whose activations would not fit in memory are
stylized in overlapping, blended tiles (:mod:`fastmmd.model.tiling`). Alpha channels, EXIF rotation,
grayscale and 16-bit inputs are handled by :func:`fastmmd.base.images.open_image`. ``preserve_color``
implements Gatys et al.'s luminance-only transfer ("Controlling Perceptual Factors in Neural Style
Transfer", 2017) as a post-filter: the output keeps the stylized luma Y and the content's chroma
Cb, Cr (full-range BT.601 YCbCr).

Python API: ``fastmmd.load_stylizer(path)(pil_image) -> pil_image``. Wherever a model file is
taken, a shipped style's name is too (``starry_night``, ``starry_night:pt2``; :mod:`fastmmd.infer.zoo`).
A network trained on several styles or with a strength input (:mod:`fastmmd.model.conditioning`) takes
``style``/``mix``/``strength`` (``--style``, ``--mix``, ``--strength``; ``--grid`` draws them,
:mod:`fastmmd.infer.condition_grid`).
"""

from __future__ import annotations

import copy
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from PIL import Image, ImageOps
from torch import Tensor

from fastmmd.base.devices import available_memory
from fastmmd.base.errors import ImageError, UserError
from fastmmd.base.images import (
    expand_inputs,
    fit_size,
    open_image,
    pil_to_tensor,
    resize,
    save_image,
    tensor_to_pil,
    to_rgb,
)
from fastmmd.base.inputs import regular_file
from fastmmd.base.outputs import OutputNames, check_output_dir, check_output_file
from fastmmd.commands.parsing import add_condition_flags
from fastmmd.core.color import preserve_color
from fastmmd.core.norm_stats import fixed_norm_statistics
from fastmmd.infer.conditions import Condition, ConditionSpace
from fastmmd.infer.video import CONTAINERS, VIDEO_SUFFIXES, is_video, stylize_video
from fastmmd.infer.zoo import print_styles, resolve_model
from fastmmd.model.files import open_onnx, read_network
from fastmmd.model.runtime import ExportedStylizer
from fastmmd.model.tiling import global_norm_statistics, stylize_tiled

MODEL_SUFFIXES = (".pt", ".pt2", ".onnx", ".ckpt")
#: Peak activation memory of TransformerNet inference, measured: about (8 w + 64) values per pixel.
_VALUES_PER_PIXEL_PER_WIDTH, _VALUES_PER_PIXEL = 8, 64
_MEMORY_FRACTION = {"cpu": 0.5, "cuda": 0.7}
_MIN_TILE = 64




def load_model(path: str | os.PathLike, device: torch.device, dtype: torch.dtype | None,
               channels_last: bool, threads: int | None = None) -> tuple[Callable[[Tensor], Tensor], dict[str, Any]]:
    """Loads a model as a float-0-1-in, float-0-1-out callable on ``device`` (+ its metadata).

    Nothing in the file runs: from a ``.ckpt``, ``.pt`` or ``.pt2`` only the weights and the
    description are read (:func:`fastmmd.model.files.read_network`) and fastmmd's own network runs
    them (``fastmmd export`` verified that the file's program computes the same); an ``.onnx``
    graph runs in onnxruntime.

    Args:
        path: exported ``.pt``/``.pt2``/``.onnx``, training ``.ckpt``, or a shipped style's name.
        device: where to run.
        dtype: float16/bfloat16 to run in, or None for the file's own precision (fp32 on CPU).
        channels_last: convert the weights to channels-last memory format.
        threads: onnxruntime's intra-op threads for an ``.onnx`` file (None: its default).
    """
    p = resolve_model(path)
    if not p.exists():
        raise UserError(f"model {str(p)!r} does not exist; give an exported .pt/.pt2 file or a training .ckpt")
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise UserError(f"{str(p)!r} is not a model file; give an exported .pt/.pt2/.onnx (fastmmd export) or a training .ckpt")
    if p.suffix.lower() == ".onnx":
        if device.type != "cpu" or dtype is not None:
            raise UserError(f"{str(p)!r} is an ONNX model; fastmmd runs it on the CPU in its stored precision "
                            "(drop --device cuda/--half/--bf16, or export to .pt/.pt2)")
        module, meta = open_onnx(p, threads)
        return module, {"format": "onnx", **meta}
    net, meta = read_network(p)
    meta = {"format": "checkpoint", "dtype": "float32", **meta}
    stored = getattr(torch, str(meta["dtype"]), torch.float32)
    module = ExportedStylizer(net.requires_grad_(False)).eval().to(device)
    if dtype is not None:
        module = module.to(dtype)
    elif device.type != "cpu" and stored.is_floating_point and stored != torch.float32:
        module = module.to(stored)  # the file's precision on GPUs (fp16 convolutions are very slow on CPU)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module, meta


class Stylizer:
    """Stylizes PIL images or tensor batches with a loaded model; see :func:`load_stylizer`."""

    def __init__(self, model: Callable[..., Tensor], metadata: dict[str, Any], device: torch.device,
                 channels_last: bool = False, tile: int | None = None, overlap: int | None = None,
                 max_size: int | None = None, preserve_color: bool = False, tile_stats: str = "tile",
                 condition: Condition = Condition()) -> None:
        if tile_stats not in ("global", "tile"):
            raise UserError(f"--tile-stats must be global or tile, not {tile_stats!r}")
        self.model = model
        self.space = ConditionSpace.of(metadata)  # the styles and strength range the model was trained on
        self.condition = condition
        self.tile_stats = tile_stats
        self.metadata = metadata
        self.device = device
        self.channels_last = channels_last
        self.tile = tile
        self.overlap = overlap
        self.max_size = max_size
        self.preserve_color = preserve_color
        self.min_size = int(metadata.get("min_size", 1))
        self._encoder: Any = None  # an arbitrary-style network's PaintingEncoder, built on first use
        itemsize = 2 if str(metadata.get("dtype")) in ("float16", "bfloat16") else 4  # int8 files compute in float32
        width = int((metadata.get("network") or {}).get("width", 32))
        self.bytes_per_pixel = (_VALUES_PER_PIXEL_PER_WIDTH * width + _VALUES_PER_PIXEL) * itemsize

    def conditioned(self, condition: Condition) -> "Stylizer":
        """This stylizer (same model, sharing its weights) asked for another style mix / strength."""
        twin = copy.copy(self)
        twin.condition = condition if condition.style is not None or self.condition.style is None else Condition(
            condition.mix, condition.strength, self.condition.style, self.condition.names)
        return twin

    def with_paintings(self, paintings: Sequence[Any], mix: str | None = None,
                       strength: float | None = None) -> "Stylizer":
        """An arbitrary-style network (:mod:`fastmmd.model.arbitrary`) asked for ``paintings`` (files, PIL
        images or (3, H, W) tensors): one, or several blended by ``mix`` (``"0.7,0.3"`` in their
        order, or ``"stem=0.7,..."``), at ``strength`` (None: this stylizer's). Their statistics are
        computed here, once (VGG-19 to relu5_1 per painting); the twin shares this one's weights.
        """
        if not self.space.arbitrary:
            raise UserError("--style-image: this model is trained for its own style(s), not for any painting "
                            "(an arbitrary-style network is; `fastmmd models` lists it)")
        paintings = list(paintings)
        if not paintings:
            raise UserError("--style-image needs at least one painting")
        names = [Path(p).stem if isinstance(p, (str, os.PathLike)) else f"painting{i}" for i, p in enumerate(paintings)]
        space = self.space.with_paintings(names)
        resolved = space.resolve(None, mix, self.condition.strength if strength is None else strength)
        if self._encoder is None:
            from fastmmd.model.arbitrary import PaintingEncoder

            self._encoder = PaintingEncoder(self.metadata, self.device)
        twin = copy.copy(self)
        twin.space = space
        twin.condition = Condition(resolved.mix, resolved.strength, self._encoder(paintings), tuple(names))
        return twin

    def _forward(self, x: Tensor, model: Callable[..., Tensor] | None = None) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        tensors = self.condition.tensors()
        args = (x,) if all(t is None for t in tensors) else (x, *tensors)
        with torch.inference_mode():
            return (model or self.model)(*args).float().cpu()

    def eager_model(self) -> ExportedStylizer | None:
        """The model as a module whose instance norms can be hooked for global tile statistics; None for ONNX."""
        return self.model if isinstance(self.model, ExportedStylizer) else None

    def _tiled(self, batch: Tensor, tile: int, overlap: int) -> Tensor:
        twin = self.eager_model() if self.tile_stats == "global" else None
        if twin is None:
            return stylize_tiled(self._forward, batch, tile, overlap)

        def run(x: Tensor) -> Tensor:
            return self._forward(x, twin)

        stats = global_norm_statistics(twin.net, run, batch, tile, overlap)
        with fixed_norm_statistics(twin.net, stats):
            return stylize_tiled(run, batch, tile, overlap)

    def auto_tile(self, batch: int, height: int, width: int) -> int | None:
        """The tile side to use for this batch: ``tile`` if set (0 = never), else one that fits in memory."""
        if self.tile is not None:
            return self.tile if self.tile > 0 and max(height, width) > self.tile else None
        budget = _MEMORY_FRACTION.get(self.device.type, 0.5) * available_memory(self.device)
        if batch * height * width * self.bytes_per_pixel <= budget:
            return None
        side = int(math.sqrt(budget / (batch * self.bytes_per_pixel))) // 32 * 32
        return max(_MIN_TILE, side)

    def stylize_tensor(self, batch: Tensor) -> Tensor:
        """(B, 3, H, W) RGB [0, 1] -> stylized (B, 3, H, W) float32 on the CPU, tiled if needed."""
        height, width = batch.shape[-2:]
        if self.space.arbitrary and self.condition.style is None:
            raise UserError("this is an arbitrary-style network: give a painting (--style-image PAINTING, or "
                            "stylizer(photo, style=painting))")
        if min(height, width) < self.min_size:
            raise UserError(f"this model needs images of at least {self.min_size} px per side, not {width}x{height}")
        tile = self.auto_tile(batch.shape[0], height, width)
        while True:
            try:
                if tile is None:
                    return self._forward(batch)
                overlap = self.overlap if self.overlap is not None else max(32, tile // 4)
                return self._tiled(batch, tile, min(overlap, tile // 2))
            except torch.OutOfMemoryError:
                if self.device.type != "cuda" or (tile is not None and tile <= _MIN_TILE):
                    raise
                torch.cuda.empty_cache()
                tile = max(_MIN_TILE, (tile or max(height, width)) // 2)

    def probe(self) -> "Stylizer":
        """Runs the model once on a small grey image, so that a file that cannot run, or returns
        something other than the batch, fails in one line before a command has written anything
        (compare, evaluate). Returns this stylizer."""
        side = max(self.min_size, 16)
        self.stylize_tensor(torch.full((1, 3, side, side), 0.5))
        return self

    def fit(self, rgb: Tensor) -> Tensor:
        """(3, H, W) [0, 1] downscaled to --max-size if it is larger (same-size images batch after this)."""
        if self.max_size and max(rgb.shape[1:]) > self.max_size:
            return resize(rgb, fit_size(rgb.shape[1], rgb.shape[2], self.max_size))
        return rgb

    def stylize_batch(self, batch: Tensor) -> Tensor:
        """(B, 3, H, W) of :meth:`fit` images -> stylized (B, 3, H, W), with --preserve-color."""
        out = self.stylize_tensor(batch)
        return preserve_color(out, batch) if self.preserve_color else out

    def stylize_image(self, rgb: Tensor) -> Tensor:
        """(3, H, W) [0, 1] -> (3, h, w) stylized, after --max-size and with --preserve-color."""
        return self.stylize_batch(self.fit(rgb).unsqueeze(0))[0]

    def __call__(self, image: Image.Image, style: Any = None) -> Image.Image:
        """Stylizes one PIL image (any mode: 16-bit, palette, ...; EXIF orientation applied); alpha is kept.
        ``style``: an arbitrary-style network's painting (a file, a PIL image, or a list to blend
        equally; :meth:`with_paintings` keeps their statistics for reuse)."""
        if style is not None:
            return self.with_paintings(style if isinstance(style, (list, tuple)) else [style])(image)
        rgb, alpha = to_rgb(ImageOps.exif_transpose(image))
        out = tensor_to_pil(self.stylize_image(pil_to_tensor(rgb)))
        if alpha is not None:
            out.putalpha(alpha.resize(out.size))
        return out


def load_stylizer(path: str | os.PathLike, device: str = "auto", half: bool = False, bf16: bool = False,
                  channels_last: bool | None = None, tile: int | None = None, overlap: int | None = None,
                  max_size: int | None = None, preserve_color: bool = False, tile_stats: str = "tile",
                  style: str | int | None = None, mix: str | None = None, strength: float | None = None,
                  style_images: Sequence[Any] | None = None, threads: int | None = None) -> Stylizer:
    """Loads an exported model or training checkpoint as ``Stylizer``: ``stylizer(pil_image) -> pil_image``.

    Args:
        path: ``.pt`` (TorchScript), ``.pt2`` (torch.export), ``.onnx``, training ``.ckpt``, or the
            name of a shipped style (``fastmmd models``; ``NAME:pt2`` for its ``.pt2``).
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``.
        half: run in float16 (GPU only: fp16 convolutions are ~30x slower than fp32 on CPU).
        bf16: run in bfloat16; refused (:class:`UserError`) on a CPU without bf16 instructions, where it
            would be emulated and far slower than fp32 (the rule: :mod:`fastmmd.base.precision`).
        channels_last: channels-last memory format; None = on for CUDA, off on CPU.
        tile: tile side in px; None = tile only when memory would not suffice; 0 = never.
        overlap: tile overlap in px; None = max(32, tile / 4).
        max_size: downscale images whose longer side exceeds this.
        preserve_color: keep the content's colours (luminance-only transfer).
        tile_stats: ``tile`` (default): each tile uses its own instance-norm statistics (one
            tiled pass; no seam at tile edges, measured in docs/benchmarks.md, but regions differ
            from the untiled result); ``global``: tiles are normalised with the whole image's
            statistics (matches the untiled output; 7-9x the time of a ``tile`` pass).
        style, mix, strength: for a network trained on several styles or with a strength input
            (:meth:`fastmmd.infer.conditions.ConditionSpace.resolve`): a style by name or index, a
            blend ``"a=0.7,b=0.3"`` (normalised to sum 1), the strength s (0 = the content, 1 = the
            trained default, up to the trained maximum). None = style 0 at strength 1.
        style_images: an arbitrary-style network's painting(s) (:meth:`Stylizer.with_paintings`;
            ``mix`` then weighs them); or give them later, ``stylizer(photo, style=painting)``.
        threads: CPU threads for an ``.onnx`` file's onnxruntime session (None: its default; torch's
            own threads are the caller's, ``torch.set_num_threads``).
    """
    from fastmmd.base.devices import resolve_device

    dev = resolve_device(device)
    if half and bf16:
        raise UserError("--half and --bf16 exclude each other; pick one")
    if half and dev.type == "cpu":
        raise UserError("--half needs a CUDA GPU (fp16 on CPU is ~30x slower than fp32); drop it or use --bf16")
    if bf16 and not half:
        from fastmmd.base.precision import require_fast_bf16

        require_fast_bf16(dev, "--bf16", "drop --bf16 (fp32 is the fast path there)")
    if tile is not None and 0 < tile < _MIN_TILE:
        raise UserError(f"--tile must be 0 (never tile) or at least {_MIN_TILE} px, not {tile}")
    if max_size is not None and max_size < 8:
        raise UserError(f"--max-size must be at least 8 px, not {max_size}")
    dtype = torch.float16 if half else torch.bfloat16 if bf16 else None
    cl = dev.type == "cuda" if channels_last is None else channels_last
    model, meta = load_model(path, dev, dtype, cl, threads)
    space = ConditionSpace.of(meta)
    condition = space.resolve(None if style is None else str(style), None if style_images else mix, strength)
    stylizer = Stylizer(model, meta, dev, channels_last=cl, tile=tile, overlap=overlap, max_size=max_size,
                        preserve_color=preserve_color, tile_stats=tile_stats, condition=condition)
    return stylizer.with_paintings(style_images, mix, strength) if style_images else stylizer


def build_parser():
    """``fastmmd stylize MODEL INPUT... --output-dir DIR`` and ``fastmmd stylize --list``."""
    from fastmmd.commands.parsing import CommandParser

    parser = CommandParser("fastmmd stylize", "Stylize images with a shipped style (--list), an exported model (.pt/.pt2/.onnx "
                           "from `fastmmd export`) or a training checkpoint (.ckpt). Outputs are <name>_stylized.png "
                           "(or the input's lossless suffix).")
    parser.add_argument("model", nargs="?", default=None, help="exported .pt / .pt2 / .onnx file, training .ckpt, or a "
                        "shipped style's name (--list shows them; NAME:pt2 picks its .pt2)")
    parser.add_argument("inputs", nargs="*", default=[], help="image files, folders or globs (quote globs such as 'photos/**/*.jpg')")
    parser.add_argument("--list", action="store_true", help="list the shipped styles (as `fastmmd models`) and exit")
    parser.add_argument("--output-dir", "--output", "-o", default="stylized", dest="output_dir",
                        help="folder for the results (created if missing); for one video, a video file (.mp4, .mov, "
                        ".mkv, .webm, .avi) may be named instead")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--half", action="store_true", help="float16 inference (GPU only)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 inference (CUDA with bf16, or a CPU with "
                        "AVX512-BF16/AMX; refused on other CPUs, where it would be far slower than fp32)")
    parser.add_argument("--channels-last", type=bool | None, default=None, help="channels-last memory format (default: on for CUDA)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per batch (same-size images are batched)")
    parser.add_argument("--max-size", type=int | None, default=None, help="downscale images whose longer side exceeds this (px)")
    parser.add_argument("--tile", type=int | None, default=None, help="tile side in px for large images (default: only when "
                        "memory would not suffice; 0: never tile)")
    parser.add_argument("--overlap", type=int | None, default=None, help="tile overlap in px (default: max(32, tile/4))")
    parser.add_argument("--tile-stats", type=Literal["global", "tile"], default="tile",
                        help="instance-norm statistics of tiles: tile (per tile, fast, no seams) or global "
                        "(whole image, matches the untiled output, 7-9x slower tiling)")
    parser.add_argument("--preserve-color", action="store_true", help="keep the content's colours (luminance-only transfer)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int | None, default=None, help="CPU threads (torch and onnxruntime; default: "
                        "theirs, one per core)")
    add_condition_flags(parser)
    video = parser.add_argument_group("video (inputs .mp4/.mov/.mkv/.webm/.gif/...; or a folder of frames with --norm-stats "
                                      "or a video --output)")
    video.add_argument("--norm-stats", type=Literal["frame", "running", "clip"] | None, default=None,
                       help="instance-norm statistics across frames: frame (default: each frame its own, as images), "
                       "running (a moving average) or clip (one set for the whole clip); measured: no less flicker, slower")
    video.add_argument("--norm-momentum", type=float, default=0.9, help="moving-average momentum of --norm-stats running")
    video.add_argument("--codec", default=None, help="video encoder (default: libx264; libvpx-vp9 for .webm)")
    video.add_argument("--crf", type=int | None, default=None, help="constant rate factor, lower = better and larger "
                       "(default: 18 for libx264, 30 for VP9)")
    video.add_argument("--no-audio", action="store_true", help="drop the audio (default: copied unchanged)")
    video.add_argument("--fps", type=float | None, default=None, help="frame rate of a folder of frames (default 25)")
    return parser


def _stylizer_from_args(args, model: Path) -> Stylizer:
    """The :class:`Stylizer` the command-line flags describe (images and video alike)."""
    return load_stylizer(model, device=args.device, half=args.half, bf16=args.bf16, channels_last=args.channels_last,
                         tile=args.tile, overlap=args.overlap, max_size=args.max_size, preserve_color=args.preserve_color,
                         tile_stats=args.tile_stats, style=args.style, mix=args.mix, strength=args.strength,
                         style_images=args.style_image, threads=args.threads)


def run_video(args, model: Path) -> int:
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
    stylizer = _stylizer_from_args(args, model)
    for source, target in zip(sources, targets):
        result = stylize_video(stylizer, source, target, batch_size=args.batch_size, codec=args.codec, crf=args.crf,
                               audio=not args.no_audio, fps=args.fps, norm_stats=args.norm_stats or "frame",
                               momentum=args.norm_momentum, progress=not args.quiet,
                               metadata={"comment": f"fastmmd stylize {model.name}"})
        print(f"wrote {result.frames} frame(s) to {str(target)!r} ({result.fps:.1f} frames/s)", file=sys.stderr)
    return 0


def run(args) -> int:
    """Runs ``fastmmd stylize``; exit code 0, or 1 when some inputs were skipped."""
    from tqdm import tqdm

    if args.list:
        return print_styles()
    if not args.model or not args.inputs:
        raise UserError("fastmmd stylize: give a MODEL (a file or a shipped style) and at least one INPUT image or "
                        "video, or --list for the shipped styles")
    model = resolve_model(args.model)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, not {args.threads}")
        torch.set_num_threads(args.threads)
    if any(is_video(spec) for spec in args.inputs) or is_video(args.output_dir) or args.norm_stats is not None:
        if args.grid:
            raise UserError("--grid draws images, not videos; give image inputs")
        return run_video(args, model)
    files, problems = expand_inputs(list(args.inputs))
    if not files:
        raise UserError(f"no images to stylize: {'; '.join(problems) or 'no inputs'}")
    out_dir = check_output_dir(args.output_dir)
    stylizer = _stylizer_from_args(args, model)
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
            dest = names.image(src, out_dir, alpha is not None)
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
    print(f"wrote {written} image(s) to {str(out_dir)!r}" + (f"; {failures} skipped" if failures else ""), file=sys.stderr)
    return 1 if failures else 0
