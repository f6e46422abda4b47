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
                        "or an exported .pt/.pt2 or a shipped style's name, re-exported (e.g. `fastmmd export arbitrary "
                        "--format onnx`)")
    parser.add_argument("--output", "-o", type=Optional[str], default=None, help="file to write; the suffix picks the format "
                        "unless --format is given; default: the checkpoint's name with the format's suffix")
    parser.add_argument("--format", type=Optional[Literal["torchscript", "pt2", "onnx"]], default=None,
                        help="torchscript (.pt) | pt2 (torch.export, .pt2) | onnx (.onnx); default: from --output's suffix")
    parser.add_argument("--weights", type=Literal["float32", "float16", "int8"], default="float32",
                        help="weight storage: float32; float16 (half the size; GPUs run it in fp16); int8 (a quarter: "
                        "8-bit weights with per-channel scales, computed in float32; outputs move by ~0.001)")
    parser.add_argument("--half", action="store_true", help="the same as --weights float16")
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

    fmt = args.format
    stem = args.checkpoint if Path(args.checkpoint).exists() else args.checkpoint.split(":")[0]  # a file, or a style's name
    output = args.output or str(Path(stem).with_suffix(FORMATS[fmt or "torchscript"]))
    meta = export_checkpoint(args.checkpoint, output, fmt=fmt, half=args.half, weights=args.weights)
    size = Path(output).stat().st_size
    print(f"wrote {output} ({meta['format']}, {meta['dtype']}, {size / 1e6:.2f} MB, "
          f"{meta['parameters']:,} parameters, max |exported - eager| = {meta['parity_max_abs_diff']:.2g})")
    return 0
