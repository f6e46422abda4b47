"""Every module imports, and optional/heavy dependencies stay lazy (STYLE: keep the fast path light)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import fastmmd


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(fastmmd.__path__, "fastmmd.")]
    assert {"fastmmd.criterion", "fastmmd.losses.mmd", "fastmmd.optimize", "fastmmd.features"} <= set(names)
    for name in names:
        importlib.import_module(name)


def test_package_import_is_light():
    code = ("import sys, fastmmd, fastmmd.errors; "
            "print(sorted(m for m in ('torch', 'lightning', 'datasets', 'jsonargparse') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_lazy_public_api():
    assert fastmmd.StyleCriterion.__name__ == "StyleCriterion"
    assert callable(fastmmd.optimize_image)
    assert fastmmd.__version__
