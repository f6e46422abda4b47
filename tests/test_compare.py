"""``fastmmd compare`` end to end on the tiny VGG stand-in: grids, report, resume, interrupts, models."""

from __future__ import annotations

import json
import math
import time

import pytest
from PIL import Image

from fastmmd.__main__ import main
from fastmmd.apps.compare import CAPTION_LINES
from fastmmd.base.grid import grid_size, tile_size

TINY = ["--vgg-weights", "random", "--vgg-width-divisor", "8", "--size", "32", "--iterations", "2", "--no-progress"]


@pytest.fixture
def pair(make_image):
    """One content (48x40) and one style (40x48) image."""
    return make_image("photo.png", 48, 40, seed=0), make_image("art.png", 40, 48, seed=1)


def compare(*args) -> int:
    return main(["compare", *TINY, *map(str, args)])  # later flags win, so tests can override TINY


def finite_numbers(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(finite_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return all(finite_numbers(v) for v in obj)
    return True


def test_grid_and_report(pair, tmp_path):
    content, style = pair
    out = tmp_path / "cmp"
    start = time.perf_counter()
    assert compare("--content", content, "--style", style, "--losses", "gram,bn,bn+poly",
                   "--style-weights", "1,5", "--output-dir", out) == 0
    elapsed = time.perf_counter() - start
    grid = Image.open(out / "grid.png")
    assert grid.size == grid_size(3, 2, tile_size(27, 32, 128), CAPTION_LINES)  # 32 px long edge: content 32x27
    assert (out / "grid_photo_art.png").read_bytes() == (out / "grid.png").read_bytes()
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] and report["pending"] == 0 and report["computed"] == 6
    cells = report["cells"]
    assert [(c["loss"], c["style_weight"]) for c in cells] == [
        ("gram", 1.0), ("gram", 5.0), ("bn", 1.0), ("bn", 5.0), ("bn+poly", 1.0), ("bn+poly", 5.0)]
    assert finite_numbers(report)
    for cell in cells:
        assert cell["iterations"] == 2 and 0 < cell["seconds"] < elapsed  # measured, within the run's wall time
        assert {"total", "style", "content", "tv"} <= set(cell["final_terms"])
        m = cell["metrics"]
        assert set(m["layers"]) == {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"}
        assert m["style_sw"] > 0 and m["content"] >= 0
        for layer in m["layers"].values():
            assert layer["identity_ratio"] == pytest.approx(1.0, abs=1e-5)
        assert Image.open(out / cell["image"]).size == (32, 27)
    baseline = report["baselines"]["grid_photo_art"]["metrics"]
    assert baseline["content"] == 0.0  # the unstyled content image is its own content
    md = (out / "report.md").read_text()
    assert "Status: complete" in md and "| gram | 5 |" in md and "Gram == poly-MMD identity" in md


def test_rerun_reuses_finished_cells(pair, tmp_path):
    content, style = pair
    out = tmp_path / "cmp"
    base = ["--content", content, "--style", style, "--losses", "gram,linear", "--output-dir", out]
    args = [*base, "--style-weights", "1"]
    assert compare(*args) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    assert len(stamps) == 4
    assert compare(*args) == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["computed"], report["reused"]) == (0, 2)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == stamps
    # Other metric settings re-evaluate the kept images without optimising again.
    assert compare(*args, "--projections", "8") == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["computed"], report["reused"]) == (0, 2)
    assert all(c["evaluation"]["projections"] == 8 for c in report["cells"])
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.png")} == {
        k: v for k, v in stamps.items() if k.endswith(".png")}
    # A new style weight adds a column: only its cells run; a changed setting (seed) reruns everything.
    assert compare(*base, "--style-weights", "1,5") == 0
    assert json.loads((out / "report.json").read_text())["computed"] == 2
    assert compare(*args, "--seed", "1") == 0
    assert json.loads((out / "report.json").read_text())["computed"] == 2


