"""``fastmmd data``: training photos into a folder (:mod:`fastmmd.apps.fetch`)."""

from __future__ import annotations

from typing import Any

from fastmmd.apps.fetch import COCO, fetch_images


def build_parser() -> Any:
    """``fastmmd data NAME DIR [--split train] [--limit N]``."""
    from fastmmd.commands.parsing import CommandParser

    parser = CommandParser("fastmmd data", "Fetch training photos into a folder of JPEG files (for fit --data.root "
                           f"DIR): coco (Hugging Face {COCO}), any Hugging Face image dataset, or a local imagefolder. "
                           "Resumable: images already in DIR are skipped.")
    parser.add_argument("name", help="coco, a Hugging Face dataset name with an image column, or a local folder")
    parser.add_argument("dir", help="folder to write <index>.jpg files into (created if missing)")
    parser.add_argument("--split", default="train", help="the dataset split (its card lists them)")
    parser.add_argument("--column", default="image", help="the column holding the images")
    parser.add_argument("--subset", default=None, help="the dataset's configuration name, if it has several")
    parser.add_argument("--limit", type=int, default=None, help="fetch the first N images of the split (default: all)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality for images that are not JPEG already")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def run(args: Any) -> int:
    """Runs ``fastmmd data``; prints what was written."""
    counts = fetch_images(args.name, args.dir, split=args.split, column=args.column, subset=args.subset,
                          limit=args.limit, quality=args.quality, progress=not args.quiet)
    skipped = f", {counts['skipped']} unreadable skipped" if counts["skipped"] else ""
    print(f"{args.dir}: {counts['written']} images written, {counts['present']} already there{skipped}; "
          f"train with: fastmmd fit --config configs/cpu.yaml --data.root {args.dir} --model.style_images '[my_painting.jpg]'")
    return 0
