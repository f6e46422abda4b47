"""Where the time of one arbitrary-style training step goes (fastmmd.model.arbitrary, configs/arbitrary.yaml).

Builds the recipe's module (Caffe VGG-19, width 32, 5 blocks, Gram loss, strength input) and times,
on random photos and paintings of ``--size`` px, batch ``--batch``, under the recipe's precision
(bf16 autocast where the CPU has bf16 instructions, fastmmd.base.precision), each part of
``training_step`` on its own, median of ``--steps`` after ``--warmup``:

* ``paintings``: one VGG-19 pass to relu5_1 over the paintings (no gradient): their statistics phi
  (the network's input) and their per-sample style targets (the loss's);
* ``network``: the network forward (embedding, conditional norms);
* ``loss``: the criterion forward: VGG over the outputs (with gradient) and the photos (no gradient,
  to relu4_2), and every style distance against per-sample targets;
* ``backward``: the backward pass of the total;
* ``step``: the whole ``training_step`` plus the optimizer step.

Usage::

    python scripts/bench_arbitrary_step.py --size 256 --batch 4 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--vgg-weights", default="caffe")
    ap.add_argument("--vgg-width-divisor", type=int, default=1, help=argparse.SUPPRESS)  # tests
    ap.add_argument("--width", type=int, default=32)
    args = ap.parse_args()

    import torch

    from fastmmd.base.precision import cpu_bf16_is_fast
    from fastmmd.train.module import StyleTransferModule

    if args.threads:
        torch.set_num_threads(args.threads)
    module = StyleTransferModule(conditioning=["arbitrary", "strength"], vgg_weights=args.vgg_weights,
                                 vgg_width_divisor=args.vgg_width_divisor, network_width=args.width,
                                 image_size=args.size)
    module.train()
    optimizer = torch.optim.Adam(module.network.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    photos = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    paintings = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    bf16 = cpu_bf16_is_fast()
    times: dict[str, list[float]] = {k: [] for k in ("paintings", "network", "loss", "backward", "step")}

    def timed(name: str, fn, record: bool):
        start = time.perf_counter()
        out = fn()
        if record:
            times[name].append(time.perf_counter() - start)
        return out

    for i in range(args.warmup + args.steps):
        record = i >= args.warmup
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            draw = module._draw(photos)
            draw.style, targets = timed("paintings", lambda: module._paintings(paintings), record)
            out = timed("network", lambda: module.network(photos, None, draw.strength, draw.style), record)
            terms = timed("loss", lambda: module.criterion(out, photos, style_scale=draw.strength, style_targets=targets),
                          record)
        timed("backward", lambda: terms["total"].mean().backward(), record)
        optimizer.zero_grad()

        def whole():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = module.training_step([photos, paintings], 0)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        timed("step", whole, record)
    medians = {k: statistics.median(v) for k, v in times.items()}
    parts = sum(medians[k] for k in ("paintings", "network", "loss", "backward"))
    print(f"# {platform.machine()} {platform.processor() or ''}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} thread(s), {'bf16' if bf16 else 'fp32'}, {args.size} px, batch {args.batch}")
    print("| part | s | share of the parts |")
    print("|---|---:|---:|")
    for k in ("paintings", "network", "loss", "backward"):
        print(f"| {k} | {medians[k]:.3f} | {medians[k] / parts:.0%} |")
    print(f"| whole step (training_step + Adam) | {medians['step']:.3f} | |")


if __name__ == "__main__":
    main()
