"""Tiled stylization: time and seams of ``--tile-stats tile`` vs ``global`` against the untiled result.

For each shipped style and photo, stylizes the photo untiled, in tiles with per-tile instance-norm
statistics (``tile``) and in tiles normalised with the whole image's statistics (``global``), and
prints per variant: seconds, mean/max |tiled - untiled|, and two seam ratios (mean jump across the
tile edges / mean jump across all columns or rows; 1 = the edges are as smooth as the rest, > 1 =
a seam): of the output itself (what is visible) and of tiled - untiled (the test's measure,
tests/test_stylize.py, which hides the image's own edges). The reference figures are in
docs/benchmarks.md ("Tile statistics").

Usage::

    python scripts/bench_tiles.py photo1.jpg photo2.jpg --size 512 --tile 192 --overlap 48
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor

from fastmmd.base.images import read_image
from fastmmd.infer.stylize import load_stylizer
from fastmmd.model.tiling import tile_spans


def seam_ratio(image: Tensor, cols: list[int]) -> float:
    """Mean jump across the given columns / mean jump across all columns of (B, C, H, W)."""
    g = (image[..., 1:] - image[..., :-1]).abs().mean(dim=(0, 1, 2))  # g[c]: between columns c and c+1
    return (g[[c - 1 for c in cols]].mean() / g.mean()).item()


def edges(length: int, tile: int, overlap: int) -> list[int]:
    spans = tile_spans(length, tile, overlap)
    return sorted({*(a for a, _ in spans[1:]), *(b for _, b in spans[:-1])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--styles", default="starry_night,composition_vii")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tile", type=int, default=192)
    parser.add_argument("--overlap", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for style in args.styles.split(","):
        for photo in args.photos:
            x = read_image(photo, args.size).unsqueeze(0)
            cols, rows = edges(x.shape[-1], args.tile, args.overlap), edges(x.shape[-2], args.tile, args.overlap)
            results = {}
            for name, kw in (("untiled", {"tile": 0}), ("tile", {"tile": args.tile, "tile_stats": "tile"}),
                             ("global", {"tile": args.tile, "tile_stats": "global"})):
                stylizer = load_stylizer(style, device="cpu", overlap=args.overlap, **kw)
                stylizer.stylize_tensor(x[..., :64, :64])  # warm-up
                start = time.perf_counter()
                results[name] = stylizer.stylize_tensor(x), time.perf_counter() - start
            full, seconds = results["untiled"]
            line = f"{style} / {Path(photo).stem} {x.shape[-1]}x{x.shape[-2]}: untiled {seconds:.2f} s"
            for name in ("tile", "global"):
                y, seconds = results[name]
                d = (y - full).abs()
                line += (f" | {name} {seconds:.2f} s, |d| mean {d.mean():.4f} max {d.max():.3f}, seams cols/rows: "
                         f"output {seam_ratio(y, cols):.2f}/{seam_ratio(y.transpose(-1, -2), rows):.2f} "
                         f"diff {seam_ratio(y - full, cols):.2f}/{seam_ratio((y - full).transpose(-1, -2), rows):.2f}")
            print(line, flush=True)


if __name__ == "__main__":
    main()
