"""Feed-forward training speed and memory: fastmmd's step vs a naive baseline, same run.

One training step = network forward, style/content/TV loss through VGG-19 (Caffe weights), backward,
Adam update, for a batch of ``--batch`` random ``--size``² images, TransformerNet width 32 with 5
residual blocks, Gram loss. Variants (each in its own subprocess, so peak RSS is per variant):

* ``naive``: the pytorch/examples fast_neural_style loop: fp32, NCHW, VGG run twice (generated and
  content, both through relu5_1), style Gram targets recomputed from the style image every step.
* ``ours-fp32``: fastmmd's StyleTransferModule step as it was before issue 29 (StyleCriterion:
  style targets cached, content through VGG without gradients and only up to relu4_2), VGG in
  channels_last, the network in NCHW throughout, fp32.
* ``cpu-fp32``: what ``fit`` runs on a CPU without bf16 instructions (``--trainer.precision auto``
  resolves to 32): ``ours-fp32`` with the network's last conv on channels_last input
  (``TransformerNet.set_layout(rgb_out_channels_last=True)``, the default) and, where
  ``fastmmd.base.precision.cpu_nnpack_is_faster`` holds (AVX2 kernels), VGG's convs on maps of 32 px
  and more through NNPACK (``StyleTransferModule.use_fast_convolutions``, as ``fit`` calls it).
* ``onednn-fp32``: ``cpu-fp32`` with every conv in oneDNN (no NNPACK): what NNPACK buys.
* ``ours-bf16``: the step under bfloat16 autocast (statistics and losses stay fp32), what
  ``--trainer.precision bf16-mixed`` runs (with the default layout, as ``cpu-fp32``).
* ``nchw-out-bf16``: ``ours-bf16`` with the last conv on NCHW input, as before issue 29: what the
  channels_last last conv does to bf16.
* ``all-cl-bf16``: ``ours-bf16`` with the network and its inputs in channels_last too
  (``model.channels_last: all``).
* ``joint-bf16``: like ``ours-bf16`` but VGG runs once over generated and content images together
  (content rows detached), to decide which of the two is faster.
* ``compile-bf16``: ``ours-bf16`` with the network and VGG wrapped in ``torch.compile`` (inductor;
  on the CPU it needs a C++ compiler). Warm-up steps include the compilation.
* ``all-cl-compile-bf16``: ``compile-bf16`` with the network in channels_last too.
* ``unfolded-compile-bf16``: ``compile-bf16`` with the network's upsampling convs computed as written
  (upsample, then a 3x3 conv; ``TransformerNet.set_layout``, as the naive loop does) instead of
  folded (``fastmmd.model.networks.folded_upsample_conv``): what the fold buys in training.
* ``compile-fp32``: ``onednn-fp32`` with the network and VGG wrapped in ``torch.compile`` (as
  ``model.compile: true`` trains: NNPACK stays off under compile).

Levers tried for fp32 on CPUs without bf16 instructions, each ``onednn-fp32`` with one change
(docs/benchmarks.md, "bf16 without bf16 instructions", says which paid):

* ``all-cl-fp32``: the whole network and its inputs in channels_last (``model.channels_last: all``).
* ``nchw-vgg-fp32``: VGG in NCHW (``model.channels_last: none``; the network's last conv still channels_last).
* ``aten-conv-fp32``: oneDNN off (``torch.backends.mkldnn.enabled = False``): ATen's own convolutions.
* ``compile-vgg-fp32`` / ``compile-net-fp32``: ``torch.compile`` on VGG only / the network only.
* ``autotune-fp32``: both compiled with ``mode="max-autotune-no-cudagraphs"``.

On the CPU, the ``*-bf16`` variants are skipped (one line each) where the CPU has no bf16
instructions (``fastmmd.base.precision.cpu_bf16_is_fast``): emulated bf16 would only measure a crawl.

``--rounds N`` runs the whole list N times, interleaved, and pools each variant's timed steps: the
ratios then hold even when the box's speed drifts during the run (it did here by 1.4x between two
runs an hour apart).

``--device cuda`` runs every variant on the GPU (autocast on CUDA, timings synchronised, peak memory
from ``torch.cuda.max_memory_allocated``); ``--batch`` takes a comma-separated list.

Besides wall time per step, the CPU time of the variant's process per step is measured
(``time.process_time``): with ``--threads 1`` it is the step's work alone, steadier than wall time
on a box shared with other work (both are printed; each ratio to naive is given on both).

Peak memory is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the variant's process (resident
set, includes the ~0.5 GB of torch itself). Quality of bf16: the fp32 criterion scores the network
after ``--quality-steps`` steps trained each way from the same start; the ratio is reported.

    python scripts/bench_train.py --size 128 --steps 5
    python scripts/bench_train.py --size 256 --steps 3 --quality-steps 0
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import Tensor, nn

VARIANTS = ("naive", "ours-fp32", "cpu-fp32", "ours-bf16", "nchw-out-bf16", "all-cl-bf16", "joint-bf16", "compile-bf16",
            "all-cl-compile-bf16", "unfolded-compile-bf16", "compile-fp32", "all-cl-fp32", "nchw-vgg-fp32",
            "aten-conv-fp32", "onednn-fp32", "compile-vgg-fp32", "compile-net-fp32", "autotune-fp32")


def style_image(size: int) -> Tensor:
    """A smooth colourful pattern (1, 3, size, size): self-contained, no files needed."""
    g = torch.Generator().manual_seed(1)
    low = torch.rand(1, 3, 8, 8, generator=g)
    return nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def content_batch(batch: int, size: int, step: int) -> Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(100 + step))


# --------------------------------------------------------------------------------------- naive
def gram(x: Tensor) -> Tensor:
    b, c, h, w = x.shape
    f = x.reshape(b, c, h * w)
    return f.bmm(f.transpose(1, 2)) / (c * h * w)


def naive_step(net, vgg, optimizer, content: Tensor, style: Tensor, style_weight: float) -> float:
    """pytorch/examples fast_neural_style, with targets recomputed each step (no caching)."""
    from fastmmd.vgg.features import STYLE_LAYERS

    optimizer.zero_grad()
    y = net(content)
    features_y = vgg(y)  # with gradients, to relu5_1
    features_x = vgg(content)  # full second pass, same depth
    with torch.no_grad():
        features_s = vgg(style)
    content_loss = nn.functional.mse_loss(features_y["relu4_2"], features_x["relu4_2"].detach())
    style_loss = sum(nn.functional.mse_loss(gram(features_y[t]), gram(features_s[t]).expand(y.shape[0], -1, -1))
                     for t in STYLE_LAYERS)
    loss = content_loss + style_weight * style_loss
    loss.backward()
    optimizer.step()
    return float(loss)


# --------------------------------------------------------------------------------------- joint pass
class JointVGG(nn.Module):
    """Runs VGG once over [generated; content]; the criterion's second (content) call gets the stash."""

    def __init__(self, vgg: nn.Module) -> None:
        super().__init__()
        self.inner, self.content, self.stash = vgg, None, None
        self.taps = vgg.taps

    def forward(self, image: Tensor, taps=None):
        if self.stash is not None:  # the criterion's no-grad content call
            out, self.stash = {t: self.stash[t] for t in taps}, None
            return out
        if self.content is None:  # set_style etc.
            return self.inner(image, taps)
        b = image.shape[0]
        feats = self.inner(torch.cat([image, self.content]), taps)
        self.stash = {t: v[b:].detach() for t, v in feats.items()}
        self.content = None
        return {t: v[:b] for t, v in feats.items()}

    def parameters(self, recurse: bool = True):
        return self.inner.parameters(recurse)


