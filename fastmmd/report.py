"""``report.md`` of ``fastmmd compare``: the report.json numbers as Markdown tables.

One table per content x style pair (a row per loss and style weight, then the feed-forward models,
with the unstyled content image as a reference row), the Gram == poly-MMD identity per layer, and
the style reconstructions. Rendering is a pure function of the report dict, so a partial report
(interrupted run) renders the same way with the missing cells counted as pending.
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
