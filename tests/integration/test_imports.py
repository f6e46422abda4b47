"""Every module imports and the public API is lazy (what a fresh interpreter imports on the light paths:
tests/e2e/test_processes.py)."""

from __future__ import annotations

import importlib
import pkgutil

import fastmmd


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(fastmmd.__path__, "fastmmd.")]
    assert {"fastmmd.losses.criterion", "fastmmd.losses.mmd", "fastmmd.apps.optimize", "fastmmd.vgg.features"} <= set(names)
    for name in names:
        importlib.import_module(name)


def test_lazy_public_api():
    assert fastmmd.StyleCriterion.__name__ == "StyleCriterion"
    assert callable(fastmmd.optimize_image)
    assert fastmmd.__version__