# --------------------------------------------------------------------------------------- variants
def build(variant: str, size: int, width: int, style_weight: float, seed: int = 0, device: str = "cpu"):
    from fastmmd.losses import StyleLoss
    from fastmmd.train.module import StyleTransferModule

    torch.manual_seed(seed)
    layout = {"naive": "none", "nchw-vgg-fp32": "none", "all-cl-bf16": "all", "all-cl-compile-bf16": "all",
              "all-cl-fp32": "all"}.get(variant, "vgg")
    module = StyleTransferModule(["<bench>"], image_size=size, network_width=width, loss=StyleLoss(style_weight=style_weight),
                                 channels_last=layout)
    if variant == "joint-bf16":
        module.criterion.vgg = JointVGG(module.criterion.vgg)
    if variant == "naive":  # pytorch/examples: every layer as written
        module.network.set_layout(fold_upsampling=False, rgb_space_to_depth=1, rgb_out_channels_last=False)
    if variant in ("ours-fp32", "nchw-out-bf16"):  # the layout before issue 29
        module.network.set_layout(rgb_out_channels_last=False)
    if variant == "unfolded-compile-bf16":
        module.network.set_layout(fold_upsampling=False)
    if variant == "aten-conv-fp32":
        torch.backends.mkldnn.enabled = False
    module = module.to(device)
    if variant != "naive":
        module.criterion.set_style([style_image(size).to(device)])
    if variant == "cpu-fp32":  # as fit does when it starts
        module.use_fast_convolutions("32-true")
    optimizer = torch.optim.Adam(module.network.parameters(), lr=1e-3)
    mode = "max-autotune-no-cudagraphs" if variant == "autotune-fp32" else None
    if "compile" in variant and variant != "compile-vgg-fp32" or variant == "autotune-fp32":
        module.network = torch.compile(module.network, mode=mode)
    if "compile" in variant and variant != "compile-net-fp32" or variant == "autotune-fp32":
        module.criterion.vgg = torch.compile(module.criterion.vgg, mode=mode)
    return module, optimizer


