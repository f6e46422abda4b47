"""Every file of the shipped zoo loads and runs with its runtime alone (the .pt with torch, the .onnx
with onnxruntime), in a process that cannot import fastmmd, and still looks as recorded (its
checksum). The zoo through fastmmd: tests/integration/test_zoo.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from fastmmd.infer.zoo import CHECKSUM_SEED, CHECKSUM_SHAPE, MANIFEST, checksum_difference, read_manifest

REAL_ZOO = REPO / "checkpoints"


@pytest.fixture(scope="module")
def shipped() -> dict[str, dict]:
    """The real manifest's styles (the repository ships it, so its absence is a failure)."""
    assert (REAL_ZOO / MANIFEST).is_file(), "checkpoints/zoo.json is missing (scripts/build_zoo.py writes it)"
    return {k: v for k, v in read_manifest(REAL_ZOO).items() if v.get("kind") != "arbitrary"}


_TORCH_ONLY = r"""
import json, sys, warnings
sys.modules["fastmmd"] = None  # a shipped style must load without fastmmd
import torch
warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
folder, seed, shape, styles = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))
try:
    import onnxruntime
except ImportError:
    onnxruntime = None
out = {}
for name, files in styles.items():
    extra = {"fastmmd.json": ""}
    program = torch.jit.load(f"{folder}/{files['torchscript']}", map_location="cpu", _extra_files=extra)
    with torch.inference_mode():
        y = program(x).float()  # (1, 3, 37, 53)
        y8 = program((x * 255).round().to(torch.uint8))
    out[name] = {"shape": list(y.shape), "finite": bool(torch.isfinite(y).all()), "in_range": bool(y.min() >= 0 and y.max() <= 1),
                 "mean": y.mean(dim=(0, 2, 3)).tolist(), "std": y.std(dim=(0, 2, 3)).tolist(),
                 "uint8": [str(y8.dtype), list(y8.shape)], "format": json.loads(extra["fastmmd.json"])["format"]}
    if onnxruntime is not None and "onnx" in files:
        session = onnxruntime.InferenceSession(f"{folder}/{files['onnx']}", providers=["CPUExecutionProvider"])
        y2 = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
        out[name]["onnx"] = {"shape": list(y2.shape), "mean": y2.mean(dim=(0, 2, 3)).tolist(),
                             "std": y2.std(dim=(0, 2, 3)).tolist(),
                             "metadata": "fastmmd" in session.get_modelmeta().custom_metadata_map}
assert not [m for m in sys.modules if m.startswith("fastmmd") and sys.modules[m] is not None]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def torch_only_run(shipped, tmp_path_factory) -> dict[str, dict]:
    """Every shipped file loaded and run by its runtime alone (torch, onnxruntime), in a process that
    cannot import fastmmd.

    ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` forbids torch any unrestricted unpickling here too (these are
    our own files, but the test should not depend on it)."""
    styles = {name: entry["files"] for name, entry in shipped.items()}
    env = {**os.environ, "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": "1"}
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-I", "-c", _TORCH_ONLY, str(REAL_ZOO), str(CHECKSUM_SEED),
                           json.dumps(list(CHECKSUM_SHAPE)), json.dumps(styles)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path_factory.mktemp("torch_only"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # ~10-20 s on 2 CPU cores: a fresh interpreter imports torch and opens six files of each kind
@pytest.mark.heavy(6)
def test_shipped_files_load_with_their_runtime_alone_and_look_as_recorded(shipped, torch_only_run):
    """The .pt with torch alone, the .onnx with onnxruntime alone (where installed), in a process
    that cannot import fastmmd: odd sizes in and out, and the checksums zoo.json records."""
    for name, entry in shipped.items():
        run = torch_only_run[name]
        assert run["shape"] == list(CHECKSUM_SHAPE), name  # odd size in, same size out
        assert run["finite"] and run["in_range"], name
        assert run["uint8"] == ["torch.uint8", list(CHECKSUM_SHAPE)], name
        assert run["format"] == "torchscript", name
        measured = {"seed": CHECKSUM_SEED, "shape": list(CHECKSUM_SHAPE), "mean": run["mean"], "std": run["std"]}
        diff = checksum_difference(entry["checksum"], measured)
        assert diff <= entry["checksum"]["tolerance"], f"{name}: output statistics moved by {diff:.4f}; re-exported?"
        if "onnx" in run:
            onnx_run, record = run["onnx"], entry["onnx"]["checksum"]
            assert onnx_run["shape"] == list(CHECKSUM_SHAPE) and onnx_run["metadata"], name
            measured = {"seed": CHECKSUM_SEED, "shape": list(CHECKSUM_SHAPE), "mean": onnx_run["mean"],
                        "std": onnx_run["std"]}
            diff = checksum_difference(record, measured)
            assert diff <= record["tolerance"], f"{name}: the .onnx's output statistics moved by {diff:.4f}"
