"""Video (issue 12): ``fastmmd stylize`` on clips that PyAV encodes in the test (odd sizes, rotation,
audio, frame timing, frame folders, norm statistics, corrupt and interrupted files). The maths alone:
tests/unit/test_video.py."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from clips import probe, write_clip
from conftest import fails_with_one_line, synthetic_image

from fastmmd.__main__ import main
from fastmmd.base.images import pil_to_tensor
from fastmmd.infer.stylize import load_stylizer
from fastmmd.infer.video import stylize_video


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
