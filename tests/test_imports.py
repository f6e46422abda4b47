"""Every module imports, and optional/heavy dependencies stay lazy (STYLE: keep the fast path light)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys

import fastmmd


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(fastmmd.__path__, "fastmmd.")]
    assert {"fastmmd.losses.criterion", "fastmmd.losses.mmd", "fastmmd.apps.optimize", "fastmmd.vgg.features"} <= set(names)
    for name in names:
        importlib.import_module(name)


def test_package_import_is_light():
    code = ("import sys, fastmmd, fastmmd.base.errors; "
            "print(sorted(m for m in ('torch', 'lightning', 'datasets', 'jsonargparse') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_lazy_public_api():
    assert fastmmd.StyleCriterion.__name__ == "StyleCriterion"
    assert callable(fastmmd.optimize_image)
    assert fastmmd.__version__


def test_quick_commands_never_import_torch():
    """``fastmmd --help``, ``models`` and ``export --info`` of a shipped style run without torch, Lightning
    or the image libraries (their start-up: docs/benchmarks.md)."""
    code = ("import sys\n"
            "from fastmmd.__main__ import main\n"
            "for argv in (['--help'], ['models'], ['models', '--json'], ['models', '--help'], ['export', '--help'],\n"
            "             ['export', '--info', 'starry_night'], ['export', '--info', 'wave:pt2'], ['data', '--help']):\n"
            "    try:\n"
            "        assert main(argv) == 0, argv\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0, (argv, e.code)\n"
            "heavy = ('torch', 'lightning', 'torchvision', 'onnx', 'onnxruntime', 'datasets', 'PIL', 'numpy')\n"
            "print('LOADED', sorted(m for m in heavy if m in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if k != "FASTMMD_ZOO"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip().splitlines()[-1] == "LOADED []", out[-2000:]