def test_interrupt_leaves_a_valid_partial_report_and_resumes(pair, tmp_path, monkeypatch):
    import fastmmd.apps.compare as compare_module

    content, style = pair
    out = tmp_path / "cmp"
    real = compare_module.optimize_image
    calls = []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(compare_module, "optimize_image", interrupted)
    args = ["--content", content, "--style", style, "--losses", "gram,bn", "--style-weights", "1,5", "--output-dir", out]
    with pytest.raises(SystemExit) as exc:
        compare(*args)
    assert exc.value.code == 130
    report = json.loads((out / "report.json").read_text())
    assert not report["complete"] and report["pending"] == 2
    assert [c is not None for c in report["cells"]] == [True, True, False, False]
    assert "partial: 2 of 4" in (out / "report.md").read_text()
    assert not list((out / "cells").glob("*.part")) and not list(out.glob(".*.part"))
    monkeypatch.setattr(compare_module, "optimize_image", real)
    assert compare(*args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] and (report["computed"], report["reused"]) == (2, 2)


def test_style_reconstruction_grid(pair, tmp_path):
    content, style = pair
    out = tmp_path / "cmp"
    assert compare("--content", content, "--style", style, "--losses", "bn", "--style-weights", "1",
                   "--reconstruct-style", "--output-dir", out) == 0
    recon = [c for c in json.loads((out / "report.json").read_text())["cells"] if c["kind"] == "reconstruct"]
    assert len(recon) == 5
    assert [c["layers"] for c in recon[:5]] == [["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"][: i + 1] for i in range(5)]
    assert all(c["metrics"]["content"] is None and c["final_terms"]["content"] == 0.0 for c in recon)
    assert Image.open(out / "recon_art.png").size == grid_size(1, 5, tile_size(32, 27, 128), CAPTION_LINES)  # style is 27x32
    assert "Style reconstructions" in (out / "report.md").read_text()


def test_models_are_extra_rows(pair, tmp_path, tiny_checkpoint):
    from fastmmd.infer.export import export_checkpoint

    content, style = pair
    out = tmp_path / "cmp"
    exported = tmp_path / "exported.pt"
    export_checkpoint(tiny_checkpoint, exported, fmt="torchscript")
    assert compare("--content", content, "--style", style, "--losses", "gram", "--style-weights", "1,5",
                   "--models", exported, tiny_checkpoint, "--output-dir", out) == 0
    report = json.loads((out / "report.json").read_text())
    models = [c for c in report["cells"] if c["kind"] == "model"]
    assert [m["row_label"] for m in models] == ["model: exported", "model: tiny"]
    for m in models:
        assert finite_numbers(m["metrics"]) and m["metrics"]["content"] > 0 and m["iterations"] == 0
    # the export and its checkpoint are the same network: same output, same metrics
    assert models[0]["metrics"]["style_sw"] == pytest.approx(models[1]["metrics"]["style_sw"], rel=1e-3)
    assert Image.open(out / "grid.png").size == grid_size(3, 2, tile_size(27, 32, 128), CAPTION_LINES)
    assert "model: tiny" in (out / "report.md").read_text()


@pytest.mark.parametrize("extra,message", [
    (["--losses", "gramm"], "did you mean 'gram'"),
    (["--style-weights", "1,-5"], "--style-weights"),
    (["--iterations", "0"], "--iterations"),
    (["--size", "8"], "--size"),
    (["--vgg-weights", "nowhere.pth"], "nowhere.pth"),
    (["--models", "missing.ckpt"], "missing.ckpt"),
])
def test_bad_inputs_fail_before_any_optimization(pair, tmp_path, capsys, extra, message):
    content, style = pair
    with pytest.raises(SystemExit) as exc:
        compare("--content", content, "--style", style, "--output-dir", tmp_path / "cmp", *extra)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "cmp" / "cells").exists() or not list((tmp_path / "cmp" / "cells").iterdir())


def test_missing_style_image_is_one_line(pair, tmp_path, capsys):
    content, _ = pair
    with pytest.raises(SystemExit) as exc:
        compare("--content", content, "--style", tmp_path / "nope.jpg", "--output-dir", tmp_path / "cmp")
    assert exc.value.code == 2
    assert "nope.jpg" in capsys.readouterr().err
