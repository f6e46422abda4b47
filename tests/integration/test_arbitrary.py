"""Any painting in one pass (fastmmd.model.arbitrary) at work: a run through the real CLI that
validates per painting (conftest.stateful_run, whose exact resume tests/integration/test_resume.py
checks), inference by --style-image with blends, strength and one-line errors, the TorchScript export,
evaluate, the benchmark script, and paintings from a Hugging Face dataset; the .pt2 and ONNX exports,
style files and the torch-free path, and the default precision. The parts alone:
tests/unit/test_arbitrary.py and tests/unit/test_style_files.py."""

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
    # --mix 1,0 is painting a: its pixels up to the 8-bit rounding of float noise (the blend runs the
    # style predictor on both paintings at once, a GEMM of another shape: ~4e-6 apart in the embedding,
    # which moved 1 pixel of 4320 by 1/255 with AVX2 kernels), where painting b changes a third of them
    moved = (pixels["blend"] != pixels["a"]).float().mean()
    assert (pixels["blend"] - pixels["a"]).abs().max() <= 1.5 / 255 and moved < 0.01
    assert (pixels["a"] != pixels["b"]).float().mean() > 0.1
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


@pytest.mark.parametrize("flags, needle", [
    ([], "arbitrary-style network: give a painting"),
    (["--style", "0"], "--style-image"),
    (["--style-image", "PAINTING", "--mix", "1,1"], "--mix"),
    (["--style-image", "missing.png"], "missing.png"),
    (["--style-image", "PAINTING", "--fp32", "--bf16"], "--fp32 excludes"),
    (["--style-image", "PAINTING", "--save-style", "style.png"], ".npz"),
    (["--style-image", "PAINTING", "--style-image", "PAINTING", "--save-style", "s.npz"], "one --style-image"),
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
    assert min(summary["speed"][k] for k in ("new_painting_fp32", "style_file", "style_file_fp32")) > 0
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


@pytest.fixture(scope="module")
def arbitrary_exports(export_matrix):
    """A tiny arbitrary-style network with a strength input ([0, 2]) as a checkpoint and in every format."""
    return export_matrix("arbitrary")


@pytest.fixture
def photo_and_paintings(tmp_path):
    from conftest import synthetic_image

    paths = [tmp_path / name for name in ("photo.png", "a.png", "b.jpg")]
    for i, (path, size) in enumerate(zip(paths, [(45, 37), (60, 44), (50, 70)])):
        synthetic_image(*size, seed=20 + i).save(path)
    return paths


def pixels(path) -> torch.Tensor:
    return pil_to_tensor(Image.open(path)) * 255


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_pt2_and_onnx_exports_take_the_paintings_statistics_and_stylize_as_the_checkpoint(
        arbitrary_exports, photo_and_paintings, tmp_path, fmt):
    """Both exports take (image, mix, strength, style) and compute the eager network for one painting and
    blends of several, with the exact-parity check every export has; what fastmmd reads from the .pt2 is the
    network; `fastmmd stylize x.onnx --style-image` and load_stylizer(x).with_paintings work."""
    from fastmmd.model.files import network_from_checkpoint

    if fmt not in arbitrary_exports:
        pytest.skip("the onnx extra is not installed")
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    ckpt = arbitrary_exports["ckpt"]
    path, meta = arbitrary_exports[fmt], arbitrary_exports.meta(fmt)
    net, _ = network_from_checkpoint(ckpt)
    features = net.style_features
    inputs = meta["conditioning"]["inputs"]
    assert inputs["style"] == {"shape": ["paintings", features], "dtype": "float32"} and inputs["mix"]["default"] == [1.0]
    assert meta["conditioning"]["inputs_required"] == (fmt == "pt2") and meta["parity_max_abs_diff"] <= 1e-5
    module, _ = load_exported(path)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 19, 26, generator=g)
    for count, strength in ((1, None), (3, torch.tensor([0.5]))):
        phi = 3 * torch.rand(count, features, generator=g)
        mix = torch.tensor([0.2, 0.3, 0.5]) if count == 3 else torch.ones(1) if fmt == "pt2" else None
        s = strength if strength is not None or fmt == "onnx" else torch.ones(1)
        with torch.inference_mode():
            assert (module(x, mix, s, phi) - net(x, mix, s, phi)).abs().max() <= 1e-5, count
    if fmt == "pt2":
        read, _ = read_network(path)
        assert all(torch.equal(v, read.state_dict()[k]) for k, v in net.state_dict().items())
    photo, a, b = photo_and_paintings
    outputs = {}
    for name, model in (("ckpt", ckpt), (fmt, path)):
        assert main(["stylize", str(model), str(photo), "-o", str(tmp_path / name), "-q", "--fp32",
                     "--style-image", str(a), "--style-image", str(b), "--mix", "0.3,0.7"]) == 0
        outputs[name] = pixels(tmp_path / name / "photo_stylized.png")
    assert (outputs["ckpt"] - outputs[fmt]).abs().max() <= 1
    blend = load_stylizer(path, device="cpu", bf16=False).with_paintings([a, b], mix="0.3,0.7")
    assert (pil_to_tensor(blend(Image.open(photo))) * 255 - outputs["ckpt"]).abs().max() <= 1


def test_an_onnx_arbitrary_network_refuses_calls_without_their_paintings(arbitrary_exports):
    if "onnx" not in arbitrary_exports:
        pytest.skip("the onnx extra is not installed")
    pytest.importorskip("onnxruntime")
    from fastmmd.model.onnx_files import OnnxNetwork

    network = OnnxNetwork(arbitrary_exports["onnx"])
    x = torch.rand(1, 3, 16, 16).numpy()
    phi = torch.rand(2, network.style_features).numpy()
    for call, needle in ((lambda: network(x), "give a painting"), (lambda: network(x, style=phi), "2 paintings need"),
                         (lambda: network(x, style=phi[:, :5]), "statistics of 1 to")):
        with pytest.raises(UserError, match=needle) as err:
            call()
        assert "\n" not in str(err.value)
    assert network(x, mix=[0.5, 0.5], style=phi).shape == x.shape


def test_a_style_file_saved_once_stylizes_as_its_painting_also_without_torch(arbitrary_exports, photo_and_paintings,
                                                                             tmp_path, monkeypatch, capsys):
    """--save-style writes the painting's statistics (no INPUT needed); --style-image FILE.npz gives the
    painting's image; the torch-free path runs an arbitrary .onnx with it and writes the torch path's image."""
    from fastmmd.commands import stylize

    photo, painting, _ = photo_and_paintings
    ckpt, style = arbitrary_exports["ckpt"], tmp_path / "styles" / "a.npz"
    assert main(["stylize", str(ckpt), "--style-image", str(painting), "--save-style", str(style)]) == 0
    assert "wrote the statistics of a.png" in capsys.readouterr().err
    for name, flag in (("image", painting), ("file", style)):
        assert main(["stylize", str(ckpt), str(photo), "-o", str(tmp_path / name), "-q", "--style-image", str(flag)]) == 0
    assert torch.equal(pixels(tmp_path / "image" / "photo_stylized.png"), pixels(tmp_path / "file" / "photo_stylized.png"))
    if "onnx" not in arbitrary_exports:
        pytest.skip("the onnx extra is not installed")
    pytest.importorskip("onnxruntime")
    onnx = arbitrary_exports["onnx"]
    calls = []
    monkeypatch.setattr(stylize, "run", lambda args, _run=stylize.run: calls.append(1) or _run(args))
    assert main(["stylize", str(onnx), str(photo), "-o", str(tmp_path / "fast"), "-q", "--style-image", str(style)]) == 0
    assert not calls  # the torch-free path took it
    assert main(["stylize", str(onnx), str(photo), "-o", str(tmp_path / "torch"), "-q", "--style-image", str(style),
                 "--max-size", "4096"]) == 0
    assert calls
    fast, slow = (Image.open(tmp_path / k / "photo_stylized.png") for k in ("fast", "torch"))
    assert fast.tobytes() == slow.tobytes() and fast.text == slow.text and fast.text["fastmmd:condition"] == "a, s=1"


def test_an_arbitrary_network_runs_in_bf16_by_default_where_the_cpu_is_fast(arbitrary_exports, tiny_exports,
                                                                            photo_and_paintings, monkeypatch):
    """The auto rule (fastmmd.base.precision): the network and its paintings' VGG in bf16 where bf16 is
    fast, float32 elsewhere or with bf16=False (--fp32); a network for its own style keeps float32."""
    from fastmmd.base import precision

    photo, painting, _ = photo_and_paintings
    ckpt = arbitrary_exports["ckpt"]

    def dtype(stylizer) -> torch.dtype:
        return stylizer.model.net.encoder[0][1].bias.dtype

    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: True)
    auto, fp32 = load_stylizer(ckpt, device="cpu"), load_stylizer(ckpt, device="cpu", bf16=False)
    assert dtype(auto) == torch.bfloat16 and auto.vgg_bf16 and dtype(fp32) == torch.float32 and fp32.vgg_bf16 is False
    assert auto.model.net.style_predictor.norm.mean.dtype == torch.float32  # the painting MLP stays float32
    assert dtype(load_stylizer(tiny_exports["ckpt"], device="cpu")) == torch.float32
    a, b = (pil_to_tensor(s.with_paintings([painting])(Image.open(photo))) * 255 for s in (auto, fp32))
    assert 0 < (a - b).abs().max() <= 8  # bf16 ran, and the image stayed close
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: False)
    slow = load_stylizer(ckpt, device="cpu")
    assert dtype(slow) == torch.float32 and slow.vgg_bf16 is False


