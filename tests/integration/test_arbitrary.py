"""Any painting in one pass (fastmmd.model.arbitrary) at work: a run through the real CLI that
validates per painting (conftest.stateful_run, whose exact resume tests/integration/test_resume.py
checks), inference by --style-image with blends, strength and one-line errors, the TorchScript export,
evaluate, the benchmark script, and paintings from a Hugging Face dataset. The parts alone:
tests/unit/test_arbitrary.py."""

from __future__ import annotations

import json
import pytest
import torch
from conftest import REPO, synthetic_image
from PIL import Image

from fastmmd.__main__ import main
from fastmmd.base.errors import UserError
from fastmmd.base.images import pil_to_tensor, read_image
from fastmmd.infer.export import export_checkpoint, load_exported
from fastmmd.infer.stylize import load_stylizer
from fastmmd.model.arbitrary import EMBEDDING_LAYERS, PaintingEncoder
from fastmmd.model.files import read_checkpoint, read_network


@pytest.fixture
def arbitrary_run(stateful_run) -> dict:
    """The arbitrary-style run (conftest.stateful_run, its ``straight`` 10 steps): ``root`` holds
    ``photos/``, ``paintings`` the paintings it trained on."""
    return {**stateful_run, "root": stateful_run["photos"].parent}


def test_an_arbitrary_run_trains_and_validates_per_painting(arbitrary_run):
    a = read_checkpoint(arbitrary_run["straight"])
    assert a["global_step"] == 10
    assert any(k.startswith("network.style_predictor.") for k in a["state_dict"])
    assert not any(k.startswith("criterion.") for k in a["state_dict"])  # never the VGG
    meta = a["fastmmd"]
    assert meta["network"]["style_embedding"] == 6 and meta["style_images"] == []
    assert meta["conditioning"]["arbitrary"] == {"layers": list(EMBEDDING_LAYERS)}
    logged = arbitrary_run["logged"]
    assert all(logged[k] == logged[k] and logged[k] > 0 for k in ("val/style_swd", "val/content_distance", "val/style"))
    grid = Image.open(arbitrary_run["straight"].parent / "grids" / "latest.png")
    assert grid.text["rows"] == "content / painting / stylized"


def test_stylize_takes_any_painting_blends_and_strength_and_the_pt_export_agrees(arbitrary_run, tmp_path, capsys):
    ckpt, paintings = arbitrary_run["straight"], arbitrary_run["paintings"]
    photo = arbitrary_run["root"] / "photos" / "000.png"
    a, b = paintings / "painting0.png", paintings / "painting3.png"
    runs = {"a": ["--style-image", str(a)], "b": ["--style-image", str(b)],
            "blend": ["--style-image", str(a), "--style-image", str(b), "--mix", "1,0"],
            "weak": ["--style-image", str(a), "--strength", "0"]}
    out = {}
    for name, flags in runs.items():
        assert main(["stylize", str(ckpt), str(photo), "-o", str(tmp_path / name), "-q", *flags]) == 0
        out[name] = Image.open(tmp_path / name / "000_stylized.png")
    pixels = {k: pil_to_tensor(v) for k, v in out.items()}
    assert torch.equal(pixels["blend"], pixels["a"]) and not torch.equal(pixels["a"], pixels["b"])
    assert not torch.equal(pixels["weak"], pixels["a"])
    assert out["a"].text["fastmmd:condition"].startswith("painting0")
    stylizer = load_stylizer(ckpt, device="cpu")  # the Python API: the painting at call time
    assert torch.equal(pil_to_tensor(stylizer(Image.open(photo), style=a)), pixels["a"])
    exported = tmp_path / "arbitrary.pt"
    meta = export_checkpoint(ckpt, exported, weights="int8")
    assert meta["parity_max_abs_diff"] <= 1e-5 and meta["network"]["style_embedding"] == 6
    module, _ = load_exported(exported)
    net, _ = read_network(exported)
    phi = PaintingEncoder(meta, "cpu")([a])
    x = pil_to_tensor(Image.open(photo)).unsqueeze(0)
    assert torch.allclose(module(x, None, None, phi), net(x, None, None, phi), atol=1e-5)
    assert main(["stylize", str(exported), str(photo), "-o", str(tmp_path / "pt"), "-q", "--style-image", str(a)]) == 0
    with pytest.raises(UserError, match="TorchScript"):
        export_checkpoint(ckpt, tmp_path / "arbitrary.pt2")


@pytest.mark.parametrize("flags, needle", [
    ([], "arbitrary-style network: give a painting"),
    (["--style", "0"], "--style-image"),
    (["--style-image", "PAINTING", "--mix", "1,1"], "--mix"),
    (["--style-image", "missing.png"], "missing.png"),
])
def test_bad_arbitrary_flags_are_one_line(arbitrary_run, tmp_path, capsys, flags, needle):
    painting = arbitrary_run["paintings"] / "painting1.png"
    flags = [str(painting) if f == "PAINTING" else f for f in flags]
    photo = arbitrary_run["root"] / "photos" / "001.png"
    with pytest.raises(SystemExit) as exit_:
        main(["stylize", str(arbitrary_run["straight"]), str(photo), "-o", str(tmp_path), "-q", *flags])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_style_images_on_a_model_for_its_own_style_are_refused(tiny_checkpoint, make_image, tmp_path, capsys):
    photo, painting = make_image("photo.png"), make_image("painting.png", seed=3)
    with pytest.raises(SystemExit):
        main(["stylize", str(tiny_checkpoint), str(photo), "-o", str(tmp_path / "o"), "--style-image", str(painting)])
    assert "not for any painting" in capsys.readouterr().err


