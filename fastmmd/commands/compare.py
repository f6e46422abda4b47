"""``fastmmd compare``: the paper's style losses side by side on your images (:mod:`fastmmd.apps.compare`)."""

from __future__ import annotations

from typing import Any

from fastmmd.apps.compare import GRID_AXES
from fastmmd.base.settings import OptimizerSettings, RuntimeSettings, VGGSettings, optimization_settings
from fastmmd.commands.parsing import CommandParser, add_dataclass_flags
from fastmmd.losses import StyleLoss


def build_parser() -> CommandParser:
    """``fastmmd compare`` options (also readable from ``--config FILE.yaml``)."""

    p = CommandParser("fastmmd compare", "Compare style losses (Gram, MMD, BN statistics, fusions) on your images: "
                      "one grid per content x style pair and a report measuring every method the same way.")
    p.add_argument("--content", nargs="+", required=True, help="content photo(s)")
    p.add_argument("--style", nargs="+", required=True, help="style image(s), or shipped styles' names for "
                   "their paintings (fastmmd data paintings); every content is paired with every style")
    p.add_argument("--losses", default="gram,linear,poly,gaussian,bn,bn+poly", help="comma-separated losses or fusions (grid rows)")
    p.add_argument("--style-weights", default="0.1,1,5,10", help="comma-separated style weights (grid columns)")
    p.add_argument("--size", type=int, default=256, help="long edge of content and style images in px")
    add_dataclass_flags(p, OptimizerSettings, exclude=("stop_tol",), defaults={"iterations": 100})  # the same for every cell
    p.add_argument("--init", choices=["content", "random"], default="content", help="start from the content or from seeded noise")
    add_dataclass_flags(p, StyleLoss, exclude=GRID_AXES)  # every other loss setting, as optimize has them
    add_dataclass_flags(p, VGGSettings)
    p.add_argument("--reconstruct-style", action="store_true", help="also rebuild each style from noise, content weight 0 (recon_<style>.png)")
    p.add_argument("--reconstruct-layers", choices=["cumulative", "single"], default="cumulative",
                   help="layer sets of the reconstructions: relu1_1, relu1_1+relu2_1, ... (cumulative, the paper's) or one layer each")
    p.add_argument("--models", nargs="*", default=[], help="feed-forward models (.pt/.pt2 exports, .ckpt checkpoints or "
                   "shipped style names: fastmmd models) shown as extra rows")
    p.add_argument("--projections", type=int, default=64, help="random directions of the sliced Wasserstein distance")
    p.add_argument("--identity-positions", type=int, default=1024, help="positions per side for the Gram == MMD check")
    add_dataclass_flags(p, RuntimeSettings)
    p.add_argument("--output-dir", default="compare", help="folder for grid_<content>_<style>.png per pair, grid.png (= the first pair's), "
                   "recon_<style>.png, report.md/.json and cells/ (a rerun reuses finished cells)")
    p.add_argument("--cache-dir", default=None, help="folder of kept optimized images (default: OUTPUT_DIR/cells); "
                   "the same folder as evaluate's --cache-dir shares them: each image is optimized once")
    return p


def run(args: Any) -> int:
    """Runs ``fastmmd compare`` on the parsed flags (:func:`fastmmd.apps.compare.run`)."""
    from fastmmd.apps import compare

    optimization_settings(args, stop_tol=None)  # validated here, once
    return compare.run(args)
