"""``fastmmd export``: the command's flags and its run, importable without torch.

``fastmmd export --info NAME`` for a shipped style reads the metadata straight from the archive
(:func:`fastmmd.infer.zoo.shipped_metadata`), so it answers without importing torch; any other file, and
every export, goes through :mod:`fastmmd.infer.export` and :mod:`fastmmd.model.files`, imported here only
when needed (start-up times: docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional

from fastmmd.base.errors import UserError


def build_parser() -> Any:
    """``fastmmd export CKPT --output style.pt [--format ...] [--half]`` and ``fastmmd export --info FILE``."""
    from fastmmd.commands.parsing import CommandParser

    parser = CommandParser("fastmmd export", "Export a trained network to TorchScript (.pt), torch.export (.pt2) "
                           "or ONNX (.onnx), verified against the network before writing; or show a file's metadata.")
    parser.add_argument("checkpoint", nargs="?", default=None, help="training checkpoint (.ckpt) written by `fastmmd fit`; "
                        "or an exported .pt/.pt2 or a shipped style's name, re-exported in another format or storage "
                        "(e.g. `fastmmd export arbitrary --format onnx`, `fastmmd export starry_night --format pt2`)")
    parser.add_argument("--output", "-o", type=Optional[str], default=None, help="file to write; the suffix picks the format "
                        "unless --format is given; default: the source's name with the format's suffix (a shipped "
                        "style: NAME.SUFFIX in the current folder)")
    parser.add_argument("--format", type=Optional[Literal["torchscript", "pt2", "onnx"]], default=None,
                        help="torchscript (.pt) | pt2 (torch.export, .pt2) | onnx (.onnx); default: from --output's suffix")
    parser.add_argument("--weights", type=Optional[Literal["float32", "float16", "int8"]], default=None,
                        help="weight storage: float32; float16 (half the size; GPUs run it in fp16); int8 (a quarter: "
                        "8-bit weights with per-channel scales, computed in float32; outputs move by ~0.001); "
                        "default: float32 from a checkpoint, the source's own storage from an exported file")
    parser.add_argument("--half", action="store_true", help="the same as --weights float16")
    parser.add_argument("--calibrate", nargs="+", default=None, metavar="PHOTO",
                        help="ONNX only: compute the convolutions in int8 too (onnxruntime's QLinearConv), their "
                        "activation ranges calibrated on these photos (files, folders or globs; use photos like "
                        "those it will stylize); outputs move by a few 8-bit levels, recorded in the metadata")
    parser.add_argument("--info", default=None, help="print the metadata of an exported file (or a shipped style: "
                        "fastmmd models) and exit")
    return parser


def run(args: Any) -> int:
    """Runs ``fastmmd export``; returns the exit code."""
    if args.info:
        from fastmmd.infer.zoo import resolve_model, shipped_metadata

        meta = shipped_metadata(args.info)
        if meta is None:  # any file but an intact shipped style: checked whole, as every loader checks it
            from fastmmd.model.files import read_metadata

            meta = read_metadata(resolve_model(args.info))
        print(json.dumps(meta, indent=2, default=str))
        return 0
    if not args.checkpoint:
        raise UserError("fastmmd export: give a checkpoint (fastmmd export CKPT --output style.pt) or --info FILE")
    from fastmmd.infer.export import FORMATS, export_checkpoint
    from fastmmd.infer.zoo import resolve_model

    fmt = args.format
    source = resolve_model(args.checkpoint)  # a path as it is, or a shipped style's file (NAME: its .pt)
    named = args.checkpoint.split(":", 1)[0].lower() if source != Path(args.checkpoint) else None
    suffix = FORMATS[fmt or "torchscript"]
    output = args.output or (named + suffix if named else str(source.with_suffix(suffix)))
    photos = None
    if args.calibrate:
        from fastmmd.base.images import expand_inputs

        photos, problems = expand_inputs(list(args.calibrate))
        if problems or not photos:
            raise UserError(f"--calibrate: {'; '.join(problems) or 'no photos'}")
    meta = export_checkpoint(source, output, fmt=fmt, half=args.half, weights=args.weights, calibration=photos)
    size = Path(output).stat().st_size
    parity = f"max |exported - eager| = {meta['parity_max_abs_diff']:.2g}"
    if "int8_compute" in meta:  # stated parity (fastmmd.infer.quantize)
        parity = (f"mean / max |exported - eager| on the calibration photos = "
                  f"{meta['int8_compute']['mean_abs_diff']:.2g} / {meta['parity_max_abs_diff']:.2g}")
    print(f"wrote {output} ({meta['format']}, {meta['dtype']}{', int8 compute' if 'int8_compute' in meta else ''}, "
          f"{size / 1e6:.2f} MB, {meta['parameters']:,} parameters, {parity})")
    return 0
