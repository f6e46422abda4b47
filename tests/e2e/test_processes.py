"""What only a real process shows: the installed console script, what a fresh interpreter imports on
the light paths, exports that load with torch alone, and a training run killed with SIGKILL.

Every other command-line test calls ``fastmmd.__main__.main`` in process (tests/integration); this
file holds the one run of the installed ``fastmmd`` console script.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import require_onnx

import fastmmd
from fastmmd.model.files import read_checkpoint
from fastmmd.train.cli import build_cli

SOURCE = str(Path(fastmmd.__file__).resolve().parents[1])  # this checkout: what the subprocesses import


def test_the_console_script_prints_one_line_and_no_traceback(tmp_path):
    """The installed ``fastmmd`` entry point (pyproject's [project.scripts]) reaches main and its
    error handling: a user error is one stderr line and exit 2."""
    script = shutil.which("fastmmd", path=str(Path(sys.executable).parent)) or shutil.which("fastmmd")
    assert script, "no fastmmd console script: pip install -e '.[test]' (scripts/test.sh does)"
    proc = subprocess.run([script, "optimize", "--content", str(tmp_path / "x.png"), "--style", "y.png"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "x.png" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


#: One fresh interpreter, three light paths in turn (modules only ever get added, so each check holds
#: for its path): ``import fastmmd`` imports no torch; ``--help``, ``models`` and ``export --info`` of a
#: shipped style import neither torch nor the image libraries (their start-up: docs/benchmarks.md);
#: ``stylize`` never imports Lightning, datasets or tensorboard.
LIGHT_PATHS = """
import sys
import fastmmd, fastmmd.base.errors
print('IMPORT', sorted(m for m in ('torch', 'lightning', 'datasets', 'jsonargparse') if m in sys.modules))
from fastmmd.__main__ import main
for argv in (['--help'], ['models'], ['models', '--json'], ['models', '--help'], ['export', '--help'],
             ['export', '--info', 'starry_night'], ['export', '--info', 'wave:pt'], ['data', '--help']):
    try:
        assert main(argv) == 0, argv
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
heavy = ('torch', 'lightning', 'torchvision', 'onnx', 'onnxruntime', 'datasets', 'PIL', 'numpy')
print('QUICK', sorted(m for m in heavy if m in sys.modules))
import fastmmd.infer.stylize
assert main(['stylize', sys.argv[1], sys.argv[2], '-o', sys.argv[3], '-q']) == 0
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'datasets', 'tensorboard'))
print('STYLIZE', heavy)
"""


def test_light_paths_import_only_what_they_need(tiny_exports, make_image, tmp_path):
    """STYLE: keep the fast path light (optional and heavy dependencies stay lazy)."""
    image = make_image("a.png", 20, 20)
    env = {k: v for k, v in os.environ.items() if k != "FASTMMD_ZOO"}  # the shipped zoo
    res = subprocess.run([sys.executable, "-c", LIGHT_PATHS, str(tiny_exports["ckpt"]), str(image), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=180, env={**env, "PYTHONPATH": SOURCE})
    assert res.returncode == 0, res.stderr[-2000:]
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in res.stdout.splitlines()
             if line.startswith(("IMPORT ", "QUICK ", "STYLIZE "))}
    assert lines == {"IMPORT": "[]", "QUICK": "[]", "STYLIZE": "[]"}, res.stdout[-2000:]
    assert (tmp_path / "out" / "a_stylized.png").exists()


def test_fast_path_never_imports_torch(tiny_exports, export_matrix, make_image, tmp_path):
    """The torch-free stylize path of an .onnx file (fastmmd.infer.fast_stylize), also an arbitrary-style
    one given a painting's style file (.npz): any import of torch fails."""
    from fastmmd.model.style_files import encoder_settings, write_style_file

    require_onnx()
    arbitrary = export_matrix("arbitrary")
    onnx_file, arbitrary_file = tiny_exports["onnx"], arbitrary["onnx"]
    settings = encoder_settings(arbitrary.meta("onnx"))
    style = write_style_file(tmp_path / "painting.npz", [0.5] * settings["features"], settings, "painting", "float32")
    photo = make_image("p.png", 24, 20)
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
            "from fastmmd.__main__ import main\n"
            f"assert main(['stylize', {str(onnx_file)!r}, {str(photo)!r}, '-o', {str(tmp_path / 'o')!r}, '-q']) == 0\n"
            f"raise SystemExit(main(['stylize', {str(arbitrary_file)!r}, {str(photo)!r}, '-o', "
            f"{str(tmp_path / 'a')!r}, '-q', '--style-image', {str(style)!r}]))")
    env = {**os.environ, "PYTHONPATH": SOURCE, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "o" / "p_stylized.png").is_file() and (tmp_path / "a" / "p_stylized.png").is_file()


@pytest.mark.heavy(5)
def test_exports_load_with_torch_alone(tiny_exports, tmp_path):
    """A subprocess that cannot import fastmmd loads both formats and reads the metadata."""
    script = f"""
import sys, json
sys.modules["fastmmd"] = None  # any `import fastmmd` now fails
import torch
extra = {{"fastmmd.json": ""}}
m = torch.jit.load({str(tiny_exports["torchscript"])!r}, _extra_files=extra)
y = m(torch.randint(0, 256, (1, 3, 15, 11), dtype=torch.uint8))
assert y.dtype == torch.uint8 and tuple(y.shape) == (1, 3, 15, 11)
assert json.loads(extra["fastmmd.json"])["loss"] == "gram" and json.loads(m.metadata)["loss"] == "gram"
extra = {{"fastmmd.json": ""}}
p = torch.export.load({str(tiny_exports["pt2"])!r}, extra_files=extra).module()
assert tuple(p(torch.rand(2, 3, 15, 11)).shape) == (2, 3, 15, 11)
assert json.loads(extra["fastmmd.json"])["format"] == "pt2"
try:
    import fastmmd
    raise SystemExit("fastmmd was importable")
except ImportError:
    pass
print("ok", sorted(k for k in sys.modules if k.startswith("fastmmd") and sys.modules[k] is not None))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-W", "ignore::FutureWarning", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok []"


@pytest.mark.heavy(4)
def test_sigkill_then_resume_equals_uninterrupted_run(plain_run, tmp_path):
    """A run killed with SIGKILL mid-training resumes from its last checkpoint with nothing lost:
    the final weights equal an uninterrupted run's (conftest.plain_run)."""
    args, straight = plain_run
    common = [*args, "--runs_dir", str(tmp_path / "runs")]
    run = tmp_path / "runs" / "killed"
    # same thread count as this process: bitwise-equal arithmetic is what makes the runs comparable
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONPATH": SOURCE}
    proc = subprocess.Popen([sys.executable, "-m", "fastmmd", "fit", *common, "--trainer.max_steps", "12",
                             "--run_name", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (run / "step=0000002.ckpt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it was killed, not finished
    killed_at = read_checkpoint(run / "last.ckpt")["global_step"]  # the last checkpoint is whole
    assert 1 <= killed_at < 12  # last.ckpt may trail the newest step=N file by one save
    build_cli(["fit", *common, "--trainer.max_steps", "12", "--run_name", "killed", "--ckpt_path", "last"])
    a, b = read_checkpoint(straight / "last.ckpt")["state_dict"], read_checkpoint(run / "last.ckpt")["state_dict"]
    assert read_checkpoint(run / "last.ckpt")["global_step"] == 12
    for key, value in a.items():
        assert torch.allclose(value, b[key], rtol=0, atol=1e-6), key

