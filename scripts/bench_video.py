"""Benchmark video flicker: temporal error, style distance and frames/s per model and norm statistics.

Test clips are made from held-out still photos by known camera motion (:mod:`fastmmd.core.motion`: a
pan, a zoom in, a hand-held shake; all sub-pixel; plus brightness and pixel noise), encoded with
PyAV (H.264, CRF 18) like a camera file, and stylized by the real ``fastmmd stylize`` video path
(:func:`fastmmd.infer.video.stylize_video`). Because the motion is known, the flicker needs no optical
flow: ``temporal_error`` = mean |f(t+1) - warp(f(t))| over the pixels both frames show
(:func:`fastmmd.losses.metrics.temporal_error`; 0-1 RGB units). The input clip's own score (resampling,
noise, compression) is the floor. ``style_sw``/``content`` are ``fastmmd compare``'s metrics of 4
frames per clip (real Caffe VGG-19), so flicker is never "fixed" by removing style.

Every model runs with every ``--modes`` statistics (``frame``: per frame, the plain network;
``running``; ``clip``), and ratios are to the first model's ``frame`` row in the same run.

Usage::

    python scripts/bench_video.py --model starry_night --model out/stable/last.ckpt \\
        --style starry_night.jpg --photos still1.jpg still2.jpg --out out/video_bench
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastmmd.base.images import read_image, resize  # noqa: E402
from fastmmd.core import motion  # noqa: E402
from fastmmd.infer.stylize import load_stylizer  # noqa: E402
from fastmmd.infer.video import stylize_video  # noqa: E402
from fastmmd.losses.metrics import ImageScorer, temporal_error  # noqa: E402
from fastmmd.vgg.features import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(h), int(w)


def write_clip(frames: torch.Tensor, path: Path, rate: int = 24) -> None:
    """Encodes (T, 3, H, W) [0, 1] as H.264 CRF 18 (what a phone or camera file would hold)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate, options={"crf": "18"})
        s.height, s.width = frames.shape[-2:]
        s.pix_fmt = "yuv420p" if s.width % 2 == 0 and s.height % 2 == 0 else "yuv444p"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f.mul(255).round().byte().permute(1, 2, 0).contiguous().numpy(), format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def read_clip(path: Path) -> torch.Tensor:
    import av

    with av.open(str(path)) as c:
        return torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 255
                            for f in c.decode(c.streams.video[0])])


