"""Training time of each shipped style's exact recipe on this machine's CPU, measured.

The shipped networks were trained on a GPU (checkpoints/README.md). This runs each style's own
config (``configs/gpu.yaml`` + ``configs/zoo/<style>.yaml``: same network, batch, crop size, loss
and photos) with ``fastmmd fit`` on the CPU for ``--steps`` steps, reads the wall-clock of each step
from the run's ``metrics.csv`` (``time/elapsed_s``, logged every step here), and multiplies the
steady-state seconds per step (steps after ``--skip`` warm-up steps) by the number of steps the
shipped network trained: the time the same training takes on this CPU.

    python scripts/zoo_cpu_time.py --photos photos/ --paintings paintings/ --out out/zoo_cpu   # -> out/zoo_cpu/cpu_times.json

``--photos``: the training photos; ``--paintings``: a folder with ``<style>.jpg`` for each style (neither
is in the repository; ``$FASTMMD_DATA/photos`` and ``$FASTMMD_DATA/styles`` when ``FASTMMD_DATA`` is set).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def seconds_per_step(metrics: Path, skip: int) -> tuple[float, int]:
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("time/elapsed_s")]
    times = sorted((int(r["step"]), float(r["time/elapsed_s"])) for r in rows)
    steady = [t for t in times if t[0] >= skip]
    if len(steady) < 2:
        raise SystemExit(f"{metrics}: too few steps logged ({len(times)})")
    (s0, t0), (s1, t1) = steady[0], steady[-1]
    return (t1 - t0) / (s1 - s0), s1 - s0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--styles", nargs="*", default=None, help="default: every configs/zoo/*.yaml")
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--skip", type=int, default=3, help="warm-up steps left out of the rate")
    ap.add_argument("--manifest", default=str(ROOT / "checkpoints" / "zoo.json"), help="for the shipped step counts")
    ap.add_argument("--out", required=True)
    data = os.environ.get("FASTMMD_DATA")
    ap.add_argument("--photos", default=data and str(Path(data) / "photos"), help="training photos (default: $FASTMMD_DATA/photos)")
    ap.add_argument("--paintings", default=data and str(Path(data) / "styles"),
                    help="folder with <style>.jpg per style (default: $FASTMMD_DATA/styles)")
    ap.add_argument("--conditions", default=None, help="how the CPU was shared, for the table (e.g. '2 torch threads, idle')")
    args = ap.parse_args()
    if not (args.photos and args.paintings):
        ap.error("give --photos DIR and --paintings DIR (or set FASTMMD_DATA to a folder with photos/ and styles/)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shipped = json.loads(Path(args.manifest).read_text())["styles"] if Path(args.manifest).is_file() else {}
    styles = args.styles or sorted(p.stem for p in (ROOT / "configs" / "zoo").glob("*.yaml"))
    results = {}
    for name in styles:
        runs = tempfile.mkdtemp(prefix="zoo_cpu_", dir=out)
        cmd = [sys.executable, "-m", "fastmmd", "fit", "--config", str(ROOT / "configs" / "gpu.yaml"),
               "--config", str(ROOT / "configs" / "zoo" / f"{name}.yaml"), "--trainer.accelerator", "cpu",
               "--trainer.max_steps", str(args.steps), "--trainer.max_time", "null", "--trainer.val_check_interval", "100000",
               "--trainer.limit_val_batches", "0", "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
               "--runs_dir", runs, "--run_name", name, "--data.root", str(Path(args.photos).resolve()),
               "--model.style_images", f"[{Path(args.paintings).resolve() / f'{name}.jpg'}]"]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name}: fit failed: {done.stderr.strip().splitlines()[-1:]}")
        rate, counted = seconds_per_step(Path(runs) / name / "metrics.csv", args.skip)
        steps = (shipped.get(name) or {}).get("training", {}).get("steps")
        results[name] = {"seconds_per_step": rate, "steps_timed": counted,
                         "shipped_steps": steps, "cpu_minutes": rate * steps / 60 if steps else None}
        print(name, json.dumps(results[name]), flush=True)
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "threads": os.environ.get("OMP_NUM_THREADS", "default"), "conditions": args.conditions, "styles": results}
    (out / "cpu_times.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
