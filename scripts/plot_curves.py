"""Learning curves from run folders: validation style and content distance against wall-clock minutes,
or against training images seen.

Reads each run's ``metrics.csv`` (``val/style_swd``, ``val/content_distance``, ``time/elapsed_s``,
``step``, logged by ``fastmmd fit`` at every validation) and draws one panel per metric, one line per
run. ``--images BATCH``: the x axis is images seen, (step + 1) x BATCH, and a run given as
``FOLDER+N`` continues a run that had already seen N images (a warm start from its weights), so
chained runs draw one curve. Needs matplotlib (not a dependency of fastmmd: ``pip install matplotlib``).

    python scripts/plot_curves.py out/warm/candy_scratch out/warm/candy_warm --output docs/images/curves.png
    python scripts/plot_curves.py runs/arbitrary runs/arbitrary-v2+4800 --images 4 --output curves.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def curve(run: Path, batch: int = 0, seen: int = 0) -> list[tuple[float, float, float]]:
    """(x, style_swd, content_distance) at each validation of ``run``: x is wall-clock minutes, or,
    with ``batch`` > 0, images seen, ``seen + (step + 1) batch``."""
    rows = []
    with open(run / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r.get("val/style_swd") and r.get("time/elapsed_s"):
                x = seen + (int(r["step"]) + 1) * batch if batch else float(r["time/elapsed_s"]) / 60
                rows.append((x, float(r["val/style_swd"]), float(r["val/content_distance"])))
    return rows


def parse_run(text: str) -> tuple[Path, int]:
    """``FOLDER`` or ``FOLDER+N`` (N images seen before this run) -> (folder, N)."""
    folder, plus, seen = text.rpartition("+")
    if plus and seen.isdigit():
        return Path(folder), int(seen)
    return Path(text), 0


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders (holding metrics.csv); FOLDER+N: N images seen before it")
    ap.add_argument("--images", type=int, default=0, metavar="BATCH",
                    help="x axis: images seen at batch size BATCH (default: wall-clock minutes)")
    ap.add_argument("--output", default="curves.png")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for text in args.runs:
        run, seen = parse_run(text)
        points = curve(run, args.images, seen)
        xs = [p[0] for p in points]
        style = "--" if "scratch" in run.name else "-"
        axes[0].plot(xs, [p[1] for p in points], style, marker=".", label=run.name)
        axes[1].plot(xs, [p[2] for p in points], style, marker=".", label=run.name)
    for ax, name in zip(axes, ("style distance (val/style_swd)", "content distance (val/content_distance)")):
        ax.set_xlabel("training images seen" if args.images else "wall-clock minutes")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    if args.title:
        fig.suptitle(args.title, fontsize=9)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