def ours_step(module, optimizer, content: Tensor, bf16: bool) -> float:
    optimizer.zero_grad()
    if isinstance(module.criterion.vgg, JointVGG):
        module.criterion.vgg.content = content
    with torch.autocast(content.device.type, dtype=torch.bfloat16, enabled=bf16):
        _, terms = module._terms(content)  # puts content in channels_last when the module uses "all"
        loss = terms["total"].mean()
    loss.backward()
    optimizer.step()
    return float(loss)


def run_variant(args) -> dict:
    torch.set_num_threads(args.threads)
    if args.cudnn_benchmark is not None:  # naive keeps torch's default (off), as pytorch/examples
        torch.backends.cudnn.benchmark = args.cudnn_benchmark and args.variant != "naive"
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    module, optimizer = build(args.variant, args.size, args.width, args.style_weight, device=args.device)
    style = style_image(args.size).to(device)
    if args.variant == "naive":
        vgg = module.criterion.vgg
        step = lambda c: naive_step(module.network, vgg, optimizer, c, style, args.style_weight)  # noqa: E731
    else:
        step = lambda c: ours_step(module, optimizer, c, args.variant.endswith("bf16"))  # noqa: E731
    compiled = "compile" in args.variant or "autotune" in args.variant
    warmup = args.warmup + (2 if compiled else 0)  # compile, then recompile-free steps
    for i in range(warmup):
        step(content_batch(args.batch, args.size, i).to(device))
    sync()
    times, cpu_times = [], []
    for i in range(args.steps):
        c = content_batch(args.batch, args.size, 1000 + i).to(device)
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        step(c)
        sync()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result = {"variant": args.variant, "seconds_per_step": statistics.median(times), "times": times,
              "cpu_seconds_per_step": statistics.median(cpu_times), "cpu_times": cpu_times,
              "images_per_s": args.batch / statistics.median(times), "peak_rss_mb": peak}
    if args.quality_steps and args.variant in ("ours-fp32", "ours-bf16"):
        module, optimizer = build(args.variant, args.size, args.width, args.style_weight, seed=1, device=args.device)
        for i in range(args.quality_steps):
            ours_step(module, optimizer, content_batch(args.batch, args.size, 5000 + i).to(device), args.variant.endswith("bf16"))
        with torch.no_grad():
            probe = content_batch(args.batch, args.size, 9999).to(device)
            result["quality_loss_fp32"] = float(module._terms(probe)[1]["total"].mean())
    return result


