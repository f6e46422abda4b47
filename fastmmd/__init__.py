"""fastmmd: neural style transfer as distribution alignment (Li, Wang, Liu & Hou, IJCAI 2017).

Gatys' Gram-matrix style loss is the squared MMD between the VGG feature distributions of two
images under the kernel (x^T y)^2; fastmmd offers that and the paper's other alignments (linear,
polynomial and Gaussian MMD, BN statistics, and fusions) for per-image optimization and for
training feed-forward networks. Heavy modules are imported lazily, so ``import fastmmd`` is cheap.
"""

from __future__ import annotations

from importlib import import_module
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
