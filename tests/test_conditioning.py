"""One network for several styles and a strength knob (fastmmd.model.conditioning): the conditional norm's
maths, unchanged single-style networks, training through the real CLI (save, resume, warm start),
exports with conditioning inputs, the safe reader, inference flags and their errors, grids, and a
trained strength knob that really trades style for content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import synthetic_image, tiny_fit_args, write_tiny_checkpoint
from PIL import Image

from fastmmd.__main__ import main
from fastmmd.base.errors import UserError
from fastmmd.base.grid import grid_size, tile_size
from fastmmd.base.images import pil_to_tensor, read_image
from fastmmd.infer.conditions import Condition, ConditionSpace
from fastmmd.infer.export import FORMATS, export_checkpoint, load_exported
from fastmmd.infer.stylize import load_stylizer
from fastmmd.losses.criterion import StyleCriterion
from fastmmd.model.conditioning import ConditionalAffine
from fastmmd.model.files import read_checkpoint, read_network
from fastmmd.model.networks import TransformerNet
from fastmmd.train.cli import build_cli
from fastmmd.train.draws import draw_conditions
from fastmmd.train.module import StyleTransferModule
from fastmmd.vgg.features import STYLE_LAYERS

#: TransformerNet(8, 1)'s state_dict as it was before conditioning existed (keys and shapes).
SINGLE_STYLE_KEYS = [
    ("encoder.0.1.weight", (8, 3, 9, 9)), ("encoder.0.1.bias", (8,)), ("encoder.0.2.weight", (8,)),
    ("encoder.0.2.bias", (8,)), ("encoder.1.1.weight", (16, 8, 4, 4)), ("encoder.1.1.bias", (16,)),
    ("encoder.1.2.weight", (16,)), ("encoder.1.2.bias", (16,)), ("encoder.2.1.weight", (32, 16, 4, 4)),
    ("encoder.2.1.bias", (32,)), ("encoder.2.2.weight", (32,)), ("encoder.2.2.bias", (32,)),
    ("residuals.0.body.0.1.weight", (32, 32, 3, 3)), ("residuals.0.body.0.1.bias", (32,)),
    ("residuals.0.body.0.2.weight", (32,)), ("residuals.0.body.0.2.bias", (32,)),
    ("residuals.0.body.1.1.weight", (32, 32, 3, 3)), ("residuals.0.body.1.1.bias", (32,)),
    ("residuals.0.body.1.2.weight", (32,)), ("residuals.0.body.1.2.bias", (32,)),
    ("decoder.0.conv.1.weight", (16, 32, 3, 3)), ("decoder.0.conv.1.bias", (16,)), ("decoder.0.conv.2.weight", (16,)),
    ("decoder.0.conv.2.bias", (16,)), ("decoder.1.conv.1.weight", (8, 16, 3, 3)), ("decoder.1.conv.1.bias", (8,)),
    ("decoder.1.conv.2.weight", (8,)), ("decoder.1.conv.2.bias", (8,)), ("decoder.2.1.weight", (3, 8, 9, 9)),
    ("decoder.2.1.bias", (3,)),
]


def one_hot(k: int, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(k), n).float()


@pytest.fixture(scope="module")
def conditioned(tmp_path_factory) -> dict[str, Path]:
    """A random 3-style network with a strength input ([0, 2]) as a checkpoint and in every export format."""
    root = tmp_path_factory.mktemp("conditioned")
    files = {"ckpt": write_tiny_checkpoint(root / "multi.ckpt", styles=3, strength_width=4, seed=3)}
    for fmt, suffix in FORMATS.items():
        if fmt == "onnx":
            pytest.importorskip("onnxscript")
        files[fmt] = root / f"multi{suffix}"
        export_checkpoint(files["ckpt"], files[fmt], fmt=fmt)
    return files


# ----------------------------------------------------------------------------------- the maths
def test_one_hot_mix_is_that_styles_affine_norm_and_a_blend_averages_parameters():
    torch.manual_seed(0)
    norm = ConditionalAffine(4, styles=3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 4, 5, 6)
    for k in range(3):
        expected = x * norm.weight[k][:, None, None] + norm.bias[k][:, None, None]
        assert torch.allclose(norm(x, one_hot(k, 3).expand(2, 3)), expected, atol=1e-6)
    half = torch.tensor([[0.5, 0.0, 0.5]]).expand(2, 3)
    gamma, beta = (norm.weight[0] + norm.weight[2]) / 2, (norm.bias[0] + norm.bias[2]) / 2
    assert torch.allclose(norm(x, half), x * gamma[:, None, None] + beta[:, None, None], atol=1e-6)


def test_a_styles_network_in_style_k_is_a_single_style_network_with_style_ks_norms():
    torch.manual_seed(1)
    multi = TransformerNet(8, 1, styles=3).eval()
    with torch.no_grad():
        for m in multi.modules():
            if isinstance(m, ConditionalAffine):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    x = torch.rand(2, 3, 19, 23)
    for k in range(3):
        single = TransformerNet(8, 1).eval()
        single.load_state_dict({n: p for n, p in multi.state_dict().items() if n in single.state_dict()}, strict=False)
        norms = [m for m in single.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
        slots = [m for m in multi.modules() if isinstance(m, ConditionalAffine)]
        with torch.no_grad():
            for norm, slot in zip(norms, slots, strict=True):
                norm.weight.copy_(slot.weight[k])
                norm.bias.copy_(slot.bias[k])
        assert torch.allclose(multi(x, one_hot(k, 3)), single(x), atol=1e-5)
    assert not torch.allclose(multi(x, one_hot(0, 3)), multi(x, one_hot(1, 3)), atol=1e-3)
    assert torch.equal(multi(x), multi(x, one_hot(0, 3)))  # the default is style 0


def test_an_unconditioned_network_keeps_its_keys_config_and_call():
    net = TransformerNet(8, 1)
    assert [(k, tuple(v.shape)) for k, v in net.state_dict().items()] == SINGLE_STYLE_KEYS
    assert net.config() == {"width": 8, "residual_blocks": 1, "downsample_kernel": 4} and not net.conditioned
    with pytest.raises(ValueError, match="not conditioned"):
        net(torch.rand(1, 3, 16, 16), one_hot(0, 2))
    both = TransformerNet(8, 1, styles=2, strength_width=4)
    assert both.config() == {"width": 8, "residual_blocks": 1, "downsample_kernel": 4, "styles": 2, "strength_width": 4}
    assert TransformerNet.from_config(both.config()).config() == both.config()


def test_the_criterion_picks_each_samples_own_style_target(tiny_vgg):
    a, b = (pil_to_tensor(synthetic_image(40, 36, seed=s)).unsqueeze(0) for s in (5, 6))
    separate = StyleCriterion(vgg=tiny_vgg)
    separate.set_style([a, b], separate=True)
    only_a, only_b = StyleCriterion(vgg=tiny_vgg), StyleCriterion(vgg=tiny_vgg)
    only_a.set_style([a])
    only_b.set_style([b])
    generated = torch.stack([pil_to_tensor(synthetic_image(32, 32, seed=s)) for s in (7, 8, 9)])
    terms = separate(generated, styles=torch.tensor([1, 0, 1]), style_scale=torch.tensor([0.0, 1.0, 2.0]))
    want = torch.stack([only_b(generated[:1])["style"][0], only_a(generated[1:2])["style"][0],
                        only_b(generated[2:])["style"][0]])
    assert torch.allclose(terms["style"], want, rtol=1e-5)
    plain = only_b(generated)
    total = separate.style_weight * terms["style"] * torch.tensor([0.0, 1.0, 2.0]) + plain["content"] + separate.tv_weight * plain["tv"]
    assert torch.allclose(terms["total"], total, rtol=1e-5)  # the strength scales the style weight only
    with pytest.raises(UserError, match="style_blend"):
        separate.set_style([a, b], [0.5, 0.5], separate=True)


def test_draws_are_seeded_per_image_or_per_batch():
    first = draw_conditions(6, 4, (0.0, 2.0), "image", torch.Generator().manual_seed(0))
    again = draw_conditions(6, 4, (0.0, 2.0), "image", torch.Generator().manual_seed(0))
    assert torch.equal(first.styles, again.styles) and torch.equal(first.strength, again.strength)
    assert first.mix.shape == (6, 4) and torch.equal(first.mix.argmax(1), first.styles)
    assert 0 <= float(first.strength.min()) and float(first.strength.max()) <= 2 and len(set(first.strength.tolist())) == 6
    batch = draw_conditions(6, 4, (0.5, 1.5), "batch", torch.Generator().manual_seed(1))
    assert len(set(batch.styles.tolist())) == 1 and len(set(batch.strength.tolist())) == 1


# ----------------------------------------------------------------------------------- training
def _multi_args(root: Path) -> list[str]:
    args = tiny_fit_args(root)
    styles = [root / "style.png"]
    for seed in (77, 55):
        styles.append(root / f"style{seed}.png")
        synthetic_image(64, 64, seed=seed).save(styles[-1])
    i = args.index("--model.style_images")
    args[i + 1] = f"[{','.join(map(str, styles))}]"
    return args


def test_a_conditioned_run_saves_resumes_exactly_and_stylizes_by_name(tmp_path, capsys):
    common = [*_multi_args(tmp_path), "--model.conditioning", "[styles, strength]", "--model.strength_range", "[0, 3]",
              "--checkpoint.every_n_train_steps", "100", "--trainer.val_check_interval", "3", "--model.lr", "3e-3"]
    straight = build_cli(["fit", *common, "--trainer.max_steps", "6", "--run_name", "straight"])
    build_cli(["fit", *common, "--trainer.max_steps", "3", "--run_name", "split"])
    build_cli(["fit", *common, "--trainer.max_steps", "6", "--run_name", "split", "--ckpt_path", "last"])
    a, b = (read_checkpoint(tmp_path / "runs" / r / "last.ckpt") for r in ("straight", "split"))
    assert a["global_step"] == b["global_step"] == 6
    for key, value in a["state_dict"].items():  # the same styles and strengths were drawn after the resume
        assert torch.allclose(value, b["state_dict"][key], rtol=0, atol=1e-6), key
    meta = a["fastmmd"]
    assert meta["network"]["styles"] == 3 and meta["network"]["strength_width"] > 0
    assert meta["conditioning"] == {"draw": "image", "styles": ["style", "style77", "style55"],
                                    "strength": {"range": [0.0, 3.0], "default": 1.0}}
    logged = straight.trainer.logged_metrics
    assert all(torch.isfinite(logged[f"val/style_swd/{n}"]) for n in ("style", "style77", "style55"))
    ckpt, photo = tmp_path / "runs" / "straight" / "last.ckpt", tmp_path / "photos" / "000.png"
    outputs = {}
    for flags in (["--style", "style77"], ["--style", "1"], ["--mix", "style=1,style55=1", "--strength", "2.5"], []):
        out = tmp_path / "out" / "-".join(flags or ["default"])
        assert main(["stylize", str(ckpt), str(photo), "-o", str(out), "-q", *flags]) == 0
        outputs[tuple(flags)] = pil_to_tensor(Image.open(out / "000_stylized.png"))
        assert Image.open(out / "000_stylized.png").text["fastmmd:condition"]
    assert torch.equal(outputs[("--style", "style77")], outputs[("--style", "1")])
    assert not torch.equal(outputs[("--style", "style77")], outputs[()])


def test_warm_start_copies_a_single_style_network_into_every_slot(tmp_path):
    source = write_tiny_checkpoint(tmp_path / "single.ckpt", seed=4)
    single, _ = read_network(source)
    module = StyleTransferModule(["a.png", "b.png", "c.png"], conditioning=["styles", "strength"], init_from=str(source),
                                 vgg_weights="random", vgg_width_divisor=8, network_width=8, residual_blocks=1)
    net = module.network.eval()
    norms = [m for m in single.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    slots = [m for m in net.modules() if isinstance(m, ConditionalAffine)]
    assert len(norms) == len(slots) == 7
    for norm, slot in zip(norms, slots):
        assert all(torch.equal(slot.weight[k], norm.weight) and torch.equal(slot.bias[k], norm.bias) for k in range(3))
        assert not slot.weight[3:].any() and not slot.bias[3:].any()  # strength read-outs start at zero
    x = torch.rand(2, 3, 21, 19)
    with torch.no_grad():
        for mix in (one_hot(0, 3), one_hot(2, 3), torch.tensor([0.2, 0.3, 0.5])):
            for s in (0.0, 1.0, 2.0):  # the single network, for every style and strength
                assert torch.allclose(net(x, mix, torch.tensor([s])), single(x), atol=1e-6)
    with pytest.raises(UserError, match="styles=3"):  # a conditioned source must match exactly
        StyleTransferModule(["a.png", "b.png"], conditioning=["styles"], init_from=str(
            write_tiny_checkpoint(tmp_path / "three.ckpt", styles=3)), vgg_weights="random", vgg_width_divisor=8,
            network_width=8, residual_blocks=1)


@pytest.mark.parametrize("kwargs, needle", [
    ({"conditioning": ["styles"], "style_images": ["a.png"]}, "at least two"),
    ({"conditioning": ["stlyes"]}, "did you mean 'styles'"),
    ({"conditioning": ["styles"], "style_blend": [0.5, 0.5]}, "style_blend"),
    ({"conditioning": ["strength"], "strength_range": [1.5, 3.0]}, "strength_range"),
    ({"conditioning": ["strength"], "strength_range": [0.0]}, "strength_range"),
])
def test_bad_conditioning_settings_are_user_errors(kwargs, needle):
    args = {"style_images": ["a.png", "b.png"], "vgg_weights": "random", "vgg_width_divisor": 8, **kwargs}
    with pytest.raises(UserError, match=needle):
        StyleTransferModule(**args)


# ----------------------------------------------------------------------------------- exports and the reader
@pytest.mark.parametrize("fmt", ["torchscript", "pt2", "onnx"])
def test_exports_keep_the_conditioning_as_inputs_with_defaults(conditioned, fmt):
    pytest.importorskip("onnxruntime") if fmt == "onnx" else None
    eager, _ = read_network(conditioned["ckpt"])
    module, meta = load_exported(conditioned[fmt])
    entry = meta["conditioning"]
    assert entry["styles"] == ["tiny0", "tiny1", "tiny2"] and entry["strength"] == {"range": [0.0, 2.0], "default": 1.0}
    assert entry["inputs"] == {"mix": {"shape": [3], "dtype": "float32", "default": [1.0, 0.0, 0.0]},
                               "strength": {"shape": [1], "dtype": "float32", "default": [1.0]}}
    assert entry["inputs_required"] == (fmt == "pt2")
    x = torch.rand(2, 3, 13, 21, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        for mix, s in ((one_hot(1, 3), 0.0), (one_hot(2, 3), 1.7), (torch.tensor([0.5, 0.25, 0.25]), 0.4)):
            assert (module(x, mix, torch.tensor([s])) - eager(x, mix, torch.tensor([s]))).abs().max() <= 1e-5
        if fmt == "pt2":  # a torch.export graph takes every input it was traced with
            with pytest.raises(Exception):
                module(x)
        else:
            assert (module(x) - eager(x)).abs().max() <= 1e-5  # style 0, strength 1
    if fmt != "onnx":  # what fastmmd reads from the file is the network itself
        read, _ = read_network(conditioned[fmt])
        assert all(torch.equal(v, read.state_dict()[k]) for k, v in eager.state_dict().items())


@pytest.mark.parametrize("kind", ["torchscript", "pt2", "onnx"])
def test_every_model_kind_gives_the_same_conditioned_result(conditioned, kind):
    pytest.importorskip("onnxruntime") if kind == "onnx" else None
    x = pil_to_tensor(synthetic_image(23, 17)).unsqueeze(0)
    ref = load_stylizer(conditioned["ckpt"], device="cpu", mix="tiny1=3,tiny2=1", strength=0.25).stylize_tensor(x)
    out = load_stylizer(conditioned[kind], device="cpu", mix="tiny1=0.75,tiny2=0.25", strength=0.25).stylize_tensor(x)
    assert (out - ref).abs().max() <= 1e-5


def test_a_crafted_conditioning_description_is_refused_in_one_line(tmp_path, make_image, capsys):
    image = make_image("p.png", 20, 20)
    weights = {"network.encoder.0.1.weight": torch.zeros(1)}
    for network, words in (({"width": 8, "residual_blocks": 1, "styles": 10**6}, "network description"),
                           ({"width": 8, "residual_blocks": 1, "styles": 4000}, "network description"),
                           ({"width": 8, "residual_blocks": 1, "strength_width": 999}, "network description"),
                           ({"width": 8, "residual_blocks": 1, "styles": 2}, "do not match")):
        path = tmp_path / "crafted.ckpt"
        torch.save({"state_dict": weights, "fastmmd": {"format_version": 1, "network": network}}, path)
        with pytest.raises(UserError, match=words):
            read_network(path)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(["stylize", str(path), str(image), "-o", str(tmp_path / "out"), "--style", "1"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and "not a fastmmd checkpoint or model" in err[0], err
    # tables of the wrong shape for the recorded number of styles
    three = read_checkpoint(write_tiny_checkpoint(tmp_path / "three.ckpt", styles=3))
    three["fastmmd"]["network"]["styles"] = 2
    torch.save(three, tmp_path / "lying.ckpt")
    with pytest.raises(UserError, match="does not match its network description"):
        read_network(tmp_path / "lying.ckpt")


# ----------------------------------------------------------------------------------- inference flags
def test_mix_weights_are_normalised_and_names_or_indices_both_work():
    space = ConditionSpace(("candy", "wave", "udnie"), (0.0, 2.0))
    assert space.resolve(mix="candy=7,2=3") == Condition((0.7, 0.0, 0.3), None)
    assert space.resolve(style="wave", strength=0) == Condition((0.0, 1.0, 0.0), 0.0)
    assert space.resolve() == Condition()
    assert space.label(Condition((0.7, 0.0, 0.3), 0.5)) == "candy 0.7 + udnie 0.3, s=0.5"


@pytest.mark.parametrize("flags, needle", [
    (["--style", "tiny7"], "no style 'tiny7'"),
    (["--style", "tiny"], "did you mean"),
    (["--style", "9"], "or an index 0..2"),
    (["--mix", "tiny0=0,tiny1=0"], "sum to 0"),
    (["--mix", "tiny0=-1,tiny1=2"], ">= 0"),
    (["--mix", "tiny0=nan"], ">= 0"),
    (["--mix", "tiny0"], "NAME=WEIGHT"),
    (["--style", "tiny0", "--mix", "tiny1=1"], "exclude each other"),
    (["--strength", "2.5"], "trained range [0, 2]"),
    (["--strength", "-0.1"], "trained range"),
    (["--grid", "mix"], "--grid"),
])
def test_bad_flags_on_a_conditioned_model_are_one_line(conditioned, make_image, tmp_path, capsys, flags, needle):
    image = make_image("p.png", 20, 20)
    with pytest.raises(SystemExit) as exit_:
        main(["stylize", str(conditioned["ckpt"]), str(image), "-o", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize("flags, needle", [
    (["--style", "0"], "trained for one style"),
    (["--mix", "a=1"], "trained for one style"),
    (["--strength", "1"], "no strength input"),
    (["--grid", "styles"], "trained for one style"),
    (["--grid", "strength"], "no strength input"),
])
def test_conditioning_flags_on_a_single_style_model_are_one_line(tiny_exports, make_image, tmp_path, capsys, flags, needle):
    image = make_image("p.png", 20, 20)
    with pytest.raises(SystemExit) as exit_:
        main(["stylize", str(tiny_exports["torchscript"]), str(image), "-o", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and needle in err[0], err


def test_global_tile_statistics_and_video_statistics_follow_the_condition(conditioned):
    """The statistics hooks (fastmmd.core.norm_stats) sit on the non-affine norms, before the conditional affine."""
    x = pil_to_tensor(synthetic_image(256, 160, seed=3)).unsqueeze(0)
    full = load_stylizer(conditioned["ckpt"], device="cpu", tile=0, style="tiny2", strength=0.3).stylize_tensor(x)
    tiled = load_stylizer(conditioned["ckpt"], device="cpu", tile=128, overlap=32, tile_stats="global",
                          style="tiny2", strength=0.3).stylize_tensor(x)
    assert (tiled - full).abs().mean().item() < 0.005 and (tiled - full).abs().max().item() < 0.1
    other = load_stylizer(conditioned["ckpt"], device="cpu", tile=0, style="tiny0").stylize_tensor(x)
    assert (other - full).abs().mean().item() > 0.02


def test_grids_of_strength_by_style_and_style_by_style(conditioned, make_image, tmp_path):
    image = make_image("photo.png", 40, 30)
    out = tmp_path / "grids"
    for kind in ("strength", "styles"):
        assert main(["stylize", str(conditioned["pt2"]), str(image), "-o", str(out), "-q", "--grid", kind]) == 0
    tile = tile_size(30, 40, 256)
    assert Image.open(out / "photo_grid_strength.png").size == grid_size(3, 5, tile)  # 3 styles x s = 0, .5, 1, 1.5, 2
    assert Image.open(out / "photo_grid_styles.png").size == grid_size(3, 3, tile)
    assert not (out / "photo_stylized.png").exists()


def test_evaluate_draws_a_strength_curve_in_the_style_named_like_the_style_image(conditioned, make_image, tmp_path, capsys):
    photo, style = make_image("photo.png", 40, 32, seed=0), make_image("tiny2.png", 40, 40, seed=1)
    out = tmp_path / "eval"
    assert main(["evaluate", str(conditioned["ckpt"]), "--content", str(photo), "--style", str(style), "--strengths",
                 "0,2", "--vgg-weights", "random", "--vgg-width-divisor", "8", "--size", "32", "--iterations", "1",
                 "--precision", "32", "--no-progress", "--output", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["multi@s=0", "multi@s=2"]
    assert report["models"][0]["mean"]["style_swd"] != report["models"][1]["mean"]["style_swd"]
    with pytest.raises(SystemExit) as exit_:  # no style named like the style image: refused before any work
        main(["evaluate", str(conditioned["ckpt"]), "--content", str(photo), "--style", str(photo), "--size", "32",
              "--vgg-weights", "random", "--vgg-width-divisor", "8", "--output", str(tmp_path / "refused")])
    assert exit_.value.code == 2 and "--model-style" in capsys.readouterr().err and not (tmp_path / "refused").exists()


# ----------------------------------------------------------------------------------- the strength knob is real
@pytest.mark.slow
def _rank_correlation(values: list[float], against: list[float]) -> float:
    """Spearman's rank correlation of two equally long lists without ties."""
    def ranks(xs: list[float]) -> list[int]:
        return [sorted(xs).index(x) for x in xs]

    n, a, b = len(values), ranks(values), ranks(against)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(a, b)) / (n * (n * n - 1))


