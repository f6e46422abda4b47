"""Benchmark feed-forward stylization: exported (TorchScript, torch.export, ONNX) vs eager vs naive.

All variants run the same Johnson network (random weights: speed does not depend on them) on the
same input in one run, and the table reports ms/image, images/s and the speed-up over the naive
baseline (eager fp32, NCHW, ``torch.no_grad()`` as in pytorch/examples: no channels-last, no
inference mode, no export). Variants:

* ``naive``        eager fp32 under no_grad
* ``eager-<dtype>`` fastmmd's eager path: inference_mode (+ channels-last; one row per ``--dtype``)
* ``torchscript``  the file written by ``fastmmd export --format torchscript``, torch.jit.load
* ``pt2``          the file written by ``fastmmd export --format pt2``, torch.export.load().module()
* ``onnxruntime``  the ``.onnx`` file on onnxruntime's CPU provider (CPU only, if installed)
* ``compile``      ``torch.compile`` of the eager path (``--compile``; meant for GPUs)
* ``compile-unfolded`` the same, with the upsampling convs computed as written (upsample, then a 3x3
  conv) instead of folded (``fastmmd.model.networks.folded_upsample_conv``): what the fold buys
* ``compile-direct-rgb`` the same, with the two 9x9 RGB convs computed directly instead of at 1/4
  resolution on space-to-depth inputs (``fastmmd.model.networks.space_to_depth_conv``, GPU only): what
  that buys

The naive baseline computes every layer as written (``TransformerNet.set_layout(False, 1)``).

Usage::

    python scripts/bench_stylize.py --dtype fp32,bf16      # CPU, 512x512 and 1920x1080
    python scripts/bench_stylize.py --device cuda --dtype fp16 --compile --iters 20
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastmmd.infer.export import export_network, load_exported  # noqa: E402
from fastmmd.model.networks import TransformerNet  # noqa: E402
from fastmmd.model.runtime import ExportedStylizer

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: The compiled variants: how each sets the network's layout (TransformerNet.set_layout).
COMPILED_LAYOUTS = {"compile": {}, "compile-unfolded": {"fold_upsampling": False},
                    "compile-direct-rgb": {"rgb_space_to_depth": 1}}
VARIANTS = ("naive", "eager", "torchscript", "pt2", "onnxruntime", *COMPILED_LAYOUTS)


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(h), int(w)


def timed(fn, x: torch.Tensor, warmup: int, iters: int, device: torch.device) -> float:
    """Median seconds per call after ``warmup`` calls."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", help="precisions of the eager variant, comma-separated (fp32, fp16, bf16); "
                    "the first is also used by --compile")
    ap.add_argument("--sizes", default="512x512,1920x1080", help="comma-separated WxH")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--residual-blocks", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="channels-last for the eager variant (default: on for CUDA)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (GPU)")
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile mode (default, reduce-overhead, max-autotune-no-cudagraphs, ...)")
    ap.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.backends.cudnn.benchmark: time cuDNN's algorithms per input shape and keep the "
                         "fastest (default: torch's, off)")
    ap.add_argument("--variants", default="naive,eager,torchscript,pt2,onnxruntime")
    ap.add_argument("--profile", action="store_true",
                    help="after timing, run each variant once more under torch.profiler and print its costliest "
                         "kernels (where the time goes, before the network is changed)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cudnn_benchmark is not None:
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    device = torch.device(args.device)
    dtypes = [DTYPES[d] for d in args.dtype.split(",")]
    channels_last = device.type == "cuda" if args.channels_last is None else args.channels_last
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS):  # a typo would otherwise cost a GPU lease its minutes
        ap.error(f"unknown variant(s) {', '.join(sorted(set(variants) - set(VARIANTS)))}; known: {', '.join(VARIANTS)}")
    if args.compile and "compile" not in variants:
        variants.append("compile")
    if device.type != "cpu" and "onnxruntime" in variants:
        variants.remove("onnxruntime")

    torch.manual_seed(0)
    net = TransformerNet(args.width, args.residual_blocks).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    tmp = Path(tempfile.mkdtemp(prefix="bench_stylize_"))
    fns = {}
    naive_net = TransformerNet(args.width, args.residual_blocks).eval().to(device)
    naive_net.load_state_dict(net.state_dict())
    naive_net.set_layout(fold_upsampling=False, rgb_space_to_depth=1)

    def naive(x):  # pytorch/examples: torch's defaults, so cuDNN's algorithm search stays off
        with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, benchmark=False):
            return naive_net(x.float())

    fns["naive"] = naive

    def stylizer(dtype: torch.dtype, **layout):
        """fastmmd's inference path for ``net``'s weights: inference mode, ``dtype``, the layout."""
        model = ExportedStylizer(TransformerNet(args.width, args.residual_blocks).set_layout(**layout)).eval()
        model.net.load_state_dict(net.state_dict())
        model = model.to(device=device, dtype=dtype)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def inferring(model):
        def run(x):
            with torch.inference_mode():
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                return model(x)
        return run

    for name, dt in zip(args.dtype.split(","), dtypes):
        fns[f"eager-{name}"] = inferring(stylizer(dt))
    for fmt, suffix in (("torchscript", ".pt"), ("pt2", ".pt2"), ("onnxruntime", ".onnx")):
        if fmt not in variants:
            continue
        path = tmp / f"style{suffix}"
        try:
            export_network(net, path, fmt="onnx" if fmt == "onnxruntime" else fmt)
            if fmt == "pt2" and device.type != "cpu":
                # an ExportedProgram's module() does not move its lifted constants with .to(device)
                # (torch 2.11: "Tensor device mismatch"); the export pass does
                from torch.export.passes import move_to_device_pass

                module = move_to_device_pass(torch.export.load(str(path)), device).module()
            else:
                module, _ = load_exported(path)
        except Exception as err:  # an optional dependency missing: skip the variant
            print(f"# {fmt}: skipped ({type(err).__name__}: {err})", file=sys.stderr)
            continue
        if fmt == "torchscript":
            module = module.to(device)

        def run(x, module=module):
            with torch.inference_mode():
                return module(x)

        fns[fmt] = run
    for v, layout in COMPILED_LAYOUTS.items():
        if v in variants:
            fns[v] = inferring(torch.compile(stylizer(dtypes[0], **layout), dynamic=False, mode=args.compile_mode))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU"
    print(f"# {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, network width {args.width} x "
          f"{args.residual_blocks} blocks, batch {args.batch}, eager dtype {args.dtype}, channels_last {channels_last}, "
          f"cudnn.benchmark {torch.backends.cudnn.benchmark}, compile mode {args.compile_mode or 'default'}, "
          f"median of {args.iters} after {args.warmup} warm-up")
    print("| size | variant | ms/image | images/s | speed-up vs naive | max abs diff vs naive |")
    print("|------|---------|---------:|---------:|------------------:|----------------------:|")
    for size in args.sizes.split(","):
        h, w = parse_size(size)
        x = torch.rand(args.batch, 3, h, w, device=device)
        base = reference = None
        order = ["naive", *(f"eager-{d}" for d in args.dtype.split(",") if "eager" in variants), "torchscript", "pt2",
                 "onnxruntime", *COMPILED_LAYOUTS]
        timed_variants = [v for v in order if v in fns and (v in variants or v.startswith("eager-"))]
        for v in timed_variants:
            xv = x if v != "onnxruntime" else x.cpu()
            sec = timed(fns[v], xv, args.warmup, args.iters, device) / args.batch
            y = fns[v](xv).float().to(device)  # every variant computes the same network: a check, not a metric
            base = sec if v == "naive" else base
            reference = y if v == "naive" else reference
            ratio = f"{base / sec:.2f}x" if base else "-"
            diff = f"{(y - reference).abs().max().item():.1e}" if reference is not None else "-"
            print(f"| {w}x{h} | {v} | {sec * 1e3:.1f} | {1 / sec:.2f} | {ratio} | {diff} |", flush=True)
        if args.profile:
            for v in [v for v in timed_variants if v != "onnxruntime"]:  # onnxruntime's work is outside torch
                print(f"\n## {w}x{h} {v}: costliest operators, one call of batch {args.batch}")
                print(profile_table(fns[v], x, device))


def profile_table(fn, x: torch.Tensor, device: torch.device, rows: int = 12) -> str:
    """torch.profiler's operator table of one call (after the timed ones: no compilation inside)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)


if __name__ == "__main__":
    main()
