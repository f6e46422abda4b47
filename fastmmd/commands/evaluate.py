"""``fastmmd evaluate``: trained networks scored against per-image optimization (:mod:`fastmmd.apps.evaluate`)."""

from __future__ import annotations

from typing import Any

from fastmmd.base.settings import OptimizerSettings, RuntimeSettings, VGGSettings, optimization_settings
from fastmmd.commands.parsing import CommandParser, add_dataclass_flags
from fastmmd.losses import StyleLoss


def build_parser() -> CommandParser:
    """``fastmmd evaluate MODEL... --content PHOTO... --style IMAGE`` (also from ``--config FILE.yaml``)."""

    p = CommandParser("fastmmd evaluate", "Score trained networks against per-image optimization (fastmmd optimize) "
                      "on the same photos, style and size, with fastmmd compare's metrics: report.md/json and grid.png.")
    p.add_argument("models", nargs="+", help="trained network(s): .ckpt (fastmmd fit), .pt/.pt2/.onnx (fastmmd export) "
                   "or shipped style names (fastmmd models)")
    p.add_argument("--content", nargs="+", required=True, help="content photo(s)")
    p.add_argument("--style", required=True, help="the style image (the one the models were trained on), "
                   "or a shipped style's name for its painting (fastmmd data paintings)")
    p.add_argument("--size", type=int, default=256, help="long edge of the photos in px, for the models and optimize alike")
    p.add_argument("--strengths", default=None, help="models with a strength input: evaluate each at these strengths "
                   "(comma-separated, e.g. 0,0.5,1,2), one row <model>@s=<s> each (default: the trained default 1)")
    p.add_argument("--model-style", default=None, help="models trained on several styles: the style to run, by name or "
                   "index (default: the one named like --style's file)")
    p.add_argument("--style-size", type=int, default=None, help="long edge of the style image in px (default: --size), "
                   "for optimize and the metrics")
    add_dataclass_flags(p, StyleLoss, aliases={"method": "--loss"})  # optimize's loss, declared once
    add_dataclass_flags(p, OptimizerSettings, exclude=("stop_tol",), defaults={"iterations": 100})  # optimize's, per photo
    p.add_argument("--projections", type=int, default=64, help="random directions of the sliced Wasserstein distance")
    add_dataclass_flags(p, VGGSettings)
    add_dataclass_flags(p, RuntimeSettings)  # models run in their stored precision; ONNX models on the CPU
    p.add_argument("--output", default="evaluate", help="folder for report.md/.json, grid.png, images/ and cells/")
    p.add_argument("--cache-dir", default=None, help="folder of kept optimized images (default: OUTPUT/cells); "
                   "share it between evaluations to optimize each photo only once")
    return p


def run(args: Any) -> int:
    """Runs ``fastmmd evaluate`` on the parsed flags (:func:`fastmmd.apps.evaluate.run`)."""
    from fastmmd.apps import evaluate

    optimization_settings(args, stop_tol=None)  # validated here, once
    return evaluate.run(args)
