"""One network for several styles and a strength knob (fastmmd.model.conditioning), the parts alone:
the conditional norm's maths, unchanged single-style networks, per-sample style targets, the seeded
draws, the warm start, the settings' errors and the inference-side condition space. Training,
exports, flags and the trained knob: tests/integration/test_conditioning.py."""

from __future__ import annotations

import pytest
import torch
from conftest import synthetic_image, write_tiny_checkpoint

from fastmmd.base.errors import UserError
from fastmmd.base.images import pil_to_tensor
from fastmmd.infer.conditions import Condition, ConditionSpace
from fastmmd.losses.criterion import StyleCriterion
from fastmmd.model.conditioning import ConditionalAffine
from fastmmd.model.files import read_network
from fastmmd.model.networks import TransformerNet
from fastmmd.train.draws import draw_conditions
from fastmmd.train.module import StyleTransferModule

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


def conditioned_net(seed: int) -> TransformerNet:
    """TransformerNet(8, 1) with 3 styles and a strength input, its affines away from their start."""
    torch.manual_seed(seed)
    net = TransformerNet(8, 1, styles=3, strength_width=4)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, ConditionalAffine):
                m.weight.uniform_(-1.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net


def test_fused_norms_compute_the_same_function_and_gradients_and_yield_to_hooks():
    """A conditional norm and its affine in one batch-norm call (the default) equal the two apart,
    forward and backward, per sample (a batch of two different mixes and strengths); a hooked norm
    (fastmmd.core.norm_stats replaces its statistics) runs apart, so its hook sees every call."""
    fused, apart = conditioned_net(2), conditioned_net(2).set_layout(fused_norms=False)
    x = torch.rand(2, 3, 19, 23)
    mix, strength = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]]), torch.tensor([0.4, 1.7])
    for net in (fused, apart):
        net.zero_grad()
        net(x, mix, strength).square().mean().backward()
    y_fused, y_apart = fused(x, mix, strength), apart(x, mix, strength)
    assert torch.allclose(y_fused, y_apart, atol=1e-5) and not torch.allclose(y_fused[0], y_fused[1], atol=1e-3)
    for (name, a), b in zip(fused.named_parameters(), apart.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name
    calls = []
    norm = next(m for m in fused.modules() if isinstance(m, torch.nn.InstanceNorm2d))
    handle = norm.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    try:
        assert torch.allclose(fused(x, mix, strength), y_apart, atol=1e-5)
    finally:
        handle.remove()
    assert calls == [torch.Size([2, 8, 20, 24])]  # the first norm, on the batch padded to a multiple of 4


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


# ----------------------------------------------------------------------------------- inference conditions
def test_mix_weights_are_normalised_and_names_or_indices_both_work():
    space = ConditionSpace(("candy", "wave", "udnie"), (0.0, 2.0))
    assert space.resolve(mix="candy=7,2=3") == Condition((0.7, 0.0, 0.3), None)
    assert space.resolve(style="wave", strength=0) == Condition((0.0, 1.0, 0.0), 0.0)
    assert space.resolve() == Condition()
    assert space.label(Condition((0.7, 0.0, 0.3), 0.5)) == "candy 0.7 + udnie 0.3, s=0.5"
