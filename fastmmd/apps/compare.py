"""``fastmmd compare``: every style loss on your images, side by side, measured the same way.

Li et al. (2017) read Gram matching as one distribution-alignment method among several (linear,
polynomial and Gaussian MMD, BN-statistics matching, fusions), each with its own look. This command
runs per-image optimisation (:func:`fastmmd.apps.optimize.optimize_image`) for every loss x style weight
on every content x style pair, with the same seed, initial image and iterations, and writes to
``--output-dir``:

* ``grid_<content>_<style>.png`` per pair (rows = losses, then ``--models``; columns = style
  weights; the content and style shown and labelled above) and ``grid.png``, a copy of the first
  pair's grid;
* ``recon_<style>.png`` with ``--reconstruct-style``: the style rebuilt from noise with content
  weight 0 (the paper's Fig. 2), rows = losses, columns = style layer sets, cumulative by default
  (relu1_1; relu1_1+relu2_1; ...; as Gatys et al. and Li et al. do) or ``single`` layers;
* ``report.json`` and ``report.md``: per cell the wall time, iterations, final loss terms and one
  evaluation for all (:func:`fastmmd.losses.metrics.evaluate_features` on the VGG used for optimising:
  sliced Wasserstein and Gram distance to the style at relu1_1..relu5_1, relative relu4_2 distance
  to the content, and the Gram == poly-MMD / (4 C^2) identity per layer on the output's features).

Each finished cell is kept as ``cells/<key>.png`` + ``cells/<key>.json`` (or in ``--cache-dir``; key:
hash of everything that changes the cell's image, :mod:`fastmmd.apps.cache`, the same key
``evaluate`` uses for the same photo, style and settings) and reused by a rerun; the report is rewritten after
every cell and the grids at most every :data:`GRID_REDRAW_S` seconds and at the end (drawing and
PNG-encoding a grid costs more than a small cell), so an interrupted run leaves a valid partial
report and resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from fastmmd import __version__
from fastmmd.apps.cache import KeptImages, file_digest, key_of, optimized_spec, pixel_digest
from fastmmd.apps.optimize import check_memory, optimize_image
from fastmmd.apps.report import render_markdown
from fastmmd.base.devices import resolve_device
from fastmmd.base.errors import UserError
from fastmmd.base.grid import draw_grid, tile_size
from fastmmd.base.images import fit_size, image_size, read_image, save_image, tensor_to_pil
from fastmmd.base.inputs import unique_labels
from fastmmd.base.outputs import atomic_path, check_output_dir, make_dirs, refuse_inputs
from fastmmd.base.paintings import resolve_paintings
from fastmmd.base.precision import resolve_precision
from fastmmd.base.settings import OptimizerSettings, dataclass_from_args, float_list, str_list
from fastmmd.infer.zoo import resolve_model
from fastmmd.losses import StyleLoss, parse_loss
from fastmmd.losses.criterion import StyleCriterion
from fastmmd.losses.metrics import ImageScorer
from fastmmd.vgg.features import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures
from fastmmd.vgg.features import MIN_SIDE as VGG_MIN_SIDE

GRID_REDRAW_S = 10.0  # a grid is redrawn (and PNG-encoded) at most this often while cells finish
CAPTION_LINES = 2  # under each grid tile: "time, steps" and "SW ..., C ..."
#: StyleLoss fields that compare varies itself: ``--losses`` gives the rows, ``--style-weights`` the columns.
GRID_AXES = ("method", "style_weight")
METRICS_VERSION = 1  # bump when fastmmd.losses.metrics changes: kept cells are then re-evaluated, not re-optimised


@dataclass
class Cell:
    """One image of a grid: an optimisation (``transfer``/``reconstruct``) or a model's output."""

    kind: str  # transfer | reconstruct | model
    group: str  # grid file stem, e.g. grid_tubingen_starry_night
    row: int
    col: int
    row_label: str
    col_label: str
    style: int
    content: int | None = None
    loss: str | None = None
    style_weight: float | None = None
    layers: tuple[str, ...] = ()
    model: int | None = None
    key: str = ""




def _layer_sets(mode: str) -> list[tuple[tuple[str, ...], str]]:
    if mode == "single":
        return [((t,), t) for t in STYLE_LAYERS]
    return [(STYLE_LAYERS[: i + 1], t if i == 0 else f"relu1_1..{t[4:]}") for i, t in enumerate(STYLE_LAYERS)]


