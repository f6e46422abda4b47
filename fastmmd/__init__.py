"""fastmmd: neural style transfer as distribution alignment (Li, Wang, Liu & Hou, IJCAI 2017).

Gatys' Gram-matrix style loss is the squared MMD between the VGG feature distributions of two
images under the kernel (x^T y)^2; fastmmd offers that and the paper's other alignments (linear,
polynomial and Gaussian MMD, BN statistics, and fusions) for per-image optimization and for
training feed-forward networks. Heavy modules are imported lazily, so ``import fastmmd`` is cheap.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from importlib import import_module
from types import ModuleType
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "StyleCriterion": "fastmmd.losses.criterion",
    "VGGFeatures": "fastmmd.vgg.features",
    "TransformerNet": "fastmmd.model.networks",
    "StyleLoss": "fastmmd.losses",
    "load_stylizer": "fastmmd.infer.stylize",
    "Condition": "fastmmd.infer.conditions",
    "optimize_image": "fastmmd.apps.optimize",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastmmd' has no attribute {name!r}")


#: Where the modules of the flat layout (fastmmd 0.1) live now, by layer (fastmmd/<layer>/); where
#: one was split, every new home in the order its names are looked up.
MOVED = {
    "errors": ("base.errors",), "inputs": ("base.inputs",), "outputs": ("base.outputs",),
    "images": ("base.images", "base.outputs"), "grid": ("base.grid",), "unpickling": ("base.unpickling",),
    "precision": ("base.precision",), "color": ("core.color",), "motion": ("core.motion",),
    "norm_stats": ("core.norm_stats",), "samples": ("core.samples",), "features": ("vgg.features",),
    "weights": ("vgg.weights",), "criterion": ("losses.criterion",), "metrics": ("losses.metrics",),
    "conditioning": ("model.conditioning", "infer.conditions", "train.draws", "model.runtime", "commands.parsing"),
    "arbitrary": ("model.arbitrary",), "networks": ("model.networks",), "weight_storage": ("model.storage",),
    "model_files": ("model.files", "base.safe_load"), "checkpoints": ("model.checkpoints", "model.files"),
    "tiling": ("model.tiling",), "training": ("train.module",), "data": ("train.data",),
    "callbacks": ("train.callbacks",), "cli": ("train.cli",), "sampling": ("train.sampling",),
    "stylize": ("infer.stylize", "commands.stylize", "base.devices"), "video": ("infer.video",),
    "export": ("infer.export", "model.runtime", "commands.export"), "zoo": ("infer.zoo", "commands.models"),
    "condition_grid": ("infer.condition_grid",), "optimize": ("apps.optimize", "commands.optimize"),
    "compare": ("apps.compare", "commands.compare"), "evaluate": ("apps.evaluate", "commands.evaluate"),
    "fetch": ("apps.fetch", "commands.data"), "report": ("apps.report",), "serve": ("apps.serve", "commands.serve"),
    "serve.app": ("apps.serve.app",), "export_command": ("commands.export",),
}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of a module's old name (``fastmmd.stylize``) keep working, with one FutureWarning:
    the old name is a module that reads each attribute from the new home(s); ``python -m`` of an
    old name runs the new module."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        old = fullname.removeprefix("fastmmd.")
        return importlib.util.spec_from_loader(fullname, self) if fullname != old and old in MOVED else None

    def create_module(self, spec: Any) -> ModuleType:
        homes = [f"fastmmd.{m}" for m in MOVED[spec.name.removeprefix("fastmmd.")]]
        warnings.warn(f"{spec.name} moved to {homes[0]}; import it from there (the old name goes in fastmmd 0.3)",
                      FutureWarning, stacklevel=2)
        module = ModuleType(spec.name, f"Moved to {', '.join(homes)}.")

        def forward(name: str) -> Any:
            for home in homes:
                value = getattr(import_module(home), name, module)
                if value is not module:
                    return value
            raise AttributeError(f"module {spec.name!r} (moved to {homes[0]}) has no attribute {name!r}")

        module.__getattr__ = forward  # type: ignore[method-assign]
        return module

    def exec_module(self, module: ModuleType) -> None:
        pass

    def get_code(self, fullname: str) -> Any:  # python -m fastmmd.samples
        home = f"fastmmd.{MOVED[fullname.removeprefix('fastmmd.')][0]}"
        warnings.warn(f"{fullname} moved to {home}; run python -m {home}", FutureWarning, stacklevel=2)
        return importlib.util.find_spec(home).loader.get_code(home)


if not any(isinstance(f, _Moved) for f in sys.meta_path):
    sys.meta_path.append(_Moved())