def merge_rounds(rounds: list[dict], batch: int) -> dict:
    """One variant's result over its rounds: the median of every timed step, the highest peak memory
    (the rest, e.g. the bf16 quality check, from the first round)."""
    merged = dict(rounds[0])
    merged["times"] = [t for r in rounds for t in r["times"]]
    merged["seconds_per_step"] = statistics.median(merged["times"])
    merged["cpu_times"] = [t for r in rounds for t in r["cpu_times"]]
    merged["cpu_seconds_per_step"] = statistics.median(merged["cpu_times"])
    merged["images_per_s"] = batch / merged["seconds_per_step"]
    merged["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rounds)
    return merged


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", default="4", help="images per step; a comma-separated list runs each")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--style-weight", type=float, default=5.0)
    p.add_argument("--quality-steps", type=int, default=20, help="steps trained per precision for the bf16 quality check")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--rounds", type=int, default=1,
                   help="runs of every variant, interleaved (naive, ours, ..., naive, ours, ...); timings pooled")
    p.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.backends.cudnn.benchmark in every variant but naive (Trainer(benchmark=...)); default: torch's, off")
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        args.batch = int(args.batch)
        print(json.dumps(run_variant(args)))
        return
    if "," in args.batch:  # one full comparison per batch size
        for batch in args.batch.split(","):
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--batch", batch], check=False)
        return
    args.batch = int(args.batch)
    from fastmmd.base.precision import cpu_bf16_is_fast

    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:  # a typo would otherwise cost a GPU lease its minutes
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    runs: dict[str, list[dict]] = {}
    for round_ in range(args.rounds):  # variants interleaved: a box that slows down mid-run slows every variant
        for variant in args.variants.split(","):
            if variant.endswith("bf16") and args.device == "cpu" and not cpu_bf16_is_fast():
                if not round_:
                    print(f"{variant:>16}: skipped: this CPU has no bf16 instructions (torch's CPU capability "
                          f"{torch.backends.cpu.get_cpu_capability()}), bf16 would be emulated", flush=True)
                continue
            cmd = [sys.executable, __file__, "--variant", variant, *sys.argv[1:]]
            if round_:  # the bf16 quality check is not a timing: the first round's stands
                cmd += ["--quality-steps", "0"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:  # one broken variant (e.g. no compiler for torch.compile) must not stop the rest
                print(f"{variant:>16}: failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:300]}", flush=True)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            runs.setdefault(variant, []).append(r)
            print(f"{variant:>16}: {r['seconds_per_step']:.3f} s/step (min {min(r['times']):.3f}, CPU "
                  f"{r['cpu_seconds_per_step']:.3f})  {r['images_per_s']:.2f} img/s  peak RSS {r['peak_rss_mb']:.0f} MB"
                  + (f"  (round {round_ + 1})" if args.rounds > 1 else ""), flush=True)
    results = {variant: merge_rounds(rs, args.batch) for variant, rs in runs.items()}
    base = results.get("naive")
    where = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
             else f"{platform.processor() or platform.machine()}, {args.threads} threads")
    memory = "peak GPU memory (MB)" if args.device.startswith("cuda") else "peak RSS (MB)"
    print(f"\n{where}, torch {torch.__version__}, batch {args.batch}, {args.size}px, width {args.width}, "
          f"cudnn.benchmark {args.cudnn_benchmark}, memory = {memory}")
    if base:
        for variant, r in results.items():
            print(f"{variant:>16}: {base['seconds_per_step'] / r['seconds_per_step']:.2f}x naive speed "
                  f"({r['seconds_per_step']:.3f} s/step; CPU time {r['cpu_seconds_per_step']:.3f} s/step, "
                  f"{base['cpu_seconds_per_step'] / r['cpu_seconds_per_step']:.2f}x), "
                  f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x naive memory")
    if "ours-fp32" in results and "quality_loss_fp32" in results.get("ours-bf16", {}):
        q32, q16 = results["ours-fp32"]["quality_loss_fp32"], results["ours-bf16"]["quality_loss_fp32"]
        print(f"quality after {args.quality_steps} steps (fp32 loss): fp32-trained {q32:.4f}, bf16-trained {q16:.4f} "
              f"(ratio {q16 / q32:.3f})")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