def test_export_re_exports_a_model_file_or_a_shipped_style_with_its_training_description(arbitrary_exports, tmp_path,
                                                                                         monkeypatch):
    """`fastmmd export FILE.pt|.pt2|NAME --format F`: the network read safely from the file (weights only),
    its training description and source checkpoint carried over (export_network itself: the tests above)."""
    import fastmmd.infer.export as export

    seen, source = {}, arbitrary_exports["pt2"]  # made (by the real export) before export_network is replaced
    monkeypatch.setattr(export, "export_network", lambda net, output, **kw: seen.update(net=net, **kw) or {})
    export.export_checkpoint(source, tmp_path / "arb.onnx", weights="int8")
    ckpt_net, ckpt_meta = read_checkpoint(arbitrary_exports["ckpt"]), arbitrary_exports.meta("pt2")
    assert seen["source"] == "arb.ckpt" and seen["weights"] == "int8" and seen["meta"] == ckpt_meta["training"]
    expected = {k[len("network."):]: v for k, v in ckpt_net["state_dict"].items() if k.startswith("network.")}
    assert all(torch.equal(v, expected[k]) for k, v in seen["net"].state_dict().items())
    with pytest.raises(UserError, match="the checkpoint"):  # never over its own source
        export.export_checkpoint(source, source)
