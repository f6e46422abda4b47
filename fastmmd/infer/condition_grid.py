"""``fastmmd stylize MODEL photo.jpg --grid strength|styles``: what a conditioned network can draw, on one sheet.

A network trained with ``model.conditioning`` (:mod:`fastmmd.model.conditioning`) is one network for a
space of outputs; these grids sample it on each input photo and lay the results out with
:func:`fastmmd.base.grid.draw_grid` (the labelled grid of ``fastmmd compare``), the photo above:

* ``strength``: one row per style (one row for a single-style network), one column per strength s
  from the low to the high end of the trained range in quarters, 1 (the trained default)
  included (Babaeizadeh & Ghiasi 2020, their Fig. 1).
* ``styles``: row a, column b shows the 50/50 blend of styles a and b, so the diagonal shows each
  style alone (Dumoulin et al. 2017, their Fig. 7), at ``--strength`` if given.

Each photo gives ``<output-dir>/<photo stem>_grid_<kind>.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from PIL import Image

from fastmmd.base.errors import ImageError, UserError
from fastmmd.base.grid import draw_grid, tile_size
from fastmmd.base.images import open_image, pil_to_tensor, save_image, tensor_to_pil
from fastmmd.base.outputs import OutputNames
from fastmmd.infer.conditions import Condition, ConditionSpace
from fastmmd.model.conditioning import DEFAULT_STRENGTH

#: Long edge of a grid tile in px.
TILE = 256


def strengths(space: ConditionSpace) -> list[float]:
    """Columns of the strength grid: the trained range [lo, hi] in quarters, plus 1 (the default)."""
    assert space.strength_range is not None
    lo, hi = space.strength_range
    values = {round(lo + (hi - lo) * k / 4, 4) for k in range(5)}
    if lo <= DEFAULT_STRENGTH <= hi:
        values.add(DEFAULT_STRENGTH)
    return sorted(values)


def _one_hot(space: ConditionSpace, i: int, j: int | None = None) -> tuple[float, ...]:
    weights = [0.0] * len(space.styles)
    for k in (i,) if j is None or j == i else (i, j):
        weights[k] += 1.0 if j is None or j == i else 0.5
    return tuple(weights)


def plan(space: ConditionSpace, kind: str, strength: float | None = None
         ) -> tuple[list[str], list[str], dict[tuple[int, int], Condition]]:
    """(row labels, column labels, {(row, col): condition}) of a ``kind`` grid; one-line errors when
    the model has no such axis."""
    several = len(space.styles) > 1
    if kind == "strength":
        if space.strength_range is None:
            raise UserError("--grid strength: this model has no strength input (train one with model.conditioning: [strength])")
        rows = list(space.styles) if several else ["style"]
        cols = strengths(space)
        cells = {(r, c): Condition(_one_hot(space, r) if several else None, s)
                 for r in range(len(rows)) for c, s in enumerate(cols)}
        return rows, [f"s={s:g}" for s in cols], cells
    if kind == "styles":
        if not several:
            raise UserError("--grid styles: this model was trained for one style (train several with model.conditioning: [styles])")
        names = list(space.styles)
        cells = {(r, c): Condition(_one_hot(space, r, c), strength) for r in range(len(names)) for c in range(len(names))}
        return names, names, cells
    raise UserError(f"--grid must be strength or styles, not {kind!r}")


def draw(stylizer, photo: torch.Tensor, kind: str, title: str = "") -> Image.Image:
    """The ``kind`` grid of one photo (3, H, W) in [0, 1] (after ``stylizer.fit``)."""
    rows, cols, cells = plan(stylizer.space, kind, stylizer.condition.strength)
    batch = photo.unsqueeze(0)
    tiles = {key: tensor_to_pil(stylizer.conditioned(condition).stylize_batch(batch)[0]) for key, condition in cells.items()}
    tile = tile_size(photo.shape[1], photo.shape[2], TILE)
    return draw_grid(rows, cols, tiles, tile, header=[("content", tensor_to_pil(photo))], title=title)


def write_grids(stylizer, files: list[Path], out_dir: Path, kind: str, model_name: str, skipped: int = 0) -> int:
    """``fastmmd stylize --grid``: one grid per photo in ``out_dir``; exit code 0, or 1 if some were skipped."""
    plan(stylizer.space, kind, stylizer.condition.strength)  # refuse before any work
    failures = skipped
    names = OutputNames(files)
    for src in files:
        try:
            photo = stylizer.fit(pil_to_tensor(open_image(src)[0]))
        except ImageError as err:
            print(f"fastmmd stylize: skipped: {err}", file=sys.stderr)
            failures += 1
            continue
        grid = draw(stylizer, photo, kind, title=f"{model_name}: {kind} grid of {src.name}")
        dest = names.claim(out_dir, f"{src.stem}_grid_{kind}", ".png")
        save_image(grid, dest, metadata={"Software": "fastmmd stylize --grid", "fastmmd:model": model_name,
                                                        "fastmmd:source": src.name})
        print(f"wrote {str(dest)!r}", file=sys.stderr)
    return 1 if failures else 0
