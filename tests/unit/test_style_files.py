"""A painting's statistics kept in a file (fastmmd.model.style_files) and how the painting encoder of an
arbitrary-style network reads paintings fast (fastmmd.model.arbitrary.PaintingEncoder): style files
written and read back, every crafted or mismatched file refused in one line, the bf16 rule, and large
files decoded smaller (fastmmd.base.images.open_image's ``min_side``). The exports, the CLI and the
torch-free path: tests/integration/test_arbitrary.py."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from conftest import synthetic_image

from fastmmd.base import precision
from fastmmd.base.errors import UserError
from fastmmd.base.images import open_image
from fastmmd.model.arbitrary import PaintingEncoder, statistics_width
from fastmmd.model.style_files import encoder_settings, read_style_file, write_style_file

F8 = statistics_width(8)
#: An arbitrary-style model's description for the tiny VGG stand-in (VGG-19 with widths / 8, random weights).
TINY = {"network": {"style_features": F8}, "vgg": {"weights": "random", "pooling": "max", "width_divisor": 8},
        "style_size": 16}


@pytest.fixture
def painting(tmp_path):
    path = tmp_path / "painting.png"
    synthetic_image(40, 30, seed=7).save(path)
    return path


def test_a_style_file_holds_what_the_encoder_computes_and_reads_back_without_vgg(painting, tmp_path):
    encoder = PaintingEncoder(TINY, bf16=False)
    phi = encoder([painting])
    assert phi.shape == (1, F8) and encoder.settings["size"] == 20  # 16 px x INFERENCE_ZOOM
    saved = encoder.save(painting, tmp_path / "style.npz")
    values, meta = read_style_file(saved, encoder_settings(TINY))
    assert torch.equal(torch.from_numpy(values), phi[0])
    assert meta["painting"] == "painting" and meta["precision"] == "float32" and meta["features"] == F8
    fresh = PaintingEncoder(TINY)  # another process: the file alone, VGG never built
    assert torch.equal(fresh([saved, saved]), torch.cat([phi, phi])) and fresh._vgg is None


def test_vgg_runs_in_bf16_where_the_cpu_rule_says_it_is_fast(painting, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: True)
    assert PaintingEncoder(TINY).bf16 and PaintingEncoder(TINY).precision == "bfloat16"
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: False)
    assert not PaintingEncoder(TINY).bf16 and PaintingEncoder(TINY, bf16=True).bf16
    fp32, bf16 = PaintingEncoder(TINY, bf16=False)([painting]), PaintingEncoder(TINY, bf16=True)([painting])
    assert bf16.dtype == torch.float32 and 0 < (bf16 - fp32).abs().max() < 0.1  # bf16 ran, and phi stayed close


def _rewrite(source, target, **members) -> None:
    """``target``: the style file ``source`` with some members replaced (bytes) or added."""
    with zipfile.ZipFile(source) as z:
        data = {n: z.read(n) for n in z.namelist()}
    data.update(members)
    with zipfile.ZipFile(target, "w") as z:
        for name, value in data.items():
            z.writestr(name, value)


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.mark.parametrize("case, needle", [
    ("suffix", "not exist"),
    ("text", "not a readable .npz"),
    ("member", "not the arrays"),
    ("pickle", "nothing is unpickled"),
    ("shape", "not float32 (F,)"),
    ("nan", "non-finite or negative"),
    ("negative", "non-finite or negative"),
    ("truncated", "truncated"),
    ("version", "format_version"),
    ("other_vgg", "compute them again"),
    ("other_size", "compute them again"),
    ("features", "compute them again"),
    ("huge", "MB"),
])
def test_crafted_or_mismatched_style_files_are_refused_in_one_line(tmp_path, case, needle):
    settings = encoder_settings(TINY)
    good = write_style_file(tmp_path / "good.npz", np.full(F8, 0.5), settings, "p", "float32")
    bad = tmp_path / "bad.npz"
    meta = json.loads(str(np.load(good)["fastmmd"]))
    if case == "suffix":
        bad = tmp_path / "missing.npz"
    elif case == "text":
        bad.write_text("not a zip")
    elif case == "member":
        _rewrite(good, bad, **{"extra.npy": _npy(np.zeros(2, np.float32))})
    elif case == "pickle":  # an object array: np.load would need allow_pickle=True to read it
        _rewrite(good, bad, **{"statistics.npy": _npy(np.array([{"x": 1}], dtype=object), allow_pickle=True)})
    elif case == "shape":
        _rewrite(good, bad, **{"statistics.npy": _npy(np.zeros((2, F8), np.float32))})
    elif case in ("nan", "negative"):
        values = np.full(F8, 0.5, np.float32)
        values[3] = np.nan if case == "nan" else -1.0
        _rewrite(good, bad, **{"statistics.npy": _npy(values)})
    elif case == "truncated":  # a header that claims more data than the member holds
        _rewrite(good, bad, **{"statistics.npy": _npy(np.full(F8, 0.5, np.float32))[:-8]})
    elif case == "version":
        _rewrite(good, bad, **{"fastmmd.npy": _npy(np.array(json.dumps({**meta, "format_version": 9})))})
    elif case == "huge":
        bad.write_bytes(b"PK" + bytes(2 << 20))
    else:
        other = {"other_vgg": {**settings, "vgg": {**settings["vgg"], "pooling": "avg"}},
                 "other_size": {**settings, "size": 320}, "features": {**settings, "features": F8 + 2}}[case]
        bad = good
        settings = other
    with pytest.raises(UserError) as err:
        read_style_file(bad, settings)
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_encoder_settings_come_from_a_checkpoint_or_an_export_and_ignore_what_a_file_cannot_mean():
    export = {"network": {"style_features": 2944}, "training": {"vgg": {"weights": "caffe", "pooling": "max",
                                                                         "width_divisor": 1}, "style_size": 256}}
    assert encoder_settings(export) == {"layers": ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
                                        "vgg": {"weights": "caffe", "pooling": "max", "width_divisor": 1},
                                        "size": 320, "features": 2944}
    odd = {"vgg": {"weights": "/etc/passwd", "pooling": "max", "width_divisor": True}, "style_size": 10**9}
    assert encoder_settings(odd)["vgg"]["weights"] == "caffe" and encoder_settings(odd)["size"] == 320


@pytest.mark.parametrize("suffix, size, expected", [
    (".jpg", (400, 300), (100, 75)),  # JPEG: decoded at 1/4 by the decoder (DCT scaling), the most that keeps 60 px
    (".png", (400, 300), (80, 60)),   # other formats: reduced by a whole factor (5) after decoding
    (".jpg", (100, 90), (100, 90)),   # already small: every pixel
])
def test_large_files_are_decoded_smaller_down_to_min_side(tmp_path, suffix, size, expected):
    path = tmp_path / f"big{suffix}"
    synthetic_image(*size, seed=1).save(path)
    assert open_image(path, min_side=60)[0].size == expected
    assert open_image(path)[0].size == size
    rgba = tmp_path / "alpha.png"
    synthetic_image(*size, seed=2, mode="RGBA").save(rgba)
    rgb, alpha = open_image(rgba, with_alpha=True, min_side=60)
    assert alpha is not None and alpha.size == rgb.size and min(rgb.size) >= 60
