"""StyleCriterion: targets, normalisation, fusion, blending; one real-weights optimisation."""

from __future__ import annotations

import pytest
import torch

from fastmmd.base.errors import UserError
from fastmmd.losses import StyleLoss
from fastmmd.losses.criterion import StyleCriterion

LOSSES = ["gram", "linear", "poly", "gaussian", "bn", "bn+poly", "linear+gaussian"]


def image(seed, h=32, w=32):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("loss", LOSSES)
def test_terms_per_sample_and_gradients(tiny_vgg, loss):
    crit = StyleCriterion(StyleLoss(loss, style_weight=2.0, tv_weight=0.1), vgg=tiny_vgg)
    crit.set_style([image(0, 40, 36)])
    x = torch.rand(3, 3, 32, 32, requires_grad=True)
    terms = crit(x, torch.rand(3, 3, 32, 32))
    assert {"total", "style", "content", "tv"} <= terms.keys()
    assert all(v.shape == (3,) and torch.isfinite(v).all() for v in terms.values())
    expected = 2.0 * terms["style"] + terms["content"] + 0.1 * terms["tv"]
    assert torch.allclose(terms["total"], expected)
    terms["total"].sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("loss", ["gram", "linear", "poly", "bn"])
def test_style_term_vanishes_at_the_style_image(tiny_vgg, loss):
    crit = StyleCriterion(StyleLoss(loss), vgg=tiny_vgg)
    style = image(1)
    crit.set_style([style])
    assert crit(style)["style"].abs().max() < 1e-6
    assert crit(image(2))["style"].min() > 1e-4


def test_relative_normalisation_divides_by_the_null_value(tiny_vgg):
    style, x = image(3), image(4)
    rel = StyleCriterion(StyleLoss("bn", style_layers=("relu2_1",)), vgg=tiny_vgg)
    paper = StyleCriterion(StyleLoss("bn", style_layers=("relu2_1",), normalization="paper"), vgg=tiny_vgg)
    rel.set_style([style])
    paper.set_style([style])
    null = rel._target("relu2_1/bn")["null"]
    from fastmmd.losses.criterion import CALIBRATION

    assert torch.allclose(rel(x)["style"], CALIBRATION["bn"] * paper(x)["style"] / null, rtol=1e-5)


@pytest.mark.parametrize("name", ["gram", "linear", "poly", "bn"])
def test_relative_values_do_not_depend_on_activation_scale(name):
    """Caffe activations are ~100x torchvision's: relative losses must not care."""
    from fastmmd.losses import METHODS

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 6, 50, generator=g, dtype=torch.float64), torch.rand(6, 40, generator=g, dtype=torch.float64)
    w = torch.full((40,), 1 / 40, dtype=torch.float64)
    method = METHODS[name](StyleLoss(bn_eps=0.0))

    def relative(scale):
        target = method.prepare(scale * y, w)
        return method(scale * x, target) / target["null"]

    assert torch.allclose(relative(1.0), relative(100.0), rtol=1e-9)


def test_blend_is_a_mixture_of_styles(tiny_vgg):
    a, b, x = image(5), image(6, 24, 40), image(7)
    single = StyleCriterion(StyleLoss("gram"), vgg=tiny_vgg)
    single.set_style([a])
    blended = StyleCriterion(StyleLoss("gram"), vgg=tiny_vgg)
    blended.set_style([a, b], [1.0, 0.0])
    assert torch.allclose(single(x)["style"], blended(x)["style"], rtol=1e-5)
    half = StyleCriterion(StyleLoss("gram"), vgg=tiny_vgg)
    half.set_style([a, b], [0.5, 0.5])
    assert not torch.allclose(half(x)["style"], single(x)["style"])
    with pytest.raises(UserError):
        half.set_style([a, b], [1.0])


def test_content_target_and_batch_content(tiny_vgg):
    content = image(8)
    crit = StyleCriterion(StyleLoss("gram"), vgg=tiny_vgg)
    crit.set_style([image(9)])
    crit.set_content(content)
    assert crit(content)["content"].abs().max() < 1e-10
    assert crit(image(10))["content"] > 0
    assert torch.allclose(crit(content, content)["content"], torch.zeros(1), atol=1e-10)


def test_targets_stay_out_of_the_state_dict(tiny_vgg):
    crit = StyleCriterion(StyleLoss("gaussian", gaussian_estimator="rff"), vgg=tiny_vgg)
    crit.set_style([image(11)])
    assert not any(k.startswith("target") for k in crit.state_dict())
    assert any(name.startswith("target") for name, _ in crit.named_buffers())


def test_gaussian_is_reproducible_with_a_seed(tiny_vgg):
    def run(seed):
        crit = StyleCriterion(StyleLoss("gaussian"), vgg=tiny_vgg, seed=seed)
        crit.set_style([image(12)])
        return crit(image(13))["style"]

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_bad_settings_are_user_errors(tiny_vgg):
    with pytest.raises(UserError):
        StyleCriterion(StyleLoss("gram", style_layers=("relu9_1",)), vgg=tiny_vgg)
    with pytest.raises(UserError):
        StyleCriterion(StyleLoss("gram", style_layer_weights=(1.0,)), vgg=tiny_vgg)
    with pytest.raises(UserError):
        StyleCriterion(StyleLoss("gram", style_weight=-1), vgg=tiny_vgg)
    with pytest.raises(UserError):
        StyleCriterion(StyleLoss("gram", normalization="weird"), vgg=tiny_vgg)
    with pytest.raises(RuntimeError):
        StyleCriterion(StyleLoss("gram"), vgg=tiny_vgg)(image(0))


@pytest.mark.real_weights
@pytest.mark.parametrize("loss", ["gram", "bn+poly"])
def test_real_caffe_weights_lbfgs_lowers_the_loss(loss):
    from fastmmd.apps.optimize import optimize_image

    crit = StyleCriterion(StyleLoss(loss, style_weight=5.0))
    crit.set_style([image(20, 64, 64)])
    content = image(21, 48, 64)
    crit.set_content(content)
    result = optimize_image(crit, content, "lbfgs", iterations=6)
    first, last = result.history[0]["total"], result.history[-1]["total"]
    assert last < 0.7 * first, (first, last)
    assert result.image.shape == content.shape and 0 <= result.image.min() and result.image.max() <= 1
