"""``fastmmd evaluate`` end to end on the tiny VGG stand-in: report, grid, cache, agreement with compare, bad input."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from fastmmd.__main__ import main
from fastmmd.base.grid import grid_size, tile_size

TINY = ["--vgg-weights", "random", "--vgg-width-divisor", "8", "--size", "32", "--iterations", "2", "--precision", "32",
        "--no-progress"]
METRICS = ("style_swd", "style_gram", "content")


@pytest.fixture
def photos(make_image):
    """Two content photos (48x40 and 40x48) and a style image."""
    contents = [make_image("photo.png", 48, 40, seed=0), make_image("other.png", 40, 48, seed=2)]
    return contents, make_image("art.png", 40, 48, seed=1)


def evaluate(models, contents, style, *extra) -> int:
    return main(["evaluate", *map(str, models), "--content", *map(str, contents), "--style", str(style), *TINY,
                 *map(str, extra)])


def test_report_grid_and_reused_optimization(photos, tiny_exports, tmp_path):
    contents, style = photos
    models = [tiny_exports[k] for k in ("ckpt", "torchscript", "pt2", "onnx") if k in tiny_exports]
    out = tmp_path / "eval"
    assert evaluate(models, contents, style, "--output", out) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["photos"] == ["photo", "other"] and (report["computed"], report["reused"]) == (2, 0)
    names = [m["name"] for m in report["models"]]
    assert names == ["tiny", *(p.name for p in models[1:])]  # stems collide: style.pt, style.pt2 -> file names
    optimized = report["optimize"]["rows"]
    assert [r["photo"] for r in optimized] == ["photo", "other"] and all(r["iterations"] == 2 for r in optimized)
    for row in report["reference"]["rows"]:
        assert row["content"] == 0.0 and row["style_swd"] > 0  # the photo is its own content
    for model in report["models"]:
        assert [r["photo"] for r in model["rows"]] == ["photo", "other"]
        for row, opt in zip(model["rows"], optimized):
            assert all(math.isfinite(row[k]) and row[k] > 0 for k in (*METRICS, "seconds"))
            assert row["ratio"]["style_swd"] == pytest.approx(row["style_swd"] / opt["style_swd"])
            assert Image.open(out / row["image"]).size == Image.open(out / opt["image"]).size
        assert model["mean"]["content"] == pytest.approx(sum(r["content"] for r in model["rows"]) / 2)
        assert model["ratio"]["content"] == pytest.approx(model["mean"]["content"] / report["optimize"]["mean"]["content"])
        assert model["trained"]["loss"] == "gram" and model["trained"]["steps"] == 3
        # every format holds the same network: the same scores as the checkpoint (8-bit outputs)
        first = report["models"][0]["rows"][0]["style_swd"]
        assert model["rows"][0]["style_swd"] == pytest.approx(first, rel=1e-3)
    assert Image.open(out / "images" / "tiny" / "photo.png").size == (32, 27)
    grid = Image.open(out / "grid.png")
    assert grid.size == grid_size(2 + len(models), 2, tile_size(27, 32, 128), 2)  # photo, models, optimize
    md = (out / "report.md").read_text()
    assert "| model: tiny |" in md and "## model: tiny" in md and md.count("| **mean** |") == len(models)

    # Another model against the same photos and style, sharing the cache: nothing is optimized again.
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    again = tmp_path / "again"
    assert evaluate(models[:1], contents, style, "--output", again, "--cache-dir", out / "cells") == 0
    second = json.loads((again / "report.json").read_text())
    assert (second["computed"], second["reused"]) == (0, 2)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == stamps
    assert second["optimize"]["mean"] == report["optimize"]["mean"]
    assert not (again / "cells").exists()
    # A changed setting (seed) is another cell.
    assert evaluate(models[:1], contents, style, "--output", again, "--cache-dir", out / "cells", "--seed", "1") == 0
    assert json.loads((again / "report.json").read_text())["computed"] == 2


def test_scores_agree_with_compare(photos, tiny_checkpoint, tmp_path):
    """Same photo, style, size, loss and seed: evaluate's optimize and model rows are compare's cells, number for
    number; one cache serves both (compare given evaluate's --cache-dir optimizes nothing again)."""
    contents, style = photos
    assert evaluate([tiny_checkpoint], contents[:1], style, "--output", tmp_path / "eval") == 0
    assert main(["compare", "--content", str(contents[0]), "--style", str(style), "--losses", "gram", "--style-weights",
                 "5", "--models", str(tiny_checkpoint), "--output-dir", str(tmp_path / "cmp"), *TINY,
                 "--cache-dir", str(tmp_path / "eval" / "cells")]) == 0
    ours = json.loads((tmp_path / "eval" / "report.json").read_text())
    report = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert (report["reused"], report["computed"]) == (1, 1)  # evaluate's optimized image; the model ran
    cells = report["cells"]
    transfer, model = (next(c for c in cells if c["kind"] == k) for k in ("transfer", "model"))
    for theirs, row in ((transfer, ours["optimize"]["rows"][0]), (model, ours["models"][0]["rows"][0])):
        assert row["style_swd"] == pytest.approx(theirs["metrics"]["style_sw"], rel=1e-6)
        assert row["style_gram"] == pytest.approx(theirs["metrics"]["style_gram"], rel=1e-6)
        # compare takes the photo's features before its VGG goes channels-last: float32 rounding of a small difference
        assert row["content"] == pytest.approx(theirs["metrics"]["content"], rel=1e-4)


@pytest.mark.parametrize("case,message", [
    ("missing model", "missing.ckpt"),
    ("not a model", "not a model file"),
    ("no content", "required: content"),
    ("missing content", "nope.png"),
    ("small size", "--size"),
    ("bad loss", "did you mean 'gram'"),
])
def test_bad_input_is_one_line_and_writes_nothing(photos, tiny_checkpoint, tmp_path, capsys, case, message):
    contents, style = photos
    out = tmp_path / "eval"
    args = ["evaluate", str(tiny_checkpoint), "--content", *map(str, contents), "--style", str(style), *TINY,
            "--output", str(out)]
    if case == "missing model":
        args[1] = str(tmp_path / "missing.ckpt")
    elif case == "not a model":
        args[1] = str(style)
    elif case == "no content":
        args = [a for a in args if a not in ("--content", *map(str, contents))]
    elif case == "missing content":
        args[args.index(str(contents[0]))] = str(tmp_path / "nope.png")
    elif case == "small size":
        args += ["--size", "8"]
    else:
        args += ["--loss", "gramm"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()
