"""``fastmmd optimize`` end to end on the tiny stand-in, and its user-error contract."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from PIL import Image

from fastmmd.__main__ import main
from fastmmd.base.images import read_image

TINY = ["--vgg-weights", "random", "--vgg-width-divisor", "8", "--no-progress"]


@pytest.fixture
def pair(make_image):
    return make_image("content.png", 60, 40, 1), make_image("style.jpg", 50, 50, 2)


def optimize(content, style, out, *extra):
    return main(["optimize", "--content", str(content), "--style", str(style), "--size", "48",
                 "--iterations", "3", "--output", str(out), *TINY, *extra])


@pytest.mark.parametrize("loss", ["gram", "linear", "poly", "gaussian", "bn", "bn+poly"])
def test_optimize_writes_an_image_with_settings(pair, tmp_path, loss):
    out = tmp_path / "out.png"
    assert optimize(*pair, out, "--loss", loss) == 0
    img = Image.open(out)
    assert img.size == (48, 32)  # long edge 48, content aspect 60:40 kept
    meta = json.loads(img.text["fastmmd"])
    assert meta["loss"] == loss and meta["steps_run"] == 3 and meta["content"] == "content.png"
    terms = meta["final_terms"]
    assert all(math.isfinite(v) for v in terms.values()), terms  # no NaN and no inf
    assert terms["total"] > 0 and terms["style"] > 0, terms


def test_same_seed_same_image_and_seed_matters(pair, tmp_path):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    for out, seed in ((a, "1"), (b, "1"), (c, "2")):
        optimize(*pair, out, "--loss", "gaussian", "--init", "random", "--seed", seed)
    assert torch.equal(read_image(a), read_image(b))
    assert not torch.equal(read_image(a), read_image(c))


def test_save_every_blend_preserve_color_adam_and_early_stop(pair, make_image, tmp_path):
    out = tmp_path / "run" / "out.png"
    style2 = make_image("style2.png", 40, 30, 3)
    assert optimize(pair[0], pair[1], out, "--style", str(style2), "--style-blend", "0.7,0.3", "--save-every", "1",
                    "--preserve-color", "--optimizer", "adam", "--init", str(pair[1])) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.0001.png", "out.0002.png", "out.0003.png", "out.png"]
    assert json.loads(Image.open(out).text["fastmmd"])["styles"] == ["style.jpg", "style2.png"]
    stop = tmp_path / "stop.png"
    main(["optimize", "--content", str(pair[0]), "--style", str(pair[1]), "--size", "48", "--iterations", "50",
          "--stop-tol", "0.5", "--output", str(stop), *TINY])
    meta = json.loads(Image.open(stop).text["fastmmd"])
    assert meta["stopped_early"] and meta["steps_run"] < 50


def test_config_file_and_paper_preset(pair, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"content: {pair[0]}\nstyle: [{pair[1]}]\nloss: bn\nsize: 40\niterations: 2\n"
                   f"vgg_weights: random\nvgg_width_divisor: 8\nno_progress: true\noutput: {tmp_path / 'cfg.png'}\n")
    assert main(["optimize", "--config", str(cfg)]) == 0
    assert json.loads(Image.open(tmp_path / "cfg.png").text["fastmmd"])["loss"] == "bn"
    from pathlib import Path

    preset = Path(__file__).parents[1] / "configs" / "optimize_paper.yaml"
    out = tmp_path / "paper.png"
    assert main(["optimize", "--config", str(preset), "--content", str(pair[0]), "--style", str(pair[1]),
                 "--size", "40", "--iterations", "2", "--output", str(out), *TINY]) == 0
    meta = json.loads(Image.open(out).text["fastmmd"])
    assert meta["style_layers"] == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert meta["content_layers"] == ["relu4_2"]


@pytest.mark.parametrize("case", ["missing", "truncated", "output-dir", "loss", "blend", "layer", "number", "flag", "size"])
def test_bad_input_is_one_line_and_exit_2(pair, tmp_path, capsys, case):
    content, style = pair
    out = tmp_path / "out.png"
    args = {"missing": ["--style", str(tmp_path / "nope.jpg")],
            "truncated": ["--style", str(tmp_path / "cut.jpg")],
            "output-dir": ["--style", str(style)],
            "loss": ["--style", str(style), "--loss", "grma"],
            "blend": ["--style", str(style), "--style-blend", "0.5,0.5"],
            "layer": ["--style", str(style), "--style-layers", "relu9_9"],
            "number": ["--style", str(style), "--style-weight", "lots"],
            "flag": ["--style", str(style), "--frobnicate"],
            "size": ["--style", str(style), "--size", "0"]}[case]
    (tmp_path / "cut.jpg").write_bytes(style.read_bytes()[:100])
    target = tmp_path if case == "output-dir" else out
    with pytest.raises(SystemExit) as exit_info:
        main(["optimize", "--content", str(content), *args, "--output", str(target), "--iterations", "1", *TINY])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fastmmd: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("extra, needle", [
    (["--style-weight", "nan"], "--style-weight must be finite, not nan"),
    (["--style-weight", "inf"], "--style-weight must be finite, not inf"),
    (["--lr=-inf"], "--lr must be finite"),
    (["--style-blend", "0.7,nan"], "--style-blend must be finite"),
    (["--size", "0"], "--size must be at least 16 px (VGG pools 4 times), not 0"),
    (["--size", "4"], "--size must be at least 16 px (VGG pools 4 times), not 4"),
    (["--size", "100000"], "GiB of cpu memory"),  # before any image is resized (that alone took 100 GB)
])
def test_bad_numbers_name_the_flag(pair, tmp_path, capsys, monkeypatch, extra, needle):
    import fastmmd.commands.optimize

    monkeypatch.setattr(fastmmd.commands.optimize, "read_image", lambda *a, **k: pytest.fail("read before the checks"))
    content, style = pair
    with pytest.raises(SystemExit) as exit_info:
        main(["optimize", "--content", str(content), "--style", str(style), "--style", str(style), *extra,
              "--output", str(tmp_path / "out.png"), "--iterations", "1", "--device", "cpu", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and needle in err[0], err


def test_memory_estimate_suggests_a_size_that_fits(pair, tmp_path, capsys, monkeypatch):
    import fastmmd.base.devices

    monkeypatch.setattr(fastmmd.base.devices, "available_memory", lambda device: 40 * 40 * 6500)
    content, style = pair
    with pytest.raises(SystemExit):
        optimize(content, style, tmp_path / "out.png", "--size", "400")
    err = capsys.readouterr().err
    assert "about --size 40 would fit" in err or "about --size 48 would fit" in err, err
    assert optimize(content, style, tmp_path / "out.png", "--size", "32") == 0


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastmmd", "optimize", "--content", str(tmp_path / "x.png"),
                           "--style", "y.png"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "x.png" in proc.stderr


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "optimize", "export", "stylize", "compare", "evaluate", "models"):
        assert f"  {command} " in text
    with pytest.raises(SystemExit) as exit_info:
        main(["optimise"])
    assert exit_info.value.code == 2


def test_precision_auto_resolves_per_hardware(monkeypatch):
    """The CPU check is injected both ways (tests/test_precision.py tests the check itself)."""
    import torch

    from fastmmd.base import precision
    from fastmmd.base.precision import resolve_precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: False)
    assert resolve_precision("auto", cpu) == "32" and resolve_precision("32", cpu) == "32"
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16" and resolve_precision("bf16", cpu) == "bf16"
