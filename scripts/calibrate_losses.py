"""Measures the per-method calibration constants of fastmmd.losses.criterion.CALIBRATION.

Under relative normalisation every style method is scale-free, but the methods still differ in how
hard they pull: a relative squared error of means is not a relative squared error of Gram
matrices. Like the authors ("determined by the scale of gradients of each style loss"), we match
the gradient: for each (content, style) pair, the norm of d(style term)/d(image) at the content
image, with every constant set to 1; the constant of method k is the median over pairs of
||grad gram|| / ||grad k||. Run from the repo root:

    python scripts/calibrate_losses.py --size 256 --data DATA

DATA (or ``$FASTMMD_DATA``): a folder with ``content/`` (the photos of --contents) and ``styles/``
(the paintings of --styles); the repository ships none.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch

from fastmmd.base.images import read_image
from fastmmd.losses import StyleLoss
from fastmmd.losses import criterion as criterion_module
from fastmmd.losses.criterion import StyleCriterion
from fastmmd.vgg.features import VGGFeatures

METHODS = ["gram", "poly", "linear", "gaussian", "bn"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FASTMMD_DATA"),
                        help="folder with content/ and styles/ (default: $FASTMMD_DATA)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--contents", default="tubingen.jpg,golden_gate.jpg,brad_pitt.jpg")
    parser.add_argument("--styles", default="starry_night.jpg,candy.jpg,the_scream.jpg,composition_vii.jpg")
    args = parser.parse_args()
    if not args.data:
        parser.error("give --data DIR (or set FASTMMD_DATA): a folder with content/ and styles/")
    torch.manual_seed(0)
    saved = dict(criterion_module.CALIBRATION)
    criterion_module.CALIBRATION.update({k: 1.0 for k in criterion_module.CALIBRATION})
    vgg = VGGFeatures()
    norms: dict[str, list[float]] = {m: [] for m in METHODS}
    for c in args.contents.split(","):
        content = read_image(Path(args.data) / "content" / c, args.size).unsqueeze(0)
        for s in args.styles.split(","):
            style = read_image(Path(args.data) / "styles" / s, args.size).unsqueeze(0)
            for m in METHODS:
                crit = StyleCriterion(StyleLoss(m, content_weight=0.0), vgg=vgg)
                crit.set_style([style])
                x = content.clone().requires_grad_(True)
                crit(x)["style"].sum().backward()
                norms[m].append(float(x.grad.norm()))
            print(c, s, {m: f"{norms[m][-1]:.3g}" for m in METHODS}, flush=True)
    criterion_module.CALIBRATION.update(saved)
    print("\nmedian gradient norm ratio gram/k (the calibration constants):")
    for m in METHODS:
        ratios = [g / v for g, v in zip(norms["gram"], norms[m])]
        print(f"  {m:9s} {statistics.median(ratios):.3g}   (range {min(ratios):.3g} .. {max(ratios):.3g})")


if __name__ == "__main__":
    main()
