"""Learning curves from run folders: validation style and content distance against wall-clock minutes.

Reads each run's ``metrics.csv`` (``val/style_swd``, ``val/content_distance``, ``time/elapsed_s``,
logged by ``fastmmd fit`` at every validation) and draws one panel per metric, one line per run.
Needs matplotlib (not a dependency of fastmmd: ``pip install matplotlib``).

    python scripts/plot_curves.py out/warm/candy_scratch out/warm/candy_warm --output docs/images/curves.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def curve(run: Path) -> list[tuple[float, float, float]]:
    """(minutes, style_swd, content_distance) at each validation of ``run``."""
    rows = []
    with open(run / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r.get("val/style_swd") and r.get("time/elapsed_s"):
                rows.append((float(r["time/elapsed_s"]) / 60, float(r["val/style_swd"]), float(r["val/content_distance"])))
    return rows


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--output", default="curves.png")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in args.runs:
        points = curve(run)
        minutes = [p[0] for p in points]
        style = "--" if "scratch" in run.name else "-"
        axes[0].plot(minutes, [p[1] for p in points], style, marker=".", label=run.name)
        axes[1].plot(minutes, [p[2] for p in points], style, marker=".", label=run.name)
    for ax, name in zip(axes, ("style distance (val/style_swd)", "content distance (val/content_distance)")):
        ax.set_xlabel("wall-clock minutes")
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