def make_clips(photos: list[str], motions: list[str], frames: int, height: int, width: int, folder: Path,
               gain: float, noise: float) -> list[dict]:
    clips = []
    for photo_path in photos:
        for m in motions:
            views = motion.camera_path(m, frames, seed=len(clips))
            need_h, need_w = motion.source_size(views, height, width)
            photo = read_image(photo_path)
            scale = max(need_h / photo.shape[1], need_w / photo.shape[2])
            photo = resize(photo, (max(need_h, round(photo.shape[1] * scale)), max(need_w, round(photo.shape[2] * scale))))
            clip = motion.render(photo, views, height, width, gain, noise, seed=len(clips))
            path = folder / f"{Path(photo_path).stem}_{m}.mp4"
            write_clip(clip, path)
            clips.append({"name": path.stem, "path": path, "views": views, "frames": read_clip(path)})
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="model file or shipped style (repeat)")
    parser.add_argument("--label", action="append", default=None, help="a name per --model for the table")
    parser.add_argument("--style", required=True, help="the style image, for the style distance")
    parser.add_argument("--photos", nargs="+", required=True, help="held-out stills to film (two in docs/benchmarks.md)")
    parser.add_argument("--motions", nargs="+", default=list(motion.MOTIONS))
    parser.add_argument("--modes", nargs="+", default=["frame", "running", "clip"])
    parser.add_argument("--size", default="320x240", help="frame size WxH")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--gain", type=float, default=0.01, help="per-frame brightness noise (std)")
    parser.add_argument("--noise", type=float, default=0.01, help="per-pixel noise (std)")
    parser.add_argument("--vgg-weights", default="caffe")
    parser.add_argument("--out", default=None, help="folder for clips, outputs and results.json (default: a temp folder)")
    args = parser.parse_args()
    labels = args.label or [Path(m).stem for m in args.model]
    if len(labels) != len(args.model):
        parser.error("give one --label per --model")
    height, width = parse_size(args.size)
    folder = Path(args.out or tempfile.mkdtemp(prefix="bench_video_"))
    folder.mkdir(parents=True, exist_ok=True)
    clips = make_clips(args.photos, args.motions, args.frames, height, width, folder, args.gain, args.noise)
    vgg = VGGFeatures(STYLE_LAYERS + CONTENT_LAYERS, args.vgg_weights).eval()
    scorer = ImageScorer(vgg, torch.device("cpu"), STYLE_LAYERS, CONTENT_LAYERS)
    style = scorer.reference("style", read_image(args.style, max(height, width)).unsqueeze(0))
    rows = []
    for clip in clips:
        rows.append({"clip": clip["name"], "model": "input", "mode": "-", "fps": None,
                     "temporal_error": float(temporal_error(clip["frames"], clip["views"]).mean())})
    for label, model in zip(labels, args.model):
        stylizer = load_stylizer(model, device="cpu")
        for mode in args.modes:
            for clip in clips:
                out = folder / f"{clip['name']}__{label}__{mode}.mp4"
                result = stylize_video(stylizer, clip["path"], out, batch_size=4, norm_stats=mode, progress=False)
                frames = read_clip(out)
                picks = torch.linspace(0, len(frames) - 1, 4).round().long().tolist()
                scores = [scorer(frames[i][None], style, scorer.reference(("c", clip["name"], i), clip["frames"][i][None]))
                          for i in picks]
                rows.append({"clip": clip["name"], "model": label, "mode": mode, "fps": result.fps,
                             "temporal_error": float(temporal_error(frames, clip["views"]).mean()),
                             "style_sw": sum(s["style_sw"] for s in scores) / len(scores),
                             "content": sum(s["content"] for s in scores) / len(scores)})
                print(json.dumps(rows[-1]), flush=True)
    summary = summarize(rows, labels[0])
    report = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
              "torch": torch.__version__, "size": args.size, "frames": args.frames, "gain": args.gain,
              "noise": args.noise, "models": dict(zip(labels, args.model)), "rows": rows, "summary": summary}
    (folder / "results.json").write_text(json.dumps(report, indent=1))
    print(table(summary))


def summarize(rows: list[dict], baseline: str) -> list[dict]:
    """Per (model, mode): means over clips, and ratios to ``baseline``'s frame mode per clip, averaged."""
    base = {r["clip"]: r for r in rows if r["model"] == baseline and r["mode"] == "frame"}
    floor = {r["clip"]: r["temporal_error"] for r in rows if r["model"] == "input"}
    out = []
    for key in dict.fromkeys((r["model"], r["mode"]) for r in rows if r["model"] != "input"):
        group = [r for r in rows if (r["model"], r["mode"]) == key]
        mean = lambda k: sum(r[k] for r in group) / len(group)  # noqa: E731
        ratio = lambda k: sum(r[k] / base[r["clip"]][k] for r in group) / len(group) if base else float("nan")  # noqa: E731
        out.append({"model": key[0], "mode": key[1], "fps": mean("fps"), "temporal_error": mean("temporal_error"),
                    "temporal_ratio": ratio("temporal_error"), "style_sw": mean("style_sw"), "style_ratio": ratio("style_sw"),
                    "content": mean("content"), "input_floor": sum(floor[r["clip"]] for r in group) / len(group)})
    return out


def table(summary: list[dict]) -> str:
    lines = ["| model | norm stats | frames/s | temporal error | x plain | style SW | x plain | content |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        lines.append(f"| {s['model']} | {s['mode']} | {s['fps']:.1f} | {s['temporal_error']:.4f} | {s['temporal_ratio']:.2f} | "
                     f"{s['style_sw']:.4f} | {s['style_ratio']:.2f} | {s['content']:.3f} |")
    if summary:
        lines.append(f"\ninput clips' own temporal error (the floor): {summary[0]['input_floor']:.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
