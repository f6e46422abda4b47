"""Per-image optimization speed and memory: fastmmd vs a naive baseline vs pastiche, same run.

Variants (each in its own subprocess, so peak RSS is per variant; same content/style/size, Gram
loss, L-BFGS with one evaluation per step):

* ``naive``: full untruncated VGG-19 (all 37 layers), style and content targets recomputed every
  step, fp32, NCHW: what a straightforward script does.
* ``ours-fp32``: fastmmd's StyleCriterion: VGG truncated at relu5_1, targets cached, channels_last.
* ``ours-bf16``: the same under bfloat16 autocast (statistics and optimizer in fp32).
* ``pastiche``: the pastiche package (same Caffe VGG-19, Gram loss, L-BFGS), the peer to beat.

Quality of bf16: both fastmmd variants run ``--quality-iterations`` steps from the same start; the
final images are scored with the fp32 criterion; the ratio of the two losses is reported.

    python scripts/bench_optimize.py --data DATA --sizes 256,512 --iterations 10 --quality-iterations 60

DATA (or ``$FASTMMD_DATA``): a folder with ``content/<--content>`` and ``styles/<--style>``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch


def run_variant(args) -> dict:
    from fastmmd.apps.optimize import optimize_image
    from fastmmd.base.images import read_image
    from fastmmd.losses import StyleLoss
    from fastmmd.losses.criterion import StyleCriterion

    content_path = Path(args.data) / "content" / args.content
    style_path = Path(args.data) / "styles" / args.style
    content = read_image(content_path, args.size).unsqueeze(0)
    style = read_image(style_path, args.size).unsqueeze(0)
    n = args.iterations
    if args.variant == "pastiche":
        from pastiche.pastiche import PasticheArtist

        artist = PasticheArtist(str(content_path), [str(style_path)], size=args.size, device="cpu", optimizer="lbfgs")
        artist.draw()  # warm-up
        start = time.perf_counter()
        for _ in range(n):
            artist.draw()
        seconds = time.perf_counter() - start
    elif args.variant == "naive":
        seconds = naive(content, style, n)
    else:
        crit = StyleCriterion(StyleLoss("gram", style_weight=5.0))
        crit.set_style([style])
        crit.set_content(content)
        precision = "bf16" if args.variant == "ours-bf16" else "32"
        optimize_image(crit, content, "lbfgs", 1, precision=precision)  # warm-up
        result = optimize_image(crit, content, "lbfgs", n, precision=precision)
        seconds = result.seconds
        if args.quality_iterations:
            q = optimize_image(crit, content, "lbfgs", args.quality_iterations, precision=precision)
            with torch.no_grad():
                final = float(crit(q.image)["total"].sum())  # scored in fp32
            return {"sec_per_it": seconds / n, "quality_loss_fp32": final, "maxrss_mb": maxrss()}
    return {"sec_per_it": seconds / n, "maxrss_mb": maxrss()}


def naive(content: torch.Tensor, style: torch.Tensor, n: int) -> float:
    """Full VGG-19, targets recomputed each step, fp32, NCHW, plain Gram loss (Gatys-style script)."""
    from fastmmd.vgg.features import LAYER_NAMES, build_vgg19
    from fastmmd.vgg.weights import CaffePreprocess, caffe_state_dict

    vgg = build_vgg19()
    vgg.load_state_dict(caffe_state_dict(vgg))
    vgg.requires_grad_(False)
    pre = CaffePreprocess()
    style_idx = [LAYER_NAMES.index(t) for t in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")]
    content_idx = LAYER_NAMES.index("relu4_2")

    def all_layers(img):
        outs, x = [], pre(img)
        for layer in vgg:  # every layer, up to pool5
            x = layer(x)
            outs.append(x)
        return outs

    def gram(f):
        b, c, h, w = f.shape
        f = f.view(c, h * w)
        return f @ f.T / (h * w)

    x = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=100)

    def closure():
        opt.zero_grad()
        s_feats, c_feats = all_layers(style), all_layers(content)  # recomputed every step
        g_feats = all_layers(x)
        loss = sum(((gram(g_feats[i]) - gram(s_feats[i])) ** 2).sum() / (4 * g_feats[i].shape[1] ** 2) / gram(s_feats[i]).pow(2).sum() * 4 * g_feats[i].shape[1] ** 2 for i in style_idx)
        loss = 5.0 * loss / len(style_idx) + ((g_feats[content_idx] - c_feats[content_idx]) ** 2).mean() / c_feats[content_idx].pow(2).mean()
        loss.backward()
        return loss

    opt.step(closure)  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        opt.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
    return time.perf_counter() - start


def maxrss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description="fastmmd optimize benchmark")
    p.add_argument("--data", default=os.environ.get("FASTMMD_DATA"),
                   help="folder with content/ and styles/ (default: $FASTMMD_DATA)")
    p.add_argument("--content", default="tubingen.jpg")
    p.add_argument("--style", default="starry_night.jpg")
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--quality-iterations", type=int, default=60)
    p.add_argument("--variants", default="naive,ours-fp32,ours-bf16,pastiche")
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    if not args.data:
        p.error("give --data DIR (or set FASTMMD_DATA): a folder with content/ and styles/")
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    results = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        for variant in args.variants.split(","):
            q = args.quality_iterations if variant.startswith("ours") and size == min(int(s) for s in args.sizes.split(",")) else 0
            cmd = [sys.executable, __file__, "--variant", variant, "--size", str(size), "--data", args.data,
                   "--content", args.content, "--style", args.style, "--iterations", str(args.iterations),
                   "--quality-iterations", str(q)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{variant} @ {size}: failed\n{out.stderr[-2000:]}")
                continue
            results[f"{variant}@{size}"] = r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{size:4d}px {variant:10s} {r['sec_per_it'] * 1000:8.1f} ms/it   peak RSS {r['maxrss_mb']:7.0f} MB"
                  + (f"   fp32-scored loss after {q} it: {r['quality_loss_fp32']:.4f}" if "quality_loss_fp32" in r else ""), flush=True)
        base = results.get(f"naive@{size}")
        for variant in ("ours-fp32", "ours-bf16", "pastiche"):
            r = results.get(f"{variant}@{size}")
            if base and r:
                print(f"  speed-up {variant} vs naive at {size}px: {base['sec_per_it'] / r['sec_per_it']:.2f}x")
        for variant in ("ours-fp32", "ours-bf16"):
            r, peer = results.get(f"{variant}@{size}"), results.get(f"pastiche@{size}")
            if r and peer:
                print(f"  speed-up {variant} vs pastiche at {size}px: {peer['sec_per_it'] / r['sec_per_it']:.2f}x")
    a, b = results.get(f"ours-fp32@{args.sizes.split(',')[0]}", {}), results.get(f"ours-bf16@{args.sizes.split(',')[0]}", {})
    if "quality_loss_fp32" in a and "quality_loss_fp32" in b:
        print(f"  bf16 quality: fp32-scored final loss bf16/fp32 = {b['quality_loss_fp32'] / a['quality_loss_fp32']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
