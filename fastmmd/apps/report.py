"""``report.md`` of ``fastmmd compare`` and ``fastmmd evaluate``: the report.json numbers as Markdown tables.

``compare`` (:func:`render_markdown`): one table per content x style pair (a row per loss and style
weight, then the feed-forward models, with the unstyled content image as a reference row), the
Gram == poly-MMD identity per layer, and the style reconstructions. Rendering is a pure function of
the report dict, so a partial report (interrupted run) renders the same way with the missing cells
counted as pending. ``evaluate`` (:func:`render_evaluation`): a summary (means per method) and one
table per model, photo by photo, next to per-image optimization.
"""

from __future__ import annotations

from collections.abc import Mapping

EXPLAIN = (
    "All cells are measured the same way on the VGG-19 used for optimising (`settings.vgg`): "
    "**SW** = sliced 2-Wasserstein distance between output and style features at relu1_1..relu5_1, each "
    "layer divided by the RMS of the style features, averaged over layers; **Gram** = relative Gram error "
    "‖Ĝ_out − Ĝ_style‖²/‖Ĝ_style‖², averaged over the same layers; **content** = relative relu4_2 feature "
    "error mean(F − P)²/mean P² to the content image. Lower is closer. **|Gram/MMD − 1|** = how far the ratio "
    "of Gatys' Gram loss to the poly-kernel MMD²/(4C²) of the same features, computed by two independent routes "
    "(C×C Gram matrices vs N×N kernel sums), is from 1, worst over layers; Li et al.'s Theorem 1 says it is 1, "
    "so only float64 rounding remains. Final loss terms are those of the last step's evaluation. Times are "
    "wall-clock seconds of the optimisation (or model forward) alone."
)


