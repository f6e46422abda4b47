"""The torch-free stylize path (fastmmd.infer.fast_stylize, fastmmd.model.onnx_files) and ONNX export of wide networks.

The fast path must write exactly the images the torch path writes for the same ``.onnx`` file,
never import torch, take only the command lines it can serve (everything else goes to the torch
path unchanged), and check every file it did not verify against the ONNX allowlist first. That a fresh
interpreter stylizes on it without torch: tests/e2e/test_processes.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import fails_with_one_line, require_onnx
from PIL import Image

from fastmmd.__main__ import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture
def onnx_file(tiny_exports) -> Path:
    require_onnx()
    return tiny_exports["onnx"]


def pixels(path: Path) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(path) as img:
        return img.mode, img.size, img.tobytes()


def test_fast_path_writes_the_torch_paths_image(onnx_file, make_image, tmp_path, monkeypatch):
    from fastmmd.commands import stylize
    from fastmmd.infer import fast_stylize

    photo = make_image("photo.png", 45, 37, seed=3)
    calls = []
    monkeypatch.setattr(stylize, "run", lambda args, _run=stylize.run: calls.append(1) or _run(args))
    assert main(["stylize", str(onnx_file), str(photo), "-o", str(tmp_path / "fast"), "-q", "--threads", "1"]) == 0
    assert not calls  # the torch path did not run
    # --max-size above the photo's size changes nothing but sends the command to the torch path
    assert main(["stylize", str(onnx_file), str(photo), "-o", str(tmp_path / "torch"), "-q", "--max-size", "4096"]) == 0
    assert calls
    fast, slow = tmp_path / "fast" / "photo_stylized.png", tmp_path / "torch" / "photo_stylized.png"
    assert pixels(fast) == pixels(slow)
    with Image.open(fast) as img:
        assert img.text["fastmmd:model"] == onnx_file.name and img.text["fastmmd:source"] == "photo.png"
    assert fast_stylize.plan([str(onnx_file), str(photo), "--max-size", "4096"]) is None


@pytest.mark.parametrize("path", ["fast", "torch"])
def test_one_photo_goes_to_the_image_file_named_by_output(path, onnx_file, make_image, tmp_path, monkeypatch, capsys):
    """``-o out.jpg`` for one photo writes out.jpg (format by suffix), on both paths alike; for two
    photos it is refused in one line before anything is written (it used to make a folder "out.jpg")."""
    from fastmmd.commands import stylize

    photo, other = make_image("photo.png", 45, 37, seed=3), make_image("other.png", 30, 20, seed=4)
    calls = []
    monkeypatch.setattr(stylize, "run", lambda args, _run=stylize.run: calls.append(1) or _run(args))
    route = ["--max-size", "4096"] if path == "torch" else []  # --max-size sends the command to the torch path
    assert main(["stylize", str(onnx_file), str(photo), "-o", str(tmp_path / "out.png"), "-q", *route]) == 0
    assert bool(calls) == (path == "torch")
    assert (tmp_path / "out.png").is_file() and f"to {str(tmp_path / 'out.png')!r}" in capsys.readouterr().err
    assert main(["stylize", str(onnx_file), str(tmp_path), "-o", str(tmp_path / "folder"), "-q", *route]) == 0
    assert pixels(tmp_path / "out.png") == pixels(tmp_path / "folder" / "photo_stylized.png")
    assert main(["stylize", str(onnx_file), str(photo), "-o", str(tmp_path / "out.jpg"), "-q", *route]) == 0
    with Image.open(tmp_path / "out.jpg") as img:
        assert img.format == "JPEG" and img.size == (45, 37)
    before = sorted(tmp_path.rglob("*"))
    fails_with_one_line(["stylize", str(onnx_file), str(photo), str(other), "-o", str(tmp_path / "two.png"), *route],
                        capsys, "names one image file, but 2 images")
    assert sorted(tmp_path.rglob("*")) == before


def test_fast_path_keeps_alpha_and_skips_unreadable_inputs(onnx_file, make_image, tmp_path, capsys):
    rgba = make_image("a.png", 20, 16, mode="RGBA")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["stylize", str(onnx_file), str(rgba), str(broken), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "skipped" in err and "wrote 1 image(s)" in err
    with Image.open(tmp_path / "out" / "a_stylized.png") as img:
        assert img.mode == "RGBA" and img.size == (20, 16)


@pytest.mark.parametrize("extra", [["--max-size", "64"], ["--tile", "128"], ["--preserve-color"], ["--bf16"],
                                   ["--device", "cuda"], ["--style", "0"], ["--list"], ["--unknown-flag"],
                                   ["--style-image", "painting.png"], ["--style-image", "a.npz", "--style-image", "b.npz"]])
def test_other_command_lines_go_to_the_torch_path(onnx_file, make_image, extra):
    from fastmmd.infer.fast_stylize import plan

    photo = make_image("p.png", 24, 20)
    assert plan([str(onnx_file), str(photo), "-o", "out"]) is not None
    assert plan([str(onnx_file), str(photo), "-o", "out", *extra]) is None


def test_only_onnx_models_and_images_take_the_fast_path(tiny_exports, make_image, tmp_path):
    from fastmmd.infer.fast_stylize import plan

    photo = make_image("p.png", 24, 20)
    assert plan([str(tiny_exports["torchscript"]), str(photo)]) is None
    assert plan([str(tiny_exports["ckpt"]), str(photo)]) is None
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0")
    assert plan([str(tiny_exports.get("onnx", tiny_exports["ckpt"])), str(clip)]) is None
    assert plan([str(tiny_exports.get("onnx", tiny_exports["ckpt"])), str(photo), "-o", "out.mp4"]) is None


def test_fast_path_errors_are_one_line(onnx_file, make_image, tmp_path, capsys):
    photo = make_image("p.png", 24, 20)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    fails_with_one_line(["stylize", str(bad), str(photo), "-o", str(tmp_path / "o")], capsys, "bad.onnx", "not a")
    fails_with_one_line(["stylize", str(onnx_file), str(photo), "--threads", "0"], capsys, "--threads")


def test_fast_path_refuses_disallowed_graphs_before_onnxruntime(onnx_file, make_image, tmp_path, capsys):
    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_file))
    model.graph.node.insert(0, helper.make_node("RandomNormal", [], ["noise"], shape=[1]))
    crafted = tmp_path / "crafted.onnx"
    onnx.save_model(model, str(crafted))
    photo = make_image("p.png", 24, 20)
    fails_with_one_line(["stylize", str(crafted), str(photo), "-o", str(tmp_path / "o")], capsys, "RandomNormal")
    assert not (tmp_path / "o").exists()


def test_shipped_onnx_is_verified_by_its_sha256_only(onnx_file, tmp_path, monkeypatch):
    import shutil

    from fastmmd.infer import zoo
    from fastmmd.infer.fast_stylize import fast_model

    root = tmp_path / "zoo"
    root.mkdir()
    shutil.copy(onnx_file, root / "tiny.onnx")
    entry = {"files": {"torchscript": "tiny.pt", "onnx": "tiny.onnx"},
             "sha256": {"onnx": zoo.file_sha256(root / "tiny.onnx")}}
    (root / zoo.MANIFEST).write_text(json.dumps({"format_version": 1, "styles": {"tiny": entry}}))
    monkeypatch.delenv(zoo.ENV_VAR, raising=False)
    monkeypatch.setattr(zoo, "zoo_dir", lambda: root)
    assert zoo.verified_shipped_file("tiny:onnx") == root / "tiny.onnx"
    assert fast_model("tiny") == (root / "tiny.onnx", True) == fast_model("tiny:onnx")
    assert fast_model("tiny:pt") is None and fast_model(str(root / "tiny.onnx")) == (root / "tiny.onnx", False)
    with open(root / "tiny.onnx", "ab") as f:
        f.write(b"\0")  # changed: checked whole again
    assert zoo.verified_shipped_file("tiny:onnx") is None
    assert fast_model("tiny") == (root / "tiny.onnx", False)
    monkeypatch.setenv(zoo.ENV_VAR, str(root))  # another zoo's manifest vouches for nothing
    entry["sha256"]["onnx"] = zoo.file_sha256(root / "tiny.onnx")
    (root / zoo.MANIFEST).write_text(json.dumps({"format_version": 1, "styles": {"tiny": entry}}))
    assert zoo.verified_shipped_file("tiny:onnx") is None


def test_stylize_array_rounds_as_the_torch_path():
    import torch

    from fastmmd.base.images import pil_to_tensor, tensor_to_pil
    from fastmmd.infer.fast_stylize import stylize_array

    rgb = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    network = lambda x: np.clip(x * 1.37 - 0.2, -0.5, 1.5)  # values outside [0, 1] too
    ours = stylize_array(network, rgb)
    t = pil_to_tensor(Image.fromarray(rgb))
    theirs = np.asarray(tensor_to_pil(torch.from_numpy(network(t.numpy()))))
    assert np.array_equal(ours, theirs)


def test_onnx_export_folds_wide_upsampling_kernels(conditioned):
    """The exporter folds only tensors under 8192 values by itself; a 4x-width bottleneck of 11 channels
    (the export matrix's conditioned network) has upsampling weights of 44 x 22 x 9 = 8712 values, which
    left Einsum nodes outside the allowlist."""
    import onnx

    from fastmmd.model.files import ONNX_OPERATORS, read_network

    require_onnx()
    net, _ = read_network(conditioned["ckpt"])
    assert net.width == 11 and conditioned.meta("onnx")["parity_max_abs_diff"] <= 1e-5
    ops = {n.op_type for n in onnx.load(str(conditioned["onnx"])).graph.node}
    assert ops <= ONNX_OPERATORS and "Einsum" not in ops
