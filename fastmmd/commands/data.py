"""``fastmmd data``: training photos into a folder (:mod:`fastmmd.apps.fetch`), and the shipped styles'
paintings (``fastmmd data paintings``, :mod:`fastmmd.apps.download`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastmmd.apps.fetch import COCO
from fastmmd.base.errors import UserError, did_you_mean

#: The ``NAME`` that means the shipped styles' paintings (a local folder of that name: ``./paintings``).
PAINTINGS = "paintings"


def build_parser() -> Any:
    """``fastmmd data NAME DIR [--split train] [--limit N]``, or ``fastmmd data paintings [STYLE ...] [DIR]``."""
    from fastmmd.commands.parsing import CommandParser

    parser = CommandParser(
        "fastmmd data",
        "Fetch training photos into a folder of JPEG files (for fit --data.root "
        f"DIR): coco (Hugging Face {COCO}), any Hugging Face image dataset, or a local imagefolder. "
        "Resumable: images already in DIR are skipped. `fastmmd data paintings [STYLE ...] [DIR]` "
        "downloads the shipped styles' paintings (all, or the named ones; checked by SHA-256) into "
        "the folder where --style NAME finds them ($FASTMMD_PAINTINGS, else "
        "$XDG_CACHE_HOME/fastmmd/paintings).",
    )
    parser.add_argument(
        "name",
        help="coco, a Hugging Face dataset name with an image column, a local folder, or "
        f"{PAINTINGS} (the shipped styles' paintings; a folder of that name: ./{PAINTINGS})",
    )
    parser.add_argument(
        "dir",
        nargs="*",
        metavar="DIR",
        help="folder to write <index>.jpg files into (created if "
        f"missing); for {PAINTINGS}: [STYLE ...] [DIR], style names and optionally a folder (a path "
        "with a '/', or an existing folder; default: the paintings folder)",
    )
    parser.add_argument("--split", default="train", help="the dataset split (its card lists them)")
    parser.add_argument("--column", default="image", help="the column holding the images")
    parser.add_argument("--subset", default=None, help="the dataset's configuration name, if it has several")
    parser.add_argument("--limit", type=int, default=None, help="fetch the first N images of the split (default: all)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality for images that are not JPEG already")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def paintings_words(words: list[str]) -> tuple[list[str], str | None]:
    """``fastmmd data paintings``'s words as (style names, folder or None): a word is a style name (or
    ``all``) unless it reads as a path (a ``/``, a leading ``.`` or ``~``, or an existing folder).

    Raises:
        UserError: two folders, or a word that is neither a painting's name nor a path.
    """
    from fastmmd.base.paintings import shipped_paintings

    known = shipped_paintings()
    names, folder = [], None
    for word in words:
        if word.lower() in known or word.lower() == "all":
            names.append(word.lower())
        elif os.sep in word or "/" in word or word.startswith((".", "~")) or Path(word).is_dir():
            if folder is not None:
                raise UserError(f"fastmmd data {PAINTINGS}: two folders, {folder!r} and {word!r}; give at most one DIR")
            folder = word
        else:
            raise UserError(
                f"fastmmd data {PAINTINGS}: {word!r} is no shipped style's painting"
                f"{did_you_mean(word.lower(), known)} (the paintings: {', '.join(known)}; a folder: "
                f"./{word})"
            )
    return names, folder


def run_paintings(args: Any) -> int:
    """Runs ``fastmmd data paintings``; prints what was downloaded and how to use it."""
    from fastmmd.apps.download import download_paintings
    from fastmmd.base.inputs import printable
    from fastmmd.base.paintings import ENV_VAR, paintings_dir, shipped_paintings

    defaults = {"split": "train", "column": "image", "subset": None, "limit": None, "quality": 90}
    for key, default in defaults.items():
        if getattr(args, key) != default:
            raise UserError(f"--{key} is for datasets of photos; fastmmd data {PAINTINGS} takes style names and a DIR")
    names, folder = paintings_words(args.dir)
    done = download_paintings(names, folder, progress=not args.quiet)
    target = Path(folder).expanduser() if folder is not None else paintings_dir()
    listed = shipped_paintings()
    print(f"{target}:")
    for name in [*done["downloaded"], *done["present"]]:
        painting = listed[name]
        state = "downloaded" if name in done["downloaded"] else "already there"
        print(
            f"  {printable(painting.file, 60):<22} {state:<14} {printable(painting.describe(), 100)}; "
            f"{printable(painting.license or '?', 80)}"
        )
    first = (done["downloaded"] or done["present"])[0]
    print(
        f"{len(done['downloaded'])} paintings downloaded, {len(done['present'])} already there; use one by name: "
        f"fastmmd optimize --content photo.jpg --style {first} --output out.png"
    )
    if folder is not None and Path(folder).expanduser().resolve() != paintings_dir().resolve():
        print(f"names are looked up in {str(paintings_dir())!r}: set {ENV_VAR}={folder} to use these")
    return 0


def run(args: Any) -> int:
    """Runs ``fastmmd data``; prints what was written."""
    if args.name == PAINTINGS:
        return run_paintings(args)
    from fastmmd.apps.fetch import fetch_images

    if len(args.dir) != 1:
        raise UserError(
            f"fastmmd data {args.name}: give one DIR (the folder to write into), not {len(args.dir)}"
            + (f" ({' '.join(args.dir)[:120]})" if args.dir else "")
        )
    folder = args.dir[0]
    counts = fetch_images(
        args.name,
        folder,
        split=args.split,
        column=args.column,
        subset=args.subset,
        limit=args.limit,
        quality=args.quality,
        progress=not args.quiet,
    )
    skipped = f", {counts['skipped']} unreadable skipped" if counts["skipped"] else ""
    print(
        f"{folder}: {counts['written']} images written, {counts['present']} already there{skipped}; "
        f"train with: fastmmd fit --config configs/cpu.yaml --data.root {folder} --model.style_images '[my_painting.jpg]'"
    )
    return 0