def _validate(args) -> tuple[list[str], list[float]]:
    if args.size < VGG_MIN_SIDE:
        raise UserError(f"--size must be at least {VGG_MIN_SIDE} px (VGG pools 4 times), not {args.size}")
    for name in ("projections", "identity_positions"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    losses = list(dict.fromkeys(str_list(args.losses) or []))
    if not losses:
        raise UserError("--losses is empty; give e.g. gram,linear,poly,gaussian,bn,bn+poly")
    for loss in losses:
        parse_loss(loss)
    weights = float_list(args.style_weights, "--style-weights") or []
    if not weights or any(not w >= 0 for w in weights):
        raise UserError(f"--style-weights must be non-negative numbers such as 0.1,1,5,10, not {args.style_weights!r}")
    return losses, list(dict.fromkeys(weights))


def _load_model(path: str, device: torch.device) -> Callable[[Tensor], Tensor]:
    """A feed-forward model (export or checkpoint, via :func:`fastmmd.infer.stylize.load_stylizer`) as RGB (1, 3, H, W) -> same."""
    from fastmmd.infer.stylize import load_stylizer

    return load_stylizer(path, device=str(device)).probe().stylize_tensor


def _plan(args, losses, weights, contents, styles, models) -> list[Cell]:
    cells: list[Cell] = []
    for ci, (cname, _) in enumerate(contents):
        for si, (sname, _) in enumerate(styles):
            group = f"grid_{cname}_{sname}"
            for r, loss in enumerate(losses):
                cells += [Cell("transfer", group, r, c, loss, f"weight {w:g}", si, ci, loss, w) for c, w in enumerate(weights)]
            cells += [Cell("model", group, len(losses) + m, 0, f"model: {name}", "", si, ci, model=m)
                      for m, (name, _) in enumerate(models)]
    if args.reconstruct_style:
        for si, (sname, _) in enumerate(styles):
            for r, loss in enumerate(losses):
                cells += [Cell("reconstruct", f"recon_{sname}", r, c, loss, label, si, None, loss, 1.0, layers)
                          for c, (layers, label) in enumerate(_layer_sets(args.reconstruct_layers))]
    return cells


def _cell_loss(cell: Cell, args) -> StyleLoss:
    """The loss settings of an optimisation cell: the flags, the cell's method and style weight; a
    reconstruction (the paper's Fig. 2) is the style alone through its layer set, equal weights."""
    settings = dataclass_from_args(StyleLoss, args, method=cell.loss, style_weight=cell.style_weight)
    if cell.kind == "reconstruct":
        settings = replace(settings, content_weight=0.0, style_layers=cell.layers, style_layer_weights=None)
    return settings


def _cell_init(cell: Cell, args) -> str:
    return "random" if cell.kind == "reconstruct" or args.init == "random" else "content"


def _cell_key(cell: Cell, args, contents, styles, model_digests: list[str], vgg: VGGFeatures) -> str:
    """The cell's key in the cache of optimized images (:mod:`fastmmd.apps.cache`): an optimisation
    cell's key is the one evaluate computes for the same photo, style and settings."""
    content = None if cell.content is None else contents[cell.content][1]
    if cell.kind == "model":
        return key_of({"kind": "model", "model": model_digests[cell.model], "content": pixel_digest(content),
                       "precision": args.precision})
    optimizer = dataclass_from_args(OptimizerSettings, args, stop_tol=None)
    return key_of(optimized_spec(content=content, style=styles[cell.style][1], init=_cell_init(cell, args),
                                 loss=_cell_loss(cell, args), optimizer=optimizer, precision=args.precision,
                                 vgg=vgg.describe()))


def run(args) -> int:
    """Runs ``fastmmd compare``: validates every input, then runs (or reuses) each cell in turn."""
    from tqdm.auto import tqdm

    losses, weights = _validate(args)
    args.models = [str(resolve_model(m)) for m in args.models]  # shipped style names -> their files
    args.style = [str(p) for p in resolve_paintings(args.style)]  # and -> their paintings, for --style
    inputs = [*(("--content", p) for p in args.content), *(("--style", p) for p in args.style),
              *(("--models", p) for p in args.models)]
    out = check_output_dir(args.output_dir, inputs)
    cache = KeptImages(Path(args.cache_dir) if args.cache_dir else out / "cells")
    _check_outputs(out, cache.folder, args, inputs)
    device = resolve_device(args.device)
    args.precision = resolve_precision(args.precision, device)  # resolved once: cell keys record what ran
    check_memory(max(math.prod(fit_size(*image_size(p), args.size)) for p in [*args.content, *args.style]),
                 sum(math.prod(fit_size(*image_size(p), args.size)) for p in args.style), device, "--size", args.size)
    contents = [(n, read_image(p, args.size).unsqueeze(0)) for n, p in zip(unique_labels(args.content), args.content)]
    styles = [(n, read_image(p, args.size).unsqueeze(0)) for n, p in zip(unique_labels(args.style), args.style)]
    models = [(n, _load_model(p, device)) for n, p in zip(unique_labels(args.models), args.models)]
    taps = tuple(dict.fromkeys(STYLE_LAYERS + CONTENT_LAYERS + tuple(str_list(args.style_layers) or ()) + tuple(str_list(args.content_layers) or ())))
    vgg = VGGFeatures(taps, args.vgg_weights, args.pooling, args.vgg_width_divisor).to(device)
    model_digests = [file_digest(p) for p in args.models]
    loss = {k: v for k, v in asdict(dataclass_from_args(StyleLoss, args, method="gram")).items() if k not in GRID_AXES}
    common = {"size": args.size, "iterations": args.iterations, "optimizer": args.optimizer, "lr": args.lr,
              "init": args.init, "seed": args.seed, **loss, "precision": args.precision, "vgg": vgg.describe()}
    evaluation = {"metrics_version": METRICS_VERSION, "projections": args.projections,
                  "identity_positions": args.identity_positions, "seed": args.seed}
    cells = _plan(args, losses, weights, contents, styles, models)
    for cell in cells:
        cell.key = _cell_key(cell, args, contents, styles, model_digests, vgg)

    scorer = ImageScorer(vgg, device, STYLE_LAYERS, CONTENT_LAYERS, args.projections, args.identity_positions, args.seed)

    def evaluate(image: Tensor, style: int, content: int | None) -> dict[str, object]:
        """Metrics of ``image`` against style ``style`` and (unless None) content ``content``."""
        target = None if content is None else scorer.reference(("content", content), contents[content][1])
        return scorer(image, scorer.reference(("style", style), styles[style][1]), target)

    settings = {**common, **evaluation, "losses": losses, "style_weights": weights, "contents": list(args.content),
                "styles": list(args.style), "models": list(args.models),
                "reconstruct_layers": args.reconstruct_layers if args.reconstruct_style else None}
    report = {"fastmmd_version": __version__, "settings": settings, "baselines": {}, "cells": [None] * len(cells),
              "complete": False, "computed": 0, "reused": 0}
    for ci, (cname, cimg) in enumerate(contents):  # the unstyled content, evaluated like a cell: a reference row
        for si, (sname, _) in enumerate(styles):
            report["baselines"][f"grid_{cname}_{sname}"] = {"content": cname, "style": sname,
                                                            "metrics": evaluate(cimg, si, ci)}
    bar = tqdm(total=len(cells), desc="compare", unit="cell", disable=args.no_progress, file=sys.stderr)
    stale: set[str] = set()  # grids with cells not yet drawn
    drawn = time.monotonic()
    try:
        for i, cell in enumerate(cells):
            bar.set_postfix_str(f"{cell.group.removeprefix('grid_')} {cell.row_label} {cell.col_label}".strip(), refresh=False)
            record = cache.record(cell.key)
            if record is None:
                record = _run_cell(cell, args, contents, styles, models, vgg, device, bar, cache)
                report["computed"] += 1
            else:
                report["reused"] += 1
            if record.get("evaluation") != evaluation or "metrics" not in record:
                # a new image, or a kept one (maybe evaluate's) under other metric settings: evaluated, not
                # re-optimised; metrics are taken on the kept 8-bit image, so a reused cell measures the same
                record["evaluation"], record["metrics"] = evaluation, evaluate(cache.image(cell.key), cell.style, cell.content)
                cache.update(cell.key, record)
            record["image"] = os.path.relpath(cache.image_path(cell.key), out)
            report["cells"][i] = {**record, **_describe(cell)}  # labels follow this run's layout
            stale.add(cell.group)
            due = time.monotonic() - drawn >= GRID_REDRAW_S
            _write_outputs(out, report, cells, contents, styles, args, groups=stale if due else set())
            if due:
                stale, drawn = set(), time.monotonic()
            bar.update(1)
    except KeyboardInterrupt:
        _write_outputs(out, report, cells, contents, styles, args, groups=set())
        raise
    finally:
        bar.close()
    report["complete"] = True
    _write_outputs(out, report, cells, contents, styles, args, groups={c.group for c in cells})
    print(f"wrote {out / 'report.md'} and {len({c.group for c in cells})} grid(s): "
          f"{report['computed']} cell(s) computed, {report['reused']} reused")
    return 0


def _check_outputs(out: Path, cells: Path, args, inputs: list[tuple[str, str]]) -> None:
    """Every file compare writes, checked against the inputs before any work (an input inside
    ``--output-dir`` named like a grid or kept cell would otherwise be replaced)."""
    names = ["report.json", "report.md", "grid.png"]
    names += [f"grid_{c}_{s}.png" for c in unique_labels(args.content) for s in unique_labels(args.style)]
    names += [f"recon_{s}.png" for s in unique_labels(args.style)]
    for name in names:
        refuse_inputs(out / name, inputs)
    for flag, path in inputs:
        if Path(path).resolve().parent == cells.resolve():
            raise UserError(f"{flag} {path!r} lies in {str(cells)!r}, where compare keeps its cells; move it")
    make_dirs(cells)


def _describe(cell: Cell) -> dict[str, object]:
    return {k: v for k, v in asdict(cell).items() if k not in ("row", "col")}


def _run_cell(cell: Cell, args, contents, styles, models, vgg, device, bar, cache: KeptImages) -> dict[str, object]:
    """Optimises (or runs the model for) one cell and keeps its image; returns its record without metrics."""
    style = styles[cell.style][1]
    content = None if cell.content is None else contents[cell.content][1]
    record = _describe(cell)
    if cell.kind == "model":
        start = time.perf_counter()
        with torch.no_grad():
            image = models[cell.model][1](content)
        record.update(seconds=time.perf_counter() - start, iterations=0, final_terms={})
    else:
        reconstruct = cell.kind == "reconstruct"
        criterion = StyleCriterion(_cell_loss(cell, args), vgg=vgg, seed=args.seed).to(device)
        criterion.set_style([style])
        if not reconstruct:
            criterion.set_content(content)
        shape = style.shape if reconstruct else content.shape
        if _cell_init(cell, args) == "random":
            init = torch.rand(shape, generator=torch.Generator().manual_seed(args.seed))
        else:
            init = content.clone()
        torch.manual_seed(args.seed)
        result = optimize_image(criterion, init.to(device), args.optimizer, args.iterations, args.lr, args.precision,
                                on_step=lambda step, _x, _t: bar.set_postfix_str(
                                    f"{cell.group.removeprefix('grid_')} {cell.row_label} {cell.col_label} it {step}", refresh=False))
        image = result.image
        record.update(seconds=result.seconds, iterations=result.iterations, stopped_early=result.stopped_early,
                      final_terms=result.history[-1] if result.history else {}, device=str(device))
    return cache.keep(cell.key, image, record)


def _write_outputs(out: Path, report: dict, cells: list[Cell], contents, styles, args, groups: set[str]) -> None:
    """Rewrites report.json and report.md (atomically) and redraws the grids in ``groups``."""
    report["pending"] = sum(r is None for r in report["cells"])
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(render_markdown(report))
    first = cells[0].group if cells else None
    for group in sorted(groups):
        members = [(i, c) for i, c in enumerate(cells) if c.group == group]
        ref = members[0][1]
        style_name, style = styles[ref.style]
        header = [(f"style\n{style_name}", tensor_to_pil(style))]
        if ref.content is not None:
            header.insert(0, (f"content\n{contents[ref.content][0]}", tensor_to_pil(contents[ref.content][1])))
        shown = header[0][1]
        tile = tile_size(shown.height, shown.width, max(128, min(args.size, 256)))
        rows = list(dict.fromkeys(c.row_label for _, c in members))
        cols = list(dict.fromkeys(c.col_label for _, c in members if c.kind != "model"))
        tiles, captions, taken = {}, {}, set()
        for i, c in members:
            taken.add((c.row, c.col))
            record = report["cells"][i]
            if record is not None:
                tiles[(c.row, c.col)] = Image.open(out / record["image"]).convert("RGB")
                m = record["metrics"]
                extra = "" if m["content"] is None else f" · C {m['content']:.2g}"
                captions[(c.row, c.col)] = f"{record['seconds']:.3g} s, {record['iterations']} it\nSW {m['style_sw']:.3g}{extra}"
        blank = {(r, c) for r in range(len(rows)) for c in range(len(cols))} - taken
        kind = ("style reconstructions from noise, content weight 0, columns: style layers" if ref.kind == "reconstruct"
                else "columns: style weight")
        title = (f"{kind}; {args.iterations} {args.optimizer} steps, {args.size} px, seed {args.seed}. SW: sliced "
                 "Wasserstein distance to the style, C: content distance (lower = closer; see report.md)")
        grid = draw_grid(rows, cols, tiles, tile, header, captions, title, blank, CAPTION_LINES)
        save_image(grid, out / f"{group}.png")
        if group == first:
            save_image(grid, out / "grid.png")
