"""Any painting in one pass (fastmmd.model.arbitrary): the statistics the network reads, the conditional
norm's read-out of the embedding, per-sample style targets that equal the fixed ones, paired data,
training through the real CLI (resume exact), inference by --style-image with blends, strength and
one-line errors, and the TorchScript export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import synthetic_image, tiny_fit_args, write_tiny_checkpoint
from PIL import Image

from fastmmd.__main__ import main
from fastmmd.base.errors import UserError
from fastmmd.base.images import pil_to_tensor
from fastmmd.infer.export import export_checkpoint, load_exported
from fastmmd.infer.stylize import load_stylizer
from fastmmd.losses import StyleLoss, moments
from fastmmd.losses.criterion import StyleCriterion
from fastmmd.model.arbitrary import EMBEDDING_LAYERS, PaintingEncoder, statistics_width, style_statistics
from fastmmd.model.conditioning import ConditionalAffine
from fastmmd.model.files import read_checkpoint, read_network
from fastmmd.model.networks import TransformerNet
from fastmmd.train.cli import build_cli
from fastmmd.train.data import FileSource, ImageDataset, PairedDataset
from fastmmd.train.module import StyleTransferModule

F8 = statistics_width(8)  # phi's length for the tiny VGG stand-in


def arbitrary_net(strength_width: int = 4, seed: int = 0) -> TransformerNet:
    torch.manual_seed(seed)
    return TransformerNet(8, 1, style_embedding=6, style_features=F8, strength_width=strength_width)


def test_statistics_are_the_log_compressed_moments_the_bn_loss_aligns(tiny_vgg):
    image = pil_to_tensor(synthetic_image(40, 36, seed=3)).unsqueeze(0)
    features = tiny_vgg(image, EMBEDDING_LAYERS)
    phi = style_statistics(features)
    assert phi.shape == (1, F8) == (1, 2 * sum(features[t].shape[1] for t in EMBEDDING_LAYERS))
    offset = 0
    for layer in EMBEDDING_LAYERS:
        x = moments.positions(features[layer].float())
        c = x.shape[1]
        assert torch.allclose(phi[0, offset:offset + c], torch.log1p(moments.mean(x)[0]), atol=1e-6)
        assert torch.allclose(phi[0, offset + c:offset + 2 * c], torch.log1p(moments.std(x)[0]), atol=1e-6)
        offset += 2 * c


def test_the_norms_read_c_equal_one_and_the_embedding_and_blends_interpolate_embeddings():
    net = arbitrary_net().eval()
    slots = [m for m in net.modules() if isinstance(m, ConditionalAffine)]
    assert slots and all(m.weight.shape[0] == 1 + 6 for m in slots)
    x, phi = torch.rand(2, 3, 21, 19), 2 * torch.rand(2, F8)
    with torch.no_grad():
        e = net.embed(x, None, torch.tensor([0.5]), phi)  # per sample
        assert torch.allclose(net.condition(x, None, torch.tensor([0.5]), phi), torch.cat([torch.ones(2, 1), e], 1))
        blend = net.embed(x, torch.tensor([0.25, 0.75]), torch.tensor([0.5]), phi)
        assert torch.allclose(blend, (0.25 * e[0] + 0.75 * e[1]).expand(2, 6), atol=1e-6)
        one = net(x[:1], None, None, phi[1:])
        assert torch.allclose(net(x[:1], torch.tensor([0.0, 1.0]), None, phi), one, atol=1e-6)
    with pytest.raises(ValueError, match="style statistics"):
        net(x)
    with pytest.raises(ValueError, match="no style statistics"):
        TransformerNet(8, 1, styles=2)(x, style=phi)
    with pytest.raises(ValueError, match="not conditioned"):
        TransformerNet(8, 1)(x, style=phi)


def test_a_warm_started_arbitrary_network_is_the_source_for_every_painting_and_strength(tmp_path):
    source = write_tiny_checkpoint(tmp_path / "single.ckpt", seed=4)
    single, _ = read_network(source)
    module = StyleTransferModule(conditioning=["arbitrary", "strength"], embedding_width=6, init_from=str(source),
                                 vgg_weights="random", vgg_width_divisor=8, network_width=8, residual_blocks=1)
    net, x = module.network.eval(), torch.rand(2, 3, 21, 19)
    assert net.config()["style_features"] == F8
    with torch.no_grad():
        for s in (0.0, 1.0, 2.0):
            assert torch.allclose(net(x, None, torch.tensor([s]), 3 * torch.rand(2, F8)), single(x), atol=1e-6)


@pytest.mark.parametrize("method", ["gram", "linear", "poly", "bn", "bn+poly"])
def test_per_sample_targets_give_the_distance_of_each_paintings_fixed_target(tiny_vgg, method):
    paintings = torch.stack([pil_to_tensor(synthetic_image(40, 32, seed=s)) for s in (5, 6)])
    generated = torch.rand(2, 3, 32, 32)
    per_sample = StyleCriterion(StyleLoss(method=method), vgg=tiny_vgg)
    targets = per_sample.sample_targets(tiny_vgg(paintings, per_sample.style_layers))
    terms = per_sample(generated, generated, style_targets=targets)
    for b in range(2):  # the same as a criterion whose one fixed target is painting b
        fixed = StyleCriterion(StyleLoss(method=method), vgg=tiny_vgg)
        fixed.set_style([paintings[b:b + 1]])
        assert torch.allclose(terms["style"][b], fixed(generated[b:b + 1], generated[b:b + 1])["style"][0], rtol=1e-5)
    with pytest.raises(ValueError, match="one target per sample"):
        per_sample(generated, generated, style_targets=targets[:1])


def _paired(tmp_path: Path, mode: str) -> PairedDataset:
    photos, paintings = tmp_path / "photos", tmp_path / "paintings"
    for folder, count, base in ((photos, 5, 0), (paintings, 3, 50)):
        folder.mkdir(exist_ok=True)
        for i in range(count):
            synthetic_image(40 + i, 36, seed=base + i).save(folder / f"{i}.png")
    source = lambda f: FileSource(sorted(str(p) for p in f.iterdir()))  # noqa: E731
    return PairedDataset(ImageDataset(source(photos), range(5), 16, mode, seed=1),
                         ImageDataset(source(paintings), range(3), 24, mode, seed=2, zoom=1.5), seed=1)


def test_paired_data_draws_a_painting_per_photo_from_the_seed_and_fixes_validation_pairs(tmp_path):
    train = _paired(tmp_path, "train")
    photo, painting = train[(2, 3)]
    assert photo.shape == (3, 16, 16) and painting.shape == (3, 24, 24)
    again = train[(2, 3)]
    assert torch.equal(again[0], photo) and torch.equal(again[1], painting)  # a resume sees the same pair
    drawn = {tuple(train[(p, e)][1].flatten()[:8].tolist()) for p in range(5) for e in range(4)}
    assert len(drawn) > 3  # paintings and crops vary with the photo and the epoch
    val = _paired(tmp_path, "val")
    assert torch.equal(val[4][1], val[1][1])  # photo j with painting j mod 3, centre-cropped


@pytest.fixture(scope="module")
def arbitrary_run(tmp_path_factory) -> dict[str, Path]:
    """Two tiny arbitrary-style fits (6 steps straight; 3 + a resume to 6) through the real CLI."""
    root = tmp_path_factory.mktemp("arbitrary")
    args = tiny_fit_args(root)
    i = args.index("--model.style_images")
    del args[i:i + 2]
    paintings = root / "paintings"
    paintings.mkdir()
    for k in range(5):
        synthetic_image(60, 50 + k, seed=200 + k).save(paintings / f"painting{k}.png")
    common = [*args, "--model.conditioning", "[arbitrary, strength]", "--model.embedding_width", "6",
              "--data.painting_root", str(paintings), "--data.painting_size", "32", "--data.painting_val_size", "2",
              "--trainer.val_check_interval", "3", "--checkpoint.every_n_train_steps", "100", "--model.lr", "3e-3"]
    straight = build_cli(["fit", *common, "--trainer.max_steps", "6", "--run_name", "straight"])
    build_cli(["fit", *common, "--trainer.max_steps", "3", "--run_name", "split"])
    build_cli(["fit", *common, "--trainer.max_steps", "6", "--run_name", "split", "--ckpt_path", "last"])
    logged = {k: float(v) for k, v in straight.trainer.logged_metrics.items()}
    return {"root": root, "straight": root / "runs" / "straight" / "last.ckpt",
            "split": root / "runs" / "split" / "last.ckpt", "logged": logged, "paintings": paintings}


@pytest.mark.slow
def test_an_arbitrary_run_trains_validates_per_painting_and_resumes_exactly(arbitrary_run):
    a, b = (read_checkpoint(arbitrary_run[k]) for k in ("straight", "split"))
    assert a["global_step"] == b["global_step"] == 6
    for key, value in a["state_dict"].items():  # the same photos, paintings, crops and strengths after the resume
        assert torch.allclose(value, b["state_dict"][key], rtol=0, atol=1e-6), key
    assert any(k.startswith("network.style_predictor.") for k in a["state_dict"])
    assert not any(k.startswith("criterion.") for k in a["state_dict"])  # never the VGG
    meta = a["fastmmd"]
    assert meta["network"]["style_embedding"] == 6 and meta["style_images"] == []
    assert meta["conditioning"]["arbitrary"] == {"layers": list(EMBEDDING_LAYERS)}
    logged = arbitrary_run["logged"]
    assert all(logged[k] == logged[k] and logged[k] > 0 for k in ("val/style_swd", "val/content_distance", "val/style"))
    grid = Image.open(arbitrary_run["straight"].parent / "grids" / "latest.png")
    assert grid.text["rows"] == "content / painting / stylized"


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.parametrize("kwargs, needle", [
    ({"conditioning": ["arbitrary"], "style_images": ["a.png"]}, "give no model.style_images"),
    ({"conditioning": ["arbitrary", "styles"]}, "exclude each other"),
    ({"conditioning": ["arbitrary"], "embedding_width": 0}, "embedding_width"),
])
def test_bad_arbitrary_settings_are_user_errors(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        StyleTransferModule(**{"vgg_weights": "random", "vgg_width_divisor": 8, **kwargs})


@pytest.mark.slow
def test_the_benchmark_script_scores_the_network_against_optimize_on_held_out_pairs(arbitrary_run, tmp_path,
                                                                                    monkeypatch, capsys):
    import runpy

    root = arbitrary_run["root"]
    out = tmp_path / "bench"
    monkeypatch.setattr("sys.argv", ["bench_arbitrary.py", str(arbitrary_run["straight"]), "--photos",
                                     str(root / "photos"), "--paintings", str(arbitrary_run["paintings"]),
                                     "--photos-count", "2", "--paintings-count", "2", "--size", "32", "--iterations", "2",
                                     "--vgg-weights", "random", "--vgg-width-divisor", "8", "--output", str(out), "--speed", "32"])
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "bench_arbitrary.py"), run_name="__main__")
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"optimize", "last"}  # models are named by file stem
    assert summary["models"]["optimize"]["ratio"] == {"style_swd": 1.0, "content": 1.0}
    assert len(summary["models"]["last"]["rows"]) == 2 and summary["models"]["last"]["mean"]["style_swd"] > 0
    assert summary["speed"]["side"] == 32 and min(summary["speed"]["new_painting"], summary["speed"]["reused_painting"]) > 0
    assert "| last |" in capsys.readouterr().out
    picture = tmp_path / "picture.jpg"  # the README's picture, from the benchmark's folder
    monkeypatch.setattr("sys.argv", ["arbitrary_picture.py", str(out), "--model", "last", "--output", str(picture)])
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "arbitrary_picture.py"), run_name="__main__")
    assert Image.open(picture).height > 2 * 32 and "4 rows x 2 photos" in capsys.readouterr().out  # 2 paintings x (network, optimize)


def test_paintings_from_a_hugging_face_dataset_pair_like_a_folder(tmp_path):
    from fastmmd.train.data import StyleDataModule

    _paired(tmp_path, "train")  # writes photos/ and paintings/
    data = StyleDataModule(root=str(tmp_path / "photos"), painting_hf_dataset=str(tmp_path / "paintings"),
                           painting_val_size=1, painting_size=24, image_size=16, val_size=2, num_workers=0)
    data.setup("fit")
    photo, painting = data.train_set[(0, 0)]
    assert photo.shape == (3, 16, 16) and painting.shape == (3, 24, 24)
    assert len(data.train_set.paintings) == 2 and len(data.val_set.paintings) == 1  # one painting held out
    with pytest.raises(UserError, match="not both"):
        StyleDataModule(root=str(tmp_path / "photos"), painting_root=str(tmp_path / "paintings"),
                        painting_hf_dataset="x")


@pytest.mark.slow
def test_evaluate_asks_an_arbitrary_network_for_the_style_it_scores(arbitrary_run, tmp_path):
    import json

    root, painting = arbitrary_run["root"], arbitrary_run["paintings"] / "painting2.png"
    out = tmp_path / "eval"
    assert main(["evaluate", str(arbitrary_run["straight"]), "--content", str(root / "photos" / "000.png"),
                 str(root / "photos" / "001.png"), "--style", str(painting), "--size", "32", "--iterations", "2",
                 "--vgg-weights", "random", "--vgg-width-divisor", "8", "--output", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    report = json.loads((out / "report.json").read_text())
    from fastmmd.base.images import read_image

    mine = pil_to_tensor(Image.open(out / report["models"][0]["rows"][0]["image"]))
    direct = load_stylizer(arbitrary_run["straight"], device="cpu").with_paintings([painting])
    expected = direct.stylize_tensor(read_image(root / "photos" / "000.png", 32).unsqueeze(0))[0]
    assert mine.shape == expected.shape and (mine - expected).abs().max() <= 1 / 255 + 1e-6  # that painting, 8 bits
    assert report["models"][0]["mean"]["style_swd"] > 0


def test_the_step_profile_script_times_every_part(monkeypatch, capsys):
    import runpy

    monkeypatch.setattr("sys.argv", ["bench_arbitrary_step.py", "--size", "32", "--batch", "2", "--steps", "1",
                                     "--warmup", "0", "--vgg-weights", "random", "--vgg-width-divisor", "8", "--width", "8"])
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "bench_arbitrary_step.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert all(f"| {part} |" in out for part in ("paintings", "network", "loss", "backward")) and "whole step" in out


def test_statistics_are_standardised_by_running_estimates_not_by_the_batch():
    from fastmmd.model.arbitrary import StatisticsNorm

    norm = StatisticsNorm(5, momentum=0.5)
    first, second = 3 + torch.rand(4, 5), 3 + torch.rand(4, 5)
    norm.train()(first)
    assert torch.allclose(norm.mean, first.mean(0)) and torch.allclose(norm.var, first.var(0))  # the first batch sets them
    norm(second)
    assert torch.allclose(norm.mean, (first.mean(0) + second.mean(0)) / 2)
    norm(second[:1])  # one painting: the mean moves, the variance cannot be estimated
    assert torch.allclose(norm.var, (first.var(0) + second.var(0)) / 2)
    norm.eval()
    alone, together = norm(second[:1]), norm(torch.cat([second[:1], first]))[:1]
    assert torch.equal(alone, together)  # a painting's input does not depend on its batchmates
    assert torch.allclose(alone, (second[:1] - norm.mean) / (norm.var + norm.eps).sqrt())
