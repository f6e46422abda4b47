"""Measures the two artifacts of feed-forward networks: a band along one edge, and a periodic lattice.

For each model (a ``.ckpt`` of ``fastmmd fit`` or an exported ``.pt``/``.pt2``/``.onnx``):

* **flat input**: a mid-gray image (0.5) of ``--size``². Every layer of the network is
  translation-equivariant with reflection padding and instance norm, so an artifact-free network
  gives a flat output; the mean of the first/last 3 rows and columns against the interior says
  which edge carries a band.
* **edge band on photos**: for each edge, the mean absolute difference between the luminance of
  the 3-px border strip and of the 3-px strip just inside it, averaged over the photos (a band shows
  as one edge much larger than the other three).
* **lattice**: the power of the luminance spectrum at the period-4 and period-2 frequencies (the
  stride-2 layers' periods) over the median power of the surrounding frequencies; 1 means none.
* **grid lock**: how much the output depends on where the photo falls on the network's 4 px grid:
  mean |f(x moved by k px) - (f(x) moved by k px)| over the interior (24 px from the borders,
  moves by cropping, no resampling), for k = 1, 2, 3 (``off_grid``) and k = 4 (``on_grid``: only the
  instance-norm statistics of the cropped image change). A network that draws the same picture
  wherever the photo falls has off_grid ~ on_grid; the lattice and part of video flicker are the
  difference.

    python scripts/measure_artifacts.py run/last.ckpt other.pt --photos photos/*.jpg --size 256
    python scripts/measure_artifacts.py a.ckpt b.ckpt --crops out/crops.png   # top-left crops side by side

The last line of the output is the results as JSON (``{model: row}``); ``--json FILE`` also writes
them with the settings (``{"settings": {"size", "photos"}, "models": {model: row}}``), the form
``scripts/build_zoo.py --lattice`` reads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor

from fastmmd.base.images import read_image
from fastmmd.infer.stylize import load_stylizer

EDGE = 3


def luminance(x: Tensor) -> Tensor:
    return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]


def edge_bands(y: Tensor) -> dict[str, float]:
    """|border strip − inner strip| of the luminance per edge (y: (3, H, W) in [0, 1])."""
    lum = luminance(y)
    e = EDGE
    return {
        "top": float((lum[:e].mean(0) - lum[e:2 * e].mean(0)).abs().mean()),
        "bottom": float((lum[-e:].mean(0) - lum[-2 * e:-e].mean(0)).abs().mean()),
        "left": float((lum[:, :e].mean(1) - lum[:, e:2 * e].mean(1)).abs().mean()),
        "right": float((lum[:, -e:].mean(1) - lum[:, -2 * e:-e].mean(1)).abs().mean()),
    }


def lattice(y: Tensor) -> dict[str, float]:
    """Spectral power at periods 4 and 2 (axis-aligned and diagonal) over the median power of the
    5x5 frequencies around each (the spectrum wraps around); the largest ratio per period."""
    lum = luminance(y)
    power = torch.fft.fft2(lum - lum.mean()).abs() ** 2
    h, w = power.shape
    out = {}
    for period in (4, 2):
        ratios = []
        for fy, fx in ((h // period, 0), (0, w // period), (h // period, w // period)):
            centred = torch.roll(power, shifts=(2 - fy, 2 - fx), dims=(0, 1))[:5, :5]
            ratios.append(float(centred[2, 2] / centred.flatten().median().clamp_min(1e-12)))
        out[f"period{period}"] = max(ratios)
    return out


def grid_lock(run, x: Tensor, full: Tensor | None = None, inner: int = 24) -> dict[str, float]:
    """Output change under moves of the input by k = 1..4 px (module docstring), (3, H, W) in [0, 1];
    ``full``: ``run(x)`` when the caller has it already."""
    width = x.shape[-1] - 4
    full = run(x) if full is None else full
    errors = [float((run(x[..., k:k + width]) - full[..., k:k + width])[..., inner:-inner, inner:-inner].abs().mean())
              for k in range(1, 5)]
    return {"off_grid": sum(errors[:3]) / 3, "on_grid": errors[3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--photos", nargs="*", default=[])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--crops", default=None, help="PNG of the top-left 96 px of each model's output on the first photo")
    ap.add_argument("--json", default=None, help="write the results with the settings (size, photo names) here")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    photos = [read_image(p, args.size) for p in args.photos]
    results, crops = {}, []
    for path in args.models:
        stylizer = load_stylizer(path, device="cpu")
        run = lambda x: stylizer.stylize_tensor(x.unsqueeze(0))[0].float().clamp(0, 1)  # noqa: E731
        flat = run(torch.full((3, args.size, args.size), 0.5))
        lum = luminance(flat)
        interior = float(lum[8:-8, 8:-8].mean())
        row = {"flat": {"interior": interior, "top": float(lum[:EDGE].mean()), "bottom": float(lum[-EDGE:].mean()),
                        "left": float(lum[:, :EDGE].mean()), "right": float(lum[:, -EDGE:].mean()),
                        "std": float(lum.std())}}
        if photos:
            outs = [run(p) for p in photos]
            bands = [edge_bands(o) for o in outs]
            row["bands"] = {k: sum(b[k] for b in bands) / len(bands) for k in bands[0]}
            lat = [lattice(o) for o in outs]
            row["lattice"] = {k: sum(v[k] for v in lat) / len(lat) for k in lat[0]}
            lock = [grid_lock(run, p, o) for p, o in zip(photos, outs)]
            row["grid_lock"] = {k: sum(v[k] for v in lock) / len(lock) for k in lock[0]}
            crops.append(outs[0][:, :96, :96])
        results[path] = row
        print(f"{path}: {json.dumps(row)}", flush=True)
    if args.crops and crops:
        from torchvision.utils import save_image

        save_image(torch.stack(crops), args.crops, nrow=len(crops), padding=4, pad_value=1.0)
    print(json.dumps(results))
    if args.json:
        settings = {"size": args.size, "photos": [Path(p).name for p in args.photos]}
        Path(args.json).write_text(json.dumps({"settings": settings, "models": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
