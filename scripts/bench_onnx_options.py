"""onnxruntime session options on one ``.onnx`` file, side by side: which of them pays on this CPU.

Opens the file once per variant (graph optimisation level, memory pattern, arena, denormals as zero,
against the options ``fastmmd stylize`` uses: every graph optimisation, the arena, the pattern on;
:func:`fastmmd.model.onnx_files.open_session`), checks that every variant gives the same output on a
random ``--size`` x ``--size`` photo, then times ``--rounds`` interleaved rounds (the order reversed
every other round, as ``scripts/bench_peer.py`` does), 1 intra-op thread: the median wall time and
the calling thread's CPU time (with 1 thread, what the call computed, whatever else the machine ran).

Usage::

    python scripts/bench_onnx_options.py checkpoints/starry_night.onnx --size 1024 --rounds 6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="an .onnx file (fastmmd export)")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    import numpy as np
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel
    variants = {
        "fastmmd's (every optimisation)": {},
        "extended (no blocked layouts)": {"level": level.ORT_ENABLE_EXTENDED},
        "basic": {"level": level.ORT_ENABLE_BASIC},
        "no memory pattern": {"mem_pattern": False},
        "no arena": {"arena": False},
        "denormals as zero": {"config": {"session.set_denormal_as_zero": "1"}},
    }
    sessions = {}
    for name, v in variants.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 1, 1, 3
        options.graph_optimization_level = v.get("level", level.ORT_ENABLE_ALL)
        options.enable_mem_pattern = v.get("mem_pattern", True)
        options.enable_cpu_mem_arena = v.get("arena", True)
        for key, value in v.get("config", {}).items():
            options.add_session_config_entry(key, value)
        sessions[name] = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    outputs = {name: s.run(None, {"image": x})[0] for name, s in sessions.items()}
    first = next(iter(outputs.values()))
    wall: dict[str, list[float]] = {n: [] for n in sessions}
    cpu: dict[str, list[float]] = {n: [] for n in sessions}
    before = machine()
    names = list(sessions)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t, c = time.perf_counter(), time.thread_time()
            sessions[name].run(None, {"image": x})
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.thread_time() - c)
    after = machine()
    print(f"{before['date']}, {before['cpu']}, load average {before['loadavg'][0]:.2f} before / "
          f"{after['loadavg'][0]:.2f} after; {Path(args.model).name}, {args.size}x{args.size}, 1 thread, "
          f"medians of {args.rounds} interleaved rounds\n")
    print("| session options | wall s | CPU s | CPU x fastmmd's | max output difference |\n|---|--:|--:|--:|--:|")
    reference = statistics.median(cpu[names[0]])
    for name in names:
        print(f"| {name} | {statistics.median(wall[name]):.3f} | {statistics.median(cpu[name]):.3f} | "
              f"{statistics.median(cpu[name]) / reference:.2f} | {float(np.abs(outputs[name] - first).max()):.1g} |")


if __name__ == "__main__":
    main()
