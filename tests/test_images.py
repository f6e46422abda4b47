"""Safe image reading and writing: every mode to RGB, EXIF, bad files as one-line errors, atomic writes."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import synthetic_image
from PIL import Image

from fastmmd.base import images
from fastmmd.base.errors import ImageError, UserError


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_every_mode_reads_as_rgb(make_image, mode):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    img = synthetic_image(40, 30, 1)
    if mode == "I;16":
        grey = torch.frombuffer(bytearray(img.convert("L").tobytes()), dtype=torch.uint8).int() * 257
        img16 = Image.frombytes("I;16", (40, 30), grey.numpy().astype("<u2").tobytes())
        path = make_image("dummy.png")
        img16.save(path)
    else:
        path = make_image(f"m{suffix}", 40, 30, 1, mode)
    t = images.read_image(path)
    assert t.shape == (3, 30, 40) and t.dtype == torch.float32
    assert 0 <= float(t.min()) and float(t.max()) <= 1
    if mode == "I;16":  # 16-bit is rescaled, not clipped to white
        grey = images.read_image(make_image("g.png", 40, 30, 1, "L"))
        assert (t - grey).abs().max() < 2 / 255


def test_alpha_is_kept_apart(make_image):
    rgb, alpha = images.open_image(make_image("a.png", mode="RGBA"), with_alpha=True)
    assert rgb.mode == "RGB" and alpha is not None and alpha.size == rgb.size


def test_exif_rotation_is_honoured(tmp_path):
    img = synthetic_image(60, 20, 2)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif.tobytes())
    t = images.read_image(path)
    assert t.shape == (3, 60, 20)


def test_long_edge_resize_keeps_aspect(make_image):
    t = images.read_image(make_image(width=80, height=40), long_edge=32)
    assert t.shape == (3, 16, 32)


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "text", "truncated", "tiny", "bomb"])
def test_bad_images_raise_one_line_image_errors(tmp_path, make_image, monkeypatch, case):
    if case == "missing":
        path = tmp_path / "nope.jpg"
    elif case == "folder":
        path = tmp_path
    elif case == "empty":
        path = tmp_path / "empty.jpg"
        path.write_bytes(b"")
    elif case == "text":
        path = tmp_path / "notes.png"
        path.write_text("hello")
    elif case == "truncated":
        full = make_image("full.jpg", 64, 64)
        path = tmp_path / "cut.jpg"
        path.write_bytes(full.read_bytes()[: os.path.getsize(full) // 2])
    elif case == "tiny":
        path = make_image("tiny.png", 4, 4)
    else:
        monkeypatch.setattr(images, "MAX_PIXELS", 1000)
        path = make_image("big.png", 64, 64)
    with pytest.raises(ImageError) as err:
        images.read_image(path)
    assert "\n" not in str(err.value) and str(path.name) in str(err.value)


def test_save_is_atomic_and_keeps_metadata(tmp_path):
    out = tmp_path / "sub" / "out.png"
    images.save_image(torch.rand(3, 20, 30), out, {"fastmmd": '{"loss": "gram"}'})
    assert Image.open(out).text["fastmmd"] == '{"loss": "gram"}'
    assert [p.name for p in out.parent.iterdir()] == ["out.png"]  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    before = out.read_bytes()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with images.atomic_path(out) as tmp:
            tmp.write_bytes(b"half")
            raise Boom
    assert out.read_bytes() == before and [p.name for p in out.parent.iterdir()] == ["out.png"]


def test_unwritable_or_odd_outputs(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        images.check_writable(tmp_path)
    with pytest.raises(UserError, match="format"):
        images.save_image(torch.rand(3, 8, 8), tmp_path / "out.xyz")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() != 0:  # root ignores permissions
        with pytest.raises(UserError, match="not writable"):
            images.check_writable(locked / "x.png")


def test_tensor_pil_round_trip():
    t = torch.rand(3, 9, 11)
    back = images.pil_to_tensor(images.tensor_to_pil(t))
    assert (back - t).abs().max() <= 0.5 / 255 + 1e-6
