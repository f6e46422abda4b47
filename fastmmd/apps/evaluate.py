"""``fastmmd evaluate``: how close trained networks come to per-image optimization, measured alike.

A feed-forward network (Johnson et al. 2016) buys speed by approximating, in one pass, the
per-image optimization of Gatys et al. (2016). This command measures what that costs on your
photos: every MODEL (a ``.ckpt`` from ``fastmmd fit`` or a ``.pt``/``.pt2``/``.onnx`` from
``fastmmd export``) stylizes every ``--content`` photo, and ``fastmmd optimize``'s loop
(:func:`fastmmd.apps.optimize.optimize_image` with :class:`~fastmmd.losses.criterion.StyleCriterion`; by default
gram, style weight 5, 100 L-BFGS steps from the photo, seed 0) makes the reference for the same
photo, style, size (``--size``, long edge) and style size. Every image is then scored from its saved
8-bit PNG with ``fastmmd compare``'s evaluation (:func:`fastmmd.losses.metrics.evaluate_features`, on one
VGG-19): ``style_swd`` (sliced-Wasserstein distance to the style, relu1_1..relu5_1, each layer over
the RMS of the style's features, averaged), ``style_gram`` (relative Gram error, same layers) and
``content`` (relative relu4_2 error mean (F - P)^2 / mean P^2 to the photo). Written to ``--output``:

* ``report.json`` and ``report.md`` (image paths relative to ``--output``): per model one row per
  photo (model and optimize distances, ratio model / optimize, seconds per image) and a mean row
  (means, and ratios of the means); a summary with the unstyled photo as a reference row. Model
  times are the forward pass per image after one untimed warm-up; optimize times are the
  optimization loop as first computed.
* ``grid.png``: one column per photo; rows: the photo, each model's output, the optimized image.
* ``images/<model>/<photo>.png``: the models' outputs.
* An arbitrary-style network (:mod:`fastmmd.model.arbitrary`) is run with ``--style`` as its painting.
* Conditioned networks (:mod:`fastmmd.model.conditioning`): one trained on several styles is run in the
  style named like ``--style``'s file (``--model-style`` picks another); one with a strength input
  is run once per ``--strengths`` value, each a model row ``<name>@s=<s>``: a strength curve, in
  the same report as single-style networks trained at the matching style weights.
* ``cells/<key>.png`` + ``.json`` (or ``--cache-dir``): the optimized images, keyed by a hash of
  everything that changes them (:mod:`fastmmd.apps.cache`: photo and style pixels at their sizes,
  every loss and optimizer setting, precision, VGG). A rerun, evaluating other models with the same
  settings, or ``fastmmd compare`` with the same ``--cache-dir`` reuses them instead of optimizing
  again; an interrupted run keeps the finished ones.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from fastmmd import __version__
from fastmmd.apps.cache import KeptImages, key_of, optimized_spec
from fastmmd.apps.optimize import check_memory, optimize_image
from fastmmd.apps.report import render_evaluation
from fastmmd.base.devices import resolve_device
from fastmmd.base.errors import UserError
from fastmmd.base.grid import draw_grid, tile_size
from fastmmd.base.images import (
    check_writable,
    fit_size,
    image_size,
    pil_to_tensor,
    read_image,
    save_image,
    tensor_to_pil,
)
from fastmmd.base.inputs import unique_labels
from fastmmd.base.outputs import atomic_path
from fastmmd.base.paintings import resolve_painting
from fastmmd.base.precision import resolve_precision
from fastmmd.base.settings import OptimizerSettings, dataclass_from_args, float_list
from fastmmd.infer.zoo import resolve_model
from fastmmd.losses import StyleLoss
from fastmmd.losses.criterion import StyleCriterion
from fastmmd.losses.metrics import ImageScorer
from fastmmd.vgg.features import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures
from fastmmd.vgg.features import MIN_SIDE as VGG_MIN_SIDE

METRICS = ("style_swd", "style_gram", "content")




def _validate(args) -> None:
    if args.projections < 1:
        raise UserError(f"--projections must be at least 1, not {args.projections}")
    for flag, value in (("--size", args.size), ("--style-size", args.style_size)):
        if value is not None and value < VGG_MIN_SIDE:
            raise UserError(f"{flag} must be at least {VGG_MIN_SIDE} px (VGG pools 4 times), not {value}")
    dataclass_from_args(StyleLoss, args)  # its settings, checked in one place


def _load_models(args, device: torch.device, contents: list[Tensor]) -> list[tuple[str, str, Any]]:
    """(row name, path, :class:`~fastmmd.infer.stylize.Stylizer`) per model and strength, checked against
    the photo sizes and the models' conditioning before any work."""
    from fastmmd.infer.stylize import load_stylizer

    strengths = float_list(args.strengths, "--strengths")
    models = []
    for name, path in zip(unique_labels((args.models)), args.models):
        stylizer = load_stylizer(path, device="cpu" if Path(path).suffix.lower() == ".onnx" else str(device))
        small = min(min(c.shape[-2:]) for c in contents)
        if small < stylizer.min_size:
            raise UserError(f"model {path!r} needs images of at least {stylizer.min_size} px per side; a photo at "
                            f"--size {args.size} has a {small} px side: raise --size")
        if stylizer.space.arbitrary:  # any painting: the network is asked for --style itself
            stylizer = stylizer.with_paintings([args.style])
        stylizer.probe()  # a model that cannot run fails here, before anything is written
        space, style = stylizer.space, None
        if len(space.styles) > 1 and not space.arbitrary:
            style = args.model_style or Path(args.style).stem
            if args.model_style is None and style not in space.styles:
                raise UserError(f"model {path!r} holds the styles {', '.join(space.styles)}, none named like --style "
                                f"{Path(args.style).name!r}; pick one with --model-style")
        if strengths and space.strength_range is not None:
            models += [(f"{name}@s={s:g}", path, stylizer.conditioned(space.resolve(style, None, s)))
                       for s in strengths]
        else:
            models.append((name, path, stylizer.conditioned(space.resolve(style))))
    return models


