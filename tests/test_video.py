"""Video (issue 12): known camera motion, the temporal error, the stability loss, shared instance-norm
statistics, and ``fastmmd stylize`` on clips that PyAV encodes in the test (odd sizes, rotation,
audio, frame timing, frame folders, corrupt and interrupted files)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import fails_with_one_line, synthetic_image

from fastmmd.__main__ import main
from fastmmd.base.images import pil_to_tensor
from fastmmd.core import motion
from fastmmd.core.norm_stats import fixed_norm_statistics, pooled_norm_statistics, running_norm_statistics
from fastmmd.infer.stylize import load_stylizer
from fastmmd.infer.video import stylize_video
from fastmmd.losses.metrics import masked_abs_error, temporal_error
from fastmmd.losses.stability import stability_loss
from fastmmd.model.networks import TransformerNet


def still(width: int = 96, height: int = 80, seed: int = 0) -> torch.Tensor:
    return pil_to_tensor(synthetic_image(width, height, seed))


def write_clip(path: Path, frames: int = 10, width: int = 33, height: int = 25, rate: Fraction = Fraction(30000, 1001),
               rotation: int = 0, audio: str | None = "aac", codec: str = "libx264") -> Path:
    """A moving synthetic clip (frame i = the picture rolled by i px) with an optional sine audio track."""
    base = (pil_to_tensor(synthetic_image(width, height)).permute(1, 2, 0) * 255).round().byte().numpy()
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height = width, height
        s.pix_fmt = "yuv444p" if codec == "libx264" else "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)
        a = c.add_stream(audio, rate=48000) if audio else None
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.roll(base, i, axis=1), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            t = np.arange(int(48000 * frames / float(rate))) / 48000
            fmt = "fltp" if audio == "aac" else "s16"
            samples = np.sin(2 * math.pi * 440 * t)[None] * 0.3
            samples = samples.astype(np.float32) if fmt == "fltp" else (samples * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
            af.sample_rate, af.pts = 48000, 0
            for p in a.encode(af):
                c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(v))
        info = {"frames": len(frames), "size": (frames[0].width, frames[0].height), "rotation": frames[0].rotation,
                "rate": v.average_rate, "times": [round(float(f.time), 4) for f in frames]}
    with av.open(str(path)) as c:
        info["audio"] = [bytes(p) for p in c.demux(*c.streams.audio) if p.size] if c.streams.audio else []
        info["audio_codec"] = c.streams.audio[0].codec_context.name if c.streams.audio else None
    return info


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


# ----------------------------------------------------------------------------- fastmmd stylize on video
@pytest.mark.parametrize("fmt", ["ckpt", "torchscript", "pt2"])
def test_stylize_video_keeps_size_timing_rotation_and_audio(tmp_path, tiny_exports, fmt):
    """An odd-sized 29.97 fps clip stored sideways (display rotation 90) with AAC audio: the output has
    its frame count, size, timestamps, rotation and the same audio packets (copied, not re-encoded)."""
    clip = write_clip(tmp_path / "clip.mp4", frames=10, rotation=90)
    out = tmp_path / "out" / "styled.mp4"
    assert main(["stylize", str(tiny_exports[fmt]), str(clip), "--output", str(out), "-q", "--batch-size", "3"]) == 0
    src, dst = probe(clip), probe(out)
    assert dst["frames"] == 10 and dst["size"] == (33, 25) and dst["rotation"] == 90
    assert dst["rate"] == src["rate"] == Fraction(30000, 1001) and dst["times"] == src["times"]
    assert dst["audio_codec"] == "aac" and dst["audio"] == src["audio"] and len(src["audio"]) > 5
    assert sorted(p.name for p in out.parent.iterdir()) == ["styled.mp4"]  # no temporary file left


def test_frames_reach_the_network_upright_in_batches(tmp_path, tiny_exports, monkeypatch):
    clip = write_clip(tmp_path / "clip.mp4", frames=7, rotation=90, audio=None)
    stylizer = load_stylizer(tiny_exports["ckpt"], device="cpu")
    seen = []
    real = stylizer.stylize_batch
    monkeypatch.setattr(stylizer, "stylize_batch", lambda b: seen.append(tuple(b.shape)) or real(b))
    result = stylize_video(stylizer, clip, tmp_path / "o.mkv", batch_size=3, norm_stats="frame", progress=False)
    assert result.frames == 7 and seen == [(3, 3, 33, 25), (3, 3, 33, 25), (1, 3, 33, 25)]  # 33 wide stored, upright 33 high
    assert probe(tmp_path / "o.mkv")["size"] == (33, 25)


def test_norm_stats_modes_and_running_with_momentum_zero_equals_per_frame(tmp_path, tiny_exports):
    clip = write_clip(tmp_path / "clip.mp4", frames=6, width=32, height=24, audio=None)
    stylizer = load_stylizer(tiny_exports["ckpt"], device="cpu")
    outs = {}
    for mode, momentum in (("frame", 0.9), ("running", 0.0), ("running", 0.9), ("clip", 0.9)):
        folder = tmp_path / f"{mode}{momentum}"
        stylize_video(stylizer, clip, folder, norm_stats=mode, momentum=momentum, progress=False)
        outs[mode, momentum] = torch.stack([pil_to_tensor(__import__("PIL.Image").Image.open(p).convert("RGB"))
                                            for p in sorted(folder.glob("*.png"))])
    assert all(o.shape == (6, 3, 24, 32) for o in outs.values())
    assert torch.allclose(outs["running", 0.0], outs["frame", 0.9], atol=1 / 255)
    assert not torch.allclose(outs["clip", 0.9], outs["frame", 0.9], atol=1 / 255)


def test_folder_of_frames_in_and_out(tmp_path, tiny_exports):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        synthetic_image(30, 22, seed=i).save(frames / f"f{i:03d}.png")
    assert main(["stylize", str(tiny_exports["pt2"]), str(frames), "--output", str(tmp_path / "o.mp4"), "--fps", "12", "-q"]) == 0
    info = probe(tmp_path / "o.mp4")
    assert info["frames"] == 5 and info["size"] == (30, 22) and info["rate"] == 12 and info["audio"] == []
    assert main(["stylize", str(tiny_exports["pt2"]), str(frames), "-o", str(tmp_path / "styled"), "--norm-stats", "running", "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "styled").iterdir()) == [f"f{i:03d}.png" for i in range(5)]


def test_gif_in_and_several_videos_into_a_folder(tmp_path, tiny_exports):
    from PIL import Image

    images = [synthetic_image(30, 20, seed=i) for i in range(4)]
    images[0].save(tmp_path / "anim.gif", save_all=True, append_images=images[1:], duration=100, loop=0)
    write_clip(tmp_path / "clip.mov", frames=4, audio=None)
    assert main(["stylize", str(tiny_exports["ckpt"]), str(tmp_path / "anim.gif"), str(tmp_path / "clip.mov"),
                 "-o", str(tmp_path / "out"), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["anim_stylized.mp4", "clip_stylized.mov"]
    gif = probe(tmp_path / "out" / "anim_stylized.mp4")
    assert gif["frames"] == 4 and gif["size"] == (30, 20) and gif["times"][1] == pytest.approx(0.1)
    assert Image.open(tmp_path / "anim.gif").n_frames == 4


def test_corrupt_or_truncated_video_is_one_line_and_writes_nothing(tmp_path, tiny_exports, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    out = tmp_path / "out.mp4"
    fails_with_one_line(["stylize", str(tiny_exports["ckpt"]), str(bad), "--output", str(out)], capsys, "bad.mp4")
    clip = write_clip(tmp_path / "clip.mkv", frames=30, width=64, height=48)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    code = None
    try:
        code = main(["stylize", str(tiny_exports["ckpt"]), str(cut), "--output", str(out), "-q"])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    if code == 0:  # a truncated Matroska file is a shorter, valid clip: what could be decoded is written
        assert 0 < probe(out)["frames"] < 30
    else:
        assert code == 2 and len(err) == 1 and "cut.mkv" in err[0] and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_interrupted_run_leaves_no_half_written_file(tmp_path, tiny_exports, monkeypatch, capsys):
    clip = write_clip(tmp_path / "clip.mp4", frames=9)
    out = tmp_path / "o" / "out.mp4"
    out.parent.mkdir()
    out.write_bytes(b"an earlier result")
    calls = []

    def interrupt(self, batch):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return batch

    monkeypatch.setattr("fastmmd.infer.stylize.Stylizer.stylize_batch", interrupt)
    with pytest.raises(SystemExit) as exc:
        main(["stylize", str(tiny_exports["ckpt"]), str(clip), "--output", str(out), "-q", "--batch-size", "2"])
    assert exc.value.code == 130
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.mp4"] and out.read_bytes() == b"an earlier result"


def test_bad_video_requests_are_one_line(tmp_path, tiny_exports, capsys):
    clip = write_clip(tmp_path / "clip.mp4", frames=3, audio=None)
    model = str(tiny_exports["ckpt"])
    fails_with_one_line(["stylize", model, str(clip), "--output", str(clip)], capsys, "input")
    fails_with_one_line(["stylize", model, str(clip), str(clip.with_name("x.mp4")), "--output", str(tmp_path / "o.mp4")],
                        capsys, "does not exist")
    write_clip(tmp_path / "two.mp4", frames=3, audio=None)
    fails_with_one_line(["stylize", model, str(clip), str(tmp_path / "two.mp4"), "--output", str(tmp_path / "o.mp4")],
                        capsys, "folder")
    fails_with_one_line(["stylize", model, str(clip), "--output", str(tmp_path / "o.gif")], capsys, ".gif")
    fails_with_one_line(["stylize", model, str(clip), "--output", str(tmp_path / "o.mp4"), "--codec", "nope"], capsys, "nope")
    fails_with_one_line(["stylize", model, str(clip), "--output", str(tmp_path / "o.mp4"), "--fps", "10"], capsys, "--fps")
    fails_with_one_line(["stylize", model, str(clip), "--output", str(tmp_path / "o.mp4"), "--norm-momentum", "1"],
                        capsys, "--norm-momentum")
    if "onnx" in tiny_exports:
        fails_with_one_line(["stylize", str(tiny_exports["onnx"]), str(clip), "--output", str(tmp_path / "o.mp4"),
                             "--norm-stats", "running"], capsys, "ONNX")
    assert not (tmp_path / "o.mp4").exists()


def test_audio_the_container_cannot_hold_is_refused_before_any_work(tmp_path, tiny_exports, capsys):
    clip = write_clip(tmp_path / "clip.mkv", frames=3, audio="pcm_s16le")
    out = tmp_path / "out.webm"
    fails_with_one_line(["stylize", str(tiny_exports["ckpt"]), str(clip), "--output", str(out)], capsys, "--no-audio")
    assert not out.exists()
    assert main(["stylize", str(tiny_exports["ckpt"]), str(clip), "--output", str(out), "--no-audio", "-q"]) == 0
    assert probe(out)["frames"] == 3 and probe(out)["audio"] == []
