"""Every module imports and the public API is lazy (what a fresh interpreter imports on the light paths:
tests/e2e/test_processes.py)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings

import pytest

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


def test_old_module_names_still_import_with_one_warning():
    """The flat layout's names keep working until 0.3 (fastmmd.MOVED), each with a FutureWarning
    naming the new home; a split module answers every name it had. Imported afresh here: the old
    names are taken out of sys.modules first and after (nothing else imports them)."""
    from fastmmd.infer.stylize import load_stylizer as new

    olds = ("fastmmd.stylize", "fastmmd.conditioning")
    saved = {name: sys.modules.pop(name) for name in olds if name in sys.modules}
    attributes = {k: v for k, v in vars(fastmmd).items() if k in ("stylize", "conditioning")}
    try:
        with pytest.warns(FutureWarning) as record:
            importlib.import_module("fastmmd.stylize")
        assert [str(w.message).split(";")[0] for w in record] == ["fastmmd.stylize moved to fastmmd.infer.stylize"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            from fastmmd.conditioning import Condition, ConditionalAffine, condition_defaults, draw_conditions  # noqa: F401
            from fastmmd.stylize import available_memory, build_parser, load_stylizer  # noqa: F401
        assert load_stylizer is new
    finally:
        for name in olds:
            sys.modules.pop(name, None)
            vars(fastmmd).pop(name.split(".")[1], None)
        sys.modules.update(saved)
        vars(fastmmd).update(attributes)
    for old, homes in fastmmd.MOVED.items():
        assert all(importlib.util.find_spec(f"fastmmd.{h}") for h in homes), old
        assert importlib.util.find_spec(f"fastmmd.{old}") is not None