def _optimized(args, key: str, cache: KeptImages, photo: Tensor, style: Tensor, loss: StyleLoss, vgg: VGGFeatures,
               device: torch.device, precision: str, bar) -> tuple[dict[str, Any], bool]:
    """The optimized image's record (``seconds``, ``iterations``) from the cache or computed; (record, reused)."""
    record = cache.record(key)
    if record is not None:
        return record, True
    criterion = StyleCriterion(loss, vgg=vgg, seed=args.seed).to(device)
    criterion.set_style([style])
    criterion.set_content(photo)
    torch.manual_seed(args.seed)
    result = optimize_image(criterion, photo.clone().to(device), args.optimizer, args.iterations, args.lr, precision,
                            on_step=lambda step, _x, _t: bar.set_postfix_str(f"optimize it {step}", refresh=False))
    record = {"seconds": result.seconds, "iterations": result.iterations, "stopped_early": result.stopped_early,
              "device": str(device), "final_terms": result.history[-1] if result.history else {}}
    return cache.keep(key, result.image, record), False


def _mean(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


def _ratios(model: dict[str, float], reference: dict[str, float], keys: tuple[str, ...]) -> dict[str, float | None]:
    """model / reference per key (< 1: the model is closer, or faster); None where the reference is 0."""
    return {k: model[k] / reference[k] if reference[k] else None for k in keys}


def run(args) -> int:
    """Runs ``fastmmd evaluate``: validates every input and output first, then optimizes (or reuses) and scores."""
    from tqdm.auto import tqdm

    _validate(args)
    args.style = str(resolve_painting(args.style))  # a shipped style's name -> its painting
    args.models = [str(resolve_model(m)) for m in args.models]  # shipped style names -> their files
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    # the memory check compare makes, before any image is read at --size (--size 100000000 was a traceback)
    check_memory(max(math.prod(fit_size(*image_size(p), args.size)) for p in args.content),
                 math.prod(fit_size(*image_size(args.style), args.style_size or args.size)), device, "--size", args.size)
    photos = [read_image(p, args.size).unsqueeze(0) for p in args.content]
    style = read_image(args.style, args.style_size or args.size).unsqueeze(0)
    models = _load_models(args, device, photos)
    loss = dataclass_from_args(StyleLoss, args)
    vgg = VGGFeatures(tuple(dict.fromkeys(STYLE_LAYERS + CONTENT_LAYERS + loss.style_layers + loss.content_layers)),
                      args.vgg_weights, args.pooling, args.vgg_width_divisor)
    # channels-last, as optimize_image leaves it: scores then do not depend on whether this run optimized
    vgg = vgg.to(device, memory_format=torch.channels_last)
    out = Path(args.output)
    cache = KeptImages(Path(args.cache_dir) if args.cache_dir else out / "cells")
    check_writable(out / "report.json")
    check_writable(cache.folder / "cell.json")

    photo_names = unique_labels((args.content))
    settings = {"size": args.size, "style_size": args.style_size or args.size, "loss": loss.method,
                "style_weight": loss.style_weight, "content_weight": loss.content_weight, "tv_weight": loss.tv_weight,
                "iterations": args.iterations, "optimizer": args.optimizer, "lr": args.lr, "init": "content",
                "seed": args.seed, "precision": precision, "vgg": vgg.describe()}
    optimizer = dataclass_from_args(OptimizerSettings, args, stop_tol=None)
    scorer = ImageScorer(vgg, device, STYLE_LAYERS, CONTENT_LAYERS, args.projections, seed=args.seed)
    style_features = scorer.reference("style", style)

    def score(path: Path | None, photo: int, photos: list[Tensor]) -> dict[str, float]:
        """Metrics of the PNG at ``path`` (or of the photo itself when None) against the style and photo ``photo``."""
        image = photos[photo] if path is None else pil_to_tensor(Image.open(path).convert("RGB")).unsqueeze(0)
        m = scorer(image, style_features, scorer.reference(photo, photos[photo]))
        return {"style_swd": m["style_sw"], "style_gram": m["style_gram"], "content": m["content"]}

    style_name = Path(args.style).name
    bar = tqdm(total=len(photos) * (1 + len(models)), desc="evaluate", unit="img", disable=args.no_progress,
               file=sys.stderr)
    report: dict[str, Any] = {
        "fastmmd_version": __version__, "settings": {**settings, "projections": args.projections, "device": str(device),
                                                      "style": str(args.style), "contents": list(args.content)},
        "photos": photo_names, "computed": 0, "reused": 0}
    try:
        reference = [{"photo": n, **score(None, i, photos)} for i, n in enumerate(photo_names)]
        optimized = []
        for i, (name, photo) in enumerate(zip(photo_names, photos)):
            bar.set_postfix_str(f"{name}: optimize", refresh=False)
            key = key_of(optimized_spec(content=photo, style=style, init="content", loss=loss, optimizer=optimizer,
                                        precision=precision, vgg=vgg.describe()))
            record, reused = _optimized(args, key, cache, photo, style, loss, vgg, device, precision, bar)
            report["reused" if reused else "computed"] += 1
            image = cache.image_path(key)
            optimized.append({"photo": name, "image": os.path.relpath(image, out), "seconds": record["seconds"],
                              "iterations": record["iterations"], "reused": reused, **score(image, i, photos)})
            bar.update(1)
        results = []
        for name, path, model in models:
            bar.set_postfix_str(f"model {name}", refresh=False)
            model.stylize_tensor(photos[0])  # warm-up, untimed
            rows = []
            for i, (photo_name, photo) in enumerate(zip(photo_names, photos)):
                start = time.perf_counter()
                output = model.stylize_tensor(photo)
                seconds = time.perf_counter() - start
                image = save_image(output, out / "images" / name / f"{photo_name}.png",
                                   {"fastmmd": json.dumps({"model": Path(path).name, "photo": photo_name})})
                row = {"photo": photo_name, "image": os.path.relpath(image, out), "seconds": seconds,
                       **score(image, i, photos)}
                rows.append({**row, "ratio": _ratios(row, optimized[i], (*METRICS, "seconds"))})
                bar.update(1)
            meta = model.metadata
            trained = meta.get("training") if isinstance(meta.get("training"), dict) else meta
            mean = _mean(rows, (*METRICS, "seconds"))
            results.append({"name": name, "path": str(path), "format": meta.get("format"),
                            "trained": {"style_images": trained.get("style_images"), "loss": trained.get("loss"),
                                        "style_weight": trained.get("style_weight"), "steps": trained.get("global_step")},
                            "rows": rows, "mean": mean,
                            "ratio": _ratios(mean, _mean(optimized, (*METRICS, "seconds")), (*METRICS, "seconds"))})
            if style_name not in (trained.get("style_images") or [style_name]):
                print(f"fastmmd evaluate: note: {name} was trained on {', '.join(trained['style_images'])}, "
                      f"not {style_name}", file=sys.stderr)
    finally:
        bar.close()
    report["reference"] = {"rows": reference, "mean": _mean(reference, METRICS)}
    report["optimize"] = {"rows": optimized, "mean": _mean(optimized, (*METRICS, "seconds"))}
    report["models"] = results
    _write(out, report, photos, style, style_name, args)
    print(f"wrote {out / 'report.md'}, {out / 'grid.png'}: {len(models)} model(s) x {len(photos)} photo(s); "
          f"optimize {report['computed']} computed, {report['reused']} reused")
    return 0


def _write(out: Path, report: dict[str, Any], photos: list[Tensor], style: Tensor, style_name: str, args) -> None:
    """report.json, report.md (atomically) and grid.png: columns = photos; rows = photo, models, optimize."""
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(render_evaluation(report))
    s = report["settings"]
    groups = [(f"model: {m['name']}", m["rows"]) for m in report["models"]]
    groups.append((f"optimize: {s['loss']}", report["optimize"]["rows"]))
    tiles: dict[tuple[int, int], Image.Image] = {}
    captions: dict[tuple[int, int], str] = {}
    for c, (photo, ref) in enumerate(zip(photos, report["reference"]["rows"])):
        tiles[(0, c)] = tensor_to_pil(photo)
        captions[(0, c)] = f"SW {ref['style_swd']:.3g}"
        for r, (_, rows) in enumerate(groups, start=1):
            row = rows[c]
            tiles[(r, c)] = Image.open(out / row["image"]).convert("RGB")
            captions[(r, c)] = f"{row['seconds']:.3g} s\nSW {row['style_swd']:.3g} · C {row['content']:.2g}"
    tile = tile_size(photos[0].shape[-2], photos[0].shape[-1], max(128, min(args.size, 256)))
    title = (f"{s['size']} px; optimize: {s['loss']}, style weight {s['style_weight']:g}, {s['iterations']} "
             f"{s['optimizer']} steps, seed {s['seed']}. Captions: seconds per image; SW: sliced Wasserstein distance "
             "to the style, C: content distance (lower = closer; see report.md)")
    grid = draw_grid(["photo", *(label for label, _ in groups)], report["photos"], tiles, tile,
                     [(f"style\n{style_name}", tensor_to_pil(style))], captions, title, caption_lines=2)
    save_image(grid, out / "grid.png")