def _n(value: object, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _worst_ratio(metrics: Mapping) -> float:
    ratios = [v["identity_ratio"] for v in metrics["layers"].values()]
    return max(ratios, key=lambda r: abs(r - 1.0))


def _row(label: str, weight: str, record: Mapping | None, metrics: Mapping) -> str:
    terms = (record or {}).get("final_terms") or {}
    seconds = None if record is None else record["seconds"]
    iterations = None if record is None else record["iterations"]
    cols = [label, weight, _n(seconds, 3), _n(iterations), _n(terms.get("total")), _n(terms.get("style")),
            _n(terms.get("content")), _n(metrics["style_sw"]), _n(metrics["style_gram"]), _n(metrics["content"]),
            f"{abs(_worst_ratio(metrics) - 1):.0e}"]
    return "| " + " | ".join(cols) + " |"


def render_markdown(report: Mapping) -> str:
    """The Markdown report for a (possibly partial) ``report.json`` dict."""
    s = report["settings"]
    done = [r for r in report["cells"] if r is not None]
    status = "complete" if report.get("complete") else f"partial: {len(done)} of {len(report['cells'])} cells done"
    lines = [
        "# fastmmd compare", "",
        f"Status: {status} ({report.get('computed', 0)} computed in the last run, {report.get('reused', 0)} reused).", "",
        f"Settings: {s['size']} px, {s['iterations']} {s['optimizer']} steps, init {s['init']}, seed {s['seed']}, "
        f"content weight {s['content_weight']}, TV weight {s['tv_weight']}, precision {s['precision']}, "
        f"VGG {s['vgg']}, losses {', '.join(s['losses'])}, style weights {', '.join(f'{w:g}' for w in s['style_weights'])}.", "",
        EXPLAIN, "",
    ]
    header = ("| method | γ | time (s) | iters | final total | final style | final content | SW ↓ | Gram ↓ | content ↓ | \\|Gram/MMD − 1\\| |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")
    for group, baseline in report["baselines"].items():
        lines += [f"## {baseline['content']} × {baseline['style']}", "", f"![{group}]({group}.png)", "", header,
                  _row("content image (unstyled)", "–", None, baseline["metrics"])]
        for record in done:
            if record["group"] == group:
                label = record["row_label"]
                weight = "–" if record["kind"] == "model" else f"{record['style_weight']:g}"
                lines.append(_row(label, weight, record, record["metrics"]))
        lines.append("")
    transfers = [r for r in done if r["kind"] != "reconstruct"]
    if done:
        lines += ["## Gram == poly-MMD identity on these images", "",
                  "Per style layer, output vs style features (a seeded subset of at most "
                  f"{s['identity_positions']} positions per side, float64): Gatys' loss "
                  "E = Σ(G − A)²/(4C²m²) with G = FFᵀ, and MMD²_b[k = (xᵀy)²]/(4C²) from kernel sums.", "",
                  "| layer | Gram loss (first cell) | MMD²/(4C²) (first cell) | ratio | max \\|ratio − 1\\|, all cells |",
                  "|---|---|---|---|---|"]
        first = (transfers or done)[0]["metrics"]["layers"]
        for layer, v in first.items():
            ratios = [r["metrics"]["layers"][layer]["identity_ratio"] for r in done]
            lines.append(f"| {layer} | {v['identity_gram']:.9e} | {v['identity_mmd']:.9e} | {v['identity_ratio']:.12f} "
                         f"| {max(abs(r - 1) for r in ratios):.1e} |")
        lines.append("")
    recon = [r for r in done if r["kind"] == "reconstruct"]
    if recon:
        lines += ["## Style reconstructions (from noise, content weight 0)", "",
                  f"Layer sets: {s['reconstruct_layers']}.", "",
                  "| style | method | layers | time (s) | iters | SW ↓ | Gram ↓ |", "|---|---|---|---|---|---|---|"]
        for r in recon:
            lines.append(f"| {r['group'].removeprefix('recon_')} | {r['row_label']} | {r['col_label']} | {_n(r['seconds'], 3)} "
                         f"| {r['iterations']} | {_n(r['metrics']['style_sw'])} | {_n(r['metrics']['style_gram'])} |")
        groups = list(dict.fromkeys(r["group"] for r in recon))
        lines += [""] + [f"![{g}]({g}.png)" for g in groups] + [""]
    return "\n".join(lines)


EVALUATE_EXPLAIN = (
    "Every image is measured from its saved 8-bit PNG exactly as `fastmmd compare` measures its cells, on the "
    "VGG-19 of `settings.vgg`: **SW** = sliced 2-Wasserstein distance to the style's features at relu1_1..relu5_1, "
    "each layer divided by the RMS of the style features, averaged; **Gram** = relative Gram error averaged over "
    "the same layers; **content** = relative relu4_2 error mean(F − P)²/mean P² to the photo. Lower is closer. "
    "**ratio** = model / optimize (below 1: the model is closer to the style, or to the photo, than per-image "
    "optimization; for time, faster); the mean row gives the means and the ratios of the means. Times: the model's "
    "forward pass per image (after one untimed warm-up); optimize: the optimization loop as first computed "
    "(reused images keep that time)."
)


def render_evaluation(report: Mapping) -> str:
    """The Markdown report of ``fastmmd evaluate`` for its ``report.json`` dict."""
    s, opt = report["settings"], report["optimize"]
    opt_label = f"optimize: {s['loss']}, {s['iterations']} {s['optimizer']} steps"
    lines = [
        "# fastmmd evaluate", "",
        f"{len(report['models'])} model(s) on {len(report['photos'])} photo(s), {s['size']} px (long edge); style "
        f"`{s['style']}` at {s['style_size']} px. Optimize: {s['loss']}, style weight {s['style_weight']:g}, content "
        f"weight {s['content_weight']:g}, TV weight {s['tv_weight']:g}, {s['iterations']} {s['optimizer']} steps from the "
        f"photo, seed {s['seed']}, precision {s['precision']} ({report['computed']} optimized, {report['reused']} reused). "
        f"VGG {s['vgg']}, device {s['device']}.", "",
        EVALUATE_EXPLAIN, "", "![grid](grid.png)", "",
        f"## Summary: means over the {len(report['photos'])} photo(s)", "",
        "| method | SW ↓ | Gram ↓ | content ↓ | time / image (s) | SW ratio | Gram ratio | content ratio | time ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ref = report["reference"]["mean"]
    lines.append(f"| photo (unstyled) | {_n(ref['style_swd'])} | {_n(ref['style_gram'])} | {_n(ref['content'])} "
                 "| – | – | – | – | – |")
    m = opt["mean"]
    lines.append(f"| {opt_label} | {_n(m['style_swd'])} | {_n(m['style_gram'])} | {_n(m['content'])} "
                 f"| {_n(m['seconds'], 3)} | 1 | 1 | 1 | 1 |")
    for model in report["models"]:
        m, r = model["mean"], model["ratio"]
        lines.append(f"| model: {model['name']} | {_n(m['style_swd'])} | {_n(m['style_gram'])} | {_n(m['content'])} "
                     f"| {_n(m['seconds'], 3)} | {_n(r['style_swd'], 3)} | {_n(r['style_gram'], 3)} "
                     f"| {_n(r['content'], 3)} | {_n(r['seconds'], 3)} |")
    lines.append("")
    for model in report["models"]:
        t = model["trained"]
        lines += [f"## model: {model['name']}", "",
                  f"`{model['path']}` ({model['format']}): trained with {t['loss']} on "
                  f"{', '.join(t['style_images'] or ['?'])}, style weight {_n(t['style_weight'])}, {_n(t['steps'])} steps.", "",
                  "| photo | SW model | SW optimize | SW ratio | content model | content optimize | content ratio "
                  "| time model (s) | time optimize (s) |", "|---|---|---|---|---|---|---|---|---|"]
        for row, o in zip(model["rows"], opt["rows"]):
            lines.append(f"| {row['photo']} | {_n(row['style_swd'])} | {_n(o['style_swd'])} | {_n(row['ratio']['style_swd'], 3)} "
                         f"| {_n(row['content'])} | {_n(o['content'])} | {_n(row['ratio']['content'], 3)} "
                         f"| {_n(row['seconds'], 3)} | {_n(o['seconds'], 3)} |")
        m, r, om = model["mean"], model["ratio"], opt["mean"]
        lines += [f"| **mean** | {_n(m['style_swd'])} | {_n(om['style_swd'])} | {_n(r['style_swd'], 3)} "
                  f"| {_n(m['content'])} | {_n(om['content'])} | {_n(r['content'], 3)} "
                  f"| {_n(m['seconds'], 3)} | {_n(om['seconds'], 3)} |", ""]
    return "\n".join(lines)
