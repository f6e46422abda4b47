"""Video (issue 12), the maths: known camera motion, the temporal error, the stability loss, shared
instance-norm statistics. ``fastmmd stylize`` on clips: tests/integration/test_video.py."""

from __future__ import annotations

import pytest
import torch
from conftest import synthetic_image

from fastmmd.base.images import pil_to_tensor
from fastmmd.core import motion
from fastmmd.core.norm_stats import fixed_norm_statistics, pooled_norm_statistics, running_norm_statistics
from fastmmd.losses.metrics import masked_abs_error, temporal_error
from fastmmd.losses.stability import stability_loss
from fastmmd.model.networks import TransformerNet


def still(width: int = 96, height: int = 80, seed: int = 0) -> torch.Tensor:
    return pil_to_tensor(synthetic_image(width, height, seed))


# ----------------------------------------------------------------------------- known motion
def test_integer_shift_moves_pixels_exactly_and_masks_what_came_in():
    x = torch.rand(2, 3, 16, 20)
    y, mask = motion.shift(x, torch.tensor([[1.0, 0.0], [0.0, -2.0]]), margin=0)
    assert torch.allclose(y[0, :, :, :-1], x[0, :, :, 1:], atol=1e-5)
    assert torch.allclose(y[1, :, 2:], x[1, :, :-2], atol=1e-5)
    assert mask[0, 0, :, -1].sum() == 0 and mask[0, 0, :, :-1].all()
    assert mask[1, 0, :2].sum() == 0 and mask[1, 0, 2:].all()


@pytest.mark.parametrize("kind", motion.MOTIONS)
def test_the_warp_between_rendered_frames_is_exact(kind):
    """Frames of a smooth still along a known path: warping frame t into frame t+1 leaves only the
    bilinear resampling error, far below what a wrong warp (the frames in the wrong order) leaves."""
    views = motion.camera_path(kind, 6, seed=1)
    h, w = 40, 48
    photo = torch.nn.functional.interpolate(still()[None], size=motion.source_size(views, h, w), mode="bilinear")[0]
    photo = torch.nn.functional.avg_pool2d(photo[None], 5, 1, 2, count_include_pad=False)[0]  # smooth: little resampling loss
    clip = motion.render(photo, views, h, w)
    assert clip.shape == (6, 3, h, w)
    good = temporal_error(clip, views)
    wrong = temporal_error(clip.flip(0), views)
    assert good.shape == (5,) and good.max() < 0.01 and wrong.mean() > 3 * good.mean(), (good, wrong)
    assert temporal_error(clip[:1].expand(3, -1, -1, -1), [motion.View()] * 3).max() < 1e-6  # a still camera


def test_render_refuses_a_photo_too_small_for_the_path_and_adds_seeded_noise():
    views = motion.camera_path("pan", 5)
    with pytest.raises(ValueError, match="smaller"):
        motion.render(torch.rand(3, 20, 20), views, 20, 20)
    photo = torch.rand(3, *motion.source_size(views, 20, 24))
    a = motion.render(photo, views, 20, 24, gain_std=0.05, noise_std=0.02, seed=3)
    assert torch.equal(a, motion.render(photo, views, 20, 24, gain_std=0.05, noise_std=0.02, seed=3))
    assert not torch.equal(a, motion.render(photo, views, 20, 24))


def test_stability_loss_is_zero_for_a_shift_equivariant_map_and_positive_otherwise():
    x = torch.rand(3, 3, 24, 24)
    offsets = motion.random_offsets(3, 1.0, torch.Generator().manual_seed(0))
    moved, _ = motion.shift(x, offsets)
    target, mask = motion.shift(x, offsets)
    assert torch.equal(stability_loss(moved, target, mask), torch.zeros(3))  # the identity map is equivariant
    subsample = lambda t: torch.nn.functional.interpolate(t[..., ::4, ::4], scale_factor=4.0, mode="nearest")  # noqa: E731
    target, mask = motion.shift(subsample(x), offsets)
    loss = stability_loss(subsample(moved), target, mask)
    assert (loss > 1e-3).all()
    net = TransformerNet(8, 1)
    y = net(x)
    target, mask = motion.shift(y, offsets)
    stability_loss(net(moved), target, mask).sum().backward()
    assert net.encoder[0][1].weight.grad.abs().sum() > 0
    assert masked_abs_error(y, y, mask).abs().max() == 0


def test_crop_moves_are_exact_and_tell_a_grid_tied_pattern_from_one_that_moves_with_the_photo():
    """Whole-pixel moves by cropping (the stability loss with model.stability_crop): no resampling, so
    an equivariant map scores exactly 0 at any offset, and a map that draws on its own 4 px grid
    (every output pixel copies the top-left pixel of its 4x4 cell) scores 0 only for moves of 0 or 4 px."""
    x = torch.rand(4, 3, 40, 44)
    offsets = torch.tensor([[0, 0], [1, 0], [2, 3], [4, 4]])  # (x, y)
    moved, mask = motion.crop_moves(x, offsets, 4, margin=8)
    assert moved.shape == (4, 3, 36, 40) and mask.shape == (4, 1, 36, 40)
    assert torch.equal(moved[2], x[2, :, 3:39, 2:42])  # output pixel u shows input u + offset
    assert mask[:, :, 8:28, 8:32].min() == 1 and mask.sum() == 4 * 20 * 24  # the margin is left out
    assert torch.equal(stability_loss(moved, motion.crop_moves(x, offsets, 4, 8)[0], mask), torch.zeros(4))
    grid = lambda t: t[..., ::4, ::4].repeat_interleave(4, -2).repeat_interleave(4, -1)[..., :t.shape[-2], :t.shape[-1]]  # noqa: E731
    loss = stability_loss(grid(moved), motion.crop_moves(grid(x), offsets, 4, 8)[0], mask)
    assert loss[0] == 0 and loss[3] == 0 and (loss[1:3] > 1e-2).all(), loss
    assert (motion.random_crop_offsets(500, 3, torch.Generator().manual_seed(0)).unique() == torch.arange(4)).all()
    with pytest.raises(ValueError, match="cannot crop"):
        motion.crop_moves(x, offsets, 4, margin=20)


# ----------------------------------------------------------------------------- shared statistics
def test_norm_statistics_of_one_frame_are_its_own_and_running_stats_follow_a_scene():
    torch.manual_seed(0)
    net = TransformerNet(8, 1).eval()
    frames = torch.rand(5, 3, 24, 32)
    with torch.no_grad():
        plain = net(frames)
        with running_norm_statistics(net, 0.0):  # momentum 0: every frame its own statistics
            assert torch.allclose(net(frames), plain, atol=1e-5)
        same = frames[:1].expand(4, -1, -1, -1)
        with running_norm_statistics(net, 0.9):  # a still scene: the average is the frame's own
            assert torch.allclose(net(same), net(same[:1]).expand(4, -1, -1, -1), atol=1e-4)
        stats = pooled_norm_statistics(net, net, [frames[2:3]])
        with fixed_norm_statistics(net, stats):
            assert torch.allclose(net(frames[2:3]), plain[2:3], atol=1e-4)
        with running_norm_statistics(net, 0.9):  # across calls, in order: frame 4 remembers frames 0-3
            for i in range(4):
                net(frames[i:i + 1])
            remembered = net(frames[4:5])
        assert not torch.allclose(remembered, plain[4:5], atol=1e-3)
