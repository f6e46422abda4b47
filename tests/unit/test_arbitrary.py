"""Any painting in one pass (fastmmd.model.arbitrary), the parts alone: the statistics the network
reads, the conditional norm's read-out of the embedding, the warm start, per-sample style targets that
equal the fixed ones, paired data, the settings' errors and the statistics' running standardisation.
Training, inference and the export: tests/integration/test_arbitrary.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import synthetic_image, write_tiny_checkpoint

from fastmmd.base.errors import UserError
from fastmmd.base.images import pil_to_tensor
from fastmmd.losses import StyleLoss, moments
from fastmmd.losses.criterion import StyleCriterion
from fastmmd.model.arbitrary import EMBEDDING_LAYERS, statistics_width, style_statistics
from fastmmd.model.conditioning import ConditionalAffine
from fastmmd.model.files import read_network
from fastmmd.model.networks import TransformerNet
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


@pytest.mark.parametrize("kwargs, needle", [
    ({"conditioning": ["arbitrary"], "style_images": ["a.png"]}, "give no model.style_images"),
    ({"conditioning": ["arbitrary", "styles"]}, "exclude each other"),
    ({"conditioning": ["arbitrary"], "embedding_width": 0}, "embedding_width"),
])
def test_bad_arbitrary_settings_are_user_errors(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        StyleTransferModule(**{"vgg_weights": "random", "vgg_width_divisor": 8, **kwargs})


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