def test_the_benchmark_script_scores_the_network_against_optimize_on_held_out_pairs(arbitrary_run, tmp_path,
                                                                                    monkeypatch, capsys):
    import runpy

    root = arbitrary_run["root"]
    out = tmp_path / "bench"
    monkeypatch.setattr("sys.argv", ["bench_arbitrary.py", str(arbitrary_run["straight"]), "--photos",
                                     str(root / "photos"), "--paintings", str(arbitrary_run["paintings"]),
                                     "--photos-count", "2", "--paintings-count", "2", "--size", "32", "--iterations", "2",
                                     "--vgg-weights", "random", "--vgg-width-divisor", "8", "--output", str(out), "--speed", "32"])
    runpy.run_path(str(REPO / "scripts" / "bench_arbitrary.py"), run_name="__main__")
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"optimize", "last"}  # models are named by file stem
    assert summary["models"]["optimize"]["ratio"] == {"style_swd": 1.0, "content": 1.0}
    assert len(summary["models"]["last"]["rows"]) == 2 and summary["models"]["last"]["mean"]["style_swd"] > 0
    assert summary["speed"]["side"] == 32 and min(summary["speed"]["new_painting"], summary["speed"]["reused_painting"]) > 0
    assert "| last |" in capsys.readouterr().out
    picture = tmp_path / "picture.jpg"  # the README's picture, from the benchmark's folder
    monkeypatch.setattr("sys.argv", ["arbitrary_picture.py", str(out), "--model", "last", "--output", str(picture)])
    runpy.run_path(str(REPO / "scripts" / "arbitrary_picture.py"), run_name="__main__")
    assert Image.open(picture).height > 2 * 32 and "4 rows x 2 photos" in capsys.readouterr().out  # 2 paintings x (network, optimize)
    monkeypatch.setattr("sys.argv", ["arbitrary_picture.py", str(out), "--model", "last", "--model", "last",
                                     "--no-magenta", "--output", str(picture)])  # one row per network (the loss grid)
    runpy.run_path(str(REPO / "scripts" / "arbitrary_picture.py"), run_name="__main__")
    assert "6 rows x 2 photos" in capsys.readouterr().out  # 2 paintings x (two networks, optimize)


def test_paintings_from_a_hugging_face_dataset_pair_like_a_folder(tmp_path):
    from fastmmd.train.data import StyleDataModule

    for folder, count, base in ((tmp_path / "photos", 5, 0), (tmp_path / "paintings", 3, 50)):
        folder.mkdir()
        for i in range(count):
            synthetic_image(40 + i, 36, seed=base + i).save(folder / f"{i}.png")
    data = StyleDataModule(root=str(tmp_path / "photos"), painting_hf_dataset=str(tmp_path / "paintings"),
                           painting_val_size=1, painting_size=24, image_size=16, val_size=2, num_workers=0)
    data.setup("fit")
    photo, painting = data.train_set[(0, 0)]
    assert photo.shape == (3, 16, 16) and painting.shape == (3, 24, 24)
    assert len(data.train_set.paintings) == 2 and len(data.val_set.paintings) == 1  # one painting held out
    with pytest.raises(UserError, match="not both"):
        StyleDataModule(root=str(tmp_path / "photos"), painting_root=str(tmp_path / "paintings"),
                        painting_hf_dataset="x")


def test_evaluate_asks_an_arbitrary_network_for_the_style_it_scores(arbitrary_run, tmp_path):
    root, painting = arbitrary_run["root"], arbitrary_run["paintings"] / "painting2.png"
    out = tmp_path / "eval"
    assert main(["evaluate", str(arbitrary_run["straight"]), "--content", str(root / "photos" / "000.png"),
                 str(root / "photos" / "001.png"), "--style", str(painting), "--size", "32", "--iterations", "2",
                 "--vgg-weights", "random", "--vgg-width-divisor", "8", "--output", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    report = json.loads((out / "report.json").read_text())
    mine = pil_to_tensor(Image.open(out / report["models"][0]["rows"][0]["image"]))
    direct = load_stylizer(arbitrary_run["straight"], device="cpu").with_paintings([painting])
    expected = direct.stylize_tensor(read_image(root / "photos" / "000.png", 32).unsqueeze(0))[0]
    assert mine.shape == expected.shape and (mine - expected).abs().max() <= 1 / 255 + 1e-6  # that painting, 8 bits
    assert report["models"][0]["mean"]["style_swd"] > 0