def test_strength_trades_style_for_content_monotonically(tmp_path):
    """A tiny strength-conditioned network (width 8, 32 px, tiny VGG, 800 steps, ~12 s): on held-out
    photos, as s rises over 0, 0.5, 1, 2 the style distance (compare's Gram distance) falls and the
    content distance (at the layer trained on) rises.

    What is asserted is what the knob guarantees, with margins this training delivers on any CPU,
    not each step of the way: a different CPU's kernels (other float sums) train a different network,
    and between s = 1 and 2 the tiny network is saturated, so a neighbouring pair can swap (issue 28:
    style 0.1435 at s = 1, 0.1452 at s = 2 on an AVX2-only EPYC; the same numbers here under
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2). Measured over 9 training seeds (a stand-in for
    other machines' numerics; 1 and 2 threads) and the AVX2-emulated run: the ends of the range differ
    by 1.10-1.95x in style distance and 1.10-1.20x in content distance (asserted: 1.05x); every s > 0
    is at least 1.08x closer to the style than s = 0 (asserted: 1.03x); the rank correlation with s
    was 0.8 or 1 in both distances (at most one neighbouring swap; asserted: 0.6, i.e. two swaps).
    Converging the tiny training far enough for strict monotonicity with room to spare would cost
    several times the 800 steps (seed 8's style distances at s = 0.5, 1, 2 lie within 2 %).
    """
    from fastmmd.losses import moments
    from fastmmd.losses.metrics import content_distance, gram_distance
    from fastmmd.vgg.features import VGGFeatures

    args = tiny_fit_args(tmp_path)
    build_cli(["fit", *args, "--model.conditioning", "[strength]", "--model.strength_range", "[0, 4]",
               "--model.loss.style_weight", "2", "--model.loss.content_layers", "[relu2_2]", "--model.lr", "1e-2",
               "--trainer.max_steps", "800", "--trainer.limit_val_batches", "0", "--run_name", "knob"])
    model = load_stylizer(tmp_path / "runs" / "knob" / "last.ckpt", device="cpu")
    vgg = VGGFeatures((*STYLE_LAYERS, "relu2_2"), "random", "max", 8)
    photos = torch.stack([pil_to_tensor(synthetic_image(32, 32, seed=100 + i)) for i in range(6)])  # not trained on
    style = vgg(read_image(tmp_path / "style.png", 64).unsqueeze(0))  # as trained: the style's own 64 px
    content = vgg(photos)["relu2_2"]
    strengths, style_d, content_d = (0.0, 0.5, 1.0, 2.0), [], []
    for s in strengths:
        f = vgg(model.conditioned(Condition(None, s)).stylize_tensor(photos))
        style_d.append(sum(float(gram_distance(moments.positions(f[t]), moments.positions(style[t])[0]).mean())
                           for t in STYLE_LAYERS) / len(STYLE_LAYERS))
        content_d.append(float(content_distance(f["relu2_2"], content).mean()))
    found = (style_d, content_d)
    assert style_d[0] > 1.05 * style_d[-1] and content_d[-1] > 1.05 * content_d[0], found  # the ends
    assert all(style_d[0] > 1.03 * d for d in style_d[1:]), found  # any strength moves towards the style
    assert _rank_correlation(style_d, list(strengths)) <= -0.6, found  # the trend
    assert _rank_correlation(content_d, list(strengths)) >= 0.6, found
