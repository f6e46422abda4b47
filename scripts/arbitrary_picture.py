"""The README's picture of the arbitrary-style network: its outputs on paintings and photos it never
saw, next to Magenta's and per-image optimization's, from a ``scripts/bench_arbitrary.py`` folder.

One row per (painting, method): the network's output, Magenta's (if the benchmark ran the peer)
and ``optimize``'s, on each photo; the paintings and photos themselves are not drawn (they are the
evaluation set's, not the repository's), rows name them.

    python scripts/arbitrary_picture.py bench/arbitrary --model arbitrary --output docs/images/arbitrary.jpg

``--model`` repeated draws one row per network, named after it (the loss comparison's grid:
``--model loss-gram --model loss-linear ... --no-magenta``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from PIL import Image

    from fastmmd.base.grid import Layout, draw_grid

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", help="the --output folder of scripts/bench_arbitrary.py")
    ap.add_argument("--model", required=True, action="append",
                    help="a network's name in the benchmark (its file stem); repeat for one row per network")
    ap.add_argument("--no-magenta", action="store_true", help="leave out Magenta's rows")
    ap.add_argument("--paintings", type=int, default=4, help="how many of the benchmark's paintings to show")
    ap.add_argument("--tile", type=int, default=160, help="long edge of a tile in px")
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    bench = Path(args.bench)
    summary = json.loads((bench / "summary.json").read_text())
    photos = [Path(p).stem for p in summary["photos"]]
    rows, tiles, captions = [], {}, {}
    for painting in summary["paintings"][: args.paintings]:
        folder = bench / Path(painting).stem
        report = json.loads((folder / "report.json").read_text())
        methods = [("fastmmd" if len(args.model) == 1 else name,
                    {r["photo"]: folder / r["image"] for m in report["models"] if m["name"] == name for r in m["rows"]})
                   for name in args.model]
        if not args.no_magenta:
            methods.append(("magenta", {p: folder / "images" / "magenta" / f"{p}.png" for p in photos}))
        methods.append(("optimize", {r["photo"]: folder / r["image"] for r in report["optimize"]["rows"]}))
        for method, images in methods:
            if not all(images.get(p) is not None and images[p].is_file() for p in photos):
                continue
            for j, photo in enumerate(photos):
                image = Image.open(images[photo]).convert("RGB")
                image.thumbnail((args.tile, args.tile))
                tiles[(len(rows), j)] = image
            rows.append(f"{method}: {painting}")
    if not rows:
        raise SystemExit(f"no outputs of {', '.join(args.model)} in {str(bench)!r}")
    tile = max((t.size for t in tiles.values()), key=lambda s: s[0] * s[1])
    grid = draw_grid(rows, photos, tiles, tile)
    grid = grid.crop((0, Layout(len(rows), len(photos), tile).header_height - 4, grid.width, grid.height))  # no header
    grid.save(args.output, quality=88)
    print(f"wrote {args.output} ({len(rows)} rows x {len(photos)} photos)")


if __name__ == "__main__":
    main()
