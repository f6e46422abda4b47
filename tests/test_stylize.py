"""fastmmd stylize: every model kind, folders/globs, odd sizes, alpha, grayscale, 16-bit, EXIF,
corrupt files, output names, tiling without seams, colour preservation, the Python API, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import synthetic_image
from PIL import Image

import fastmmd
from fastmmd.__main__ import main
from fastmmd.base.images import pil_to_tensor
from fastmmd.core.color import rgb_to_ycbcr, ycbcr_to_rgb
from fastmmd.infer.stylize import load_stylizer
from fastmmd.model.tiling import owned, stylize_tiled, tile_spans


@pytest.fixture
def one_thread():
    """Many small ops: on a shared 2-core box, one thread is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stylize(*argv: object) -> int:
    return main(["stylize", *map(str, argv), "--quiet"])


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


@pytest.mark.parametrize("kind", ["ckpt", "torchscript", "pt2", "onnx"])
def test_every_model_kind_same_result(tiny_exports, kind):
    if kind not in tiny_exports:
        pytest.skip("onnx not installed")
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
    x = pil_to_tensor(synthetic_image(23, 17)).unsqueeze(0)
    ref = load_stylizer(tiny_exports["ckpt"], device="cpu").stylize_tensor(x)
    out = load_stylizer(tiny_exports[kind], device="cpu").stylize_tensor(x)
    assert out.shape == x.shape and (out - ref).abs().max().item() <= 1e-5


def test_folders_globs_odd_sizes(tiny_exports, make_image, tmp_path):
    make_image("in/a.png", 37, 29)
    make_image("in/b.jpg", 21, 33, seed=1)
    make_image("in/notes.txt.png", 16, 16, seed=2)
    (tmp_path / "in" / "readme.txt").write_text("not an image, ignored in folders")
    make_image("more/c.bmp", 19, 11, seed=3)
    make_image("more/d.webp", 25, 9, seed=4)
    out = tmp_path / "out"
    assert stylize(tiny_exports["torchscript"], tmp_path / "in", tmp_path / "more" / "*.bmp", "--output-dir", out) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_stylized.png", "b_stylized.png", "c_stylized.bmp", "notes.txt_stylized.png"]
    assert size_of(out / "a_stylized.png") == (37, 29) and size_of(out / "b_stylized.png") == (21, 33)
    assert size_of(out / "c_stylized.bmp") == (19, 11)


def test_alpha_grayscale_16bit_exif(tiny_exports, make_image, tmp_path):
    rgba = synthetic_image(30, 20).convert("RGBA")
    alpha = Image.linear_gradient("L").resize((30, 20))
    rgba.putalpha(alpha)
    rgba.save(tmp_path / "alpha.png")
    make_image("gray.png", 26, 18, mode="L")
    arr = (torch.linspace(0, 65535, 24 * 16).reshape(16, 24)).to(torch.int32)
    Image.frombytes("I;16", (24, 16), arr.numpy().astype("<u2").tobytes()).save(tmp_path / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    synthetic_image(40, 20).save(tmp_path / "rotated.jpg", exif=exif)
    out = tmp_path / "out"
    assert stylize(tiny_exports["ckpt"], *(tmp_path / n for n in ("alpha.png", "gray.png", "deep.png", "rotated.jpg")), "-o", out) == 0
    with Image.open(out / "alpha_stylized.png") as img:
        assert img.mode == "RGBA" and img.size == (30, 20)
        assert img.getchannel("A").tobytes() == alpha.tobytes()
    with Image.open(out / "gray_stylized.png") as img:
        assert img.mode == "RGB" and img.size == (26, 18)
    assert size_of(out / "deep_stylized.png") == (24, 16)
    assert size_of(out / "rotated_stylized.png") == (20, 40)


def test_corrupt_file_skipped_others_written(tiny_exports, make_image, tmp_path, capsys):
    make_image("in/good.png", 20, 20)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    make_image("in/zgood.jpg", 24, 20)
    out = tmp_path / "out"
    assert stylize(tiny_exports["pt2"], tmp_path / "in", tmp_path / "missing.png", "-o", out) == 1
    assert sorted(p.name for p in out.iterdir()) == ["good_stylized.png", "zgood_stylized.png"]
    err = capsys.readouterr().err.splitlines()
    assert sum("broken.png" in line for line in err) == 1 and sum("missing.png" in line for line in err) == 1
    assert not any("Traceback" in line for line in err)


def test_never_overwrites_an_input(tiny_exports, make_image, tmp_path):
    make_image("x.png", 20, 16)
    victim = make_image("x_stylized.png", 20, 16, seed=5)
    before = victim.read_bytes()
    assert stylize(tiny_exports["ckpt"], tmp_path / "x.png", victim, "-o", tmp_path) == 0
    assert (tmp_path / "x_stylized_2.png").exists() and (tmp_path / "x_stylized_stylized.png").exists()
    assert victim.read_bytes() == before


def test_max_size_and_batches(tiny_exports, make_image, tmp_path):
    for i in range(3):
        make_image(f"in/{i}.png", 64, 40, seed=i)
    out = tmp_path / "out"
    assert stylize(tiny_exports["ckpt"], tmp_path / "in", "-o", out, "--max-size", 32, "--batch-size", 2) == 0
    assert [size_of(out / f"{i}_stylized.png") for i in range(3)] == [(32, 20)] * 3


def _seam_ratio(diff: torch.Tensor, cols: list[int]) -> float:
    """Mean jump of (tiled - untiled) across the given columns / its mean jump across all columns."""
    g = (diff[..., 1:] - diff[..., :-1]).abs().mean(dim=(0, 1, 2))  # g[c]: between columns c and c+1
    return (g[[c - 1 for c in cols]].mean() / g.mean()).item()


def test_tiled_close_to_untiled_without_seams(tiny_exports, one_thread):
    x = pil_to_tensor(synthetic_image(256, 160, seed=3)).unsqueeze(0)
    untiled = load_stylizer(tiny_exports["ckpt"], device="cpu", tile=0)
    full = untiled.stylize_tensor(x)
    contrast = (full - full.mean(dim=(2, 3), keepdim=True)).abs().mean().item()
    spans = tile_spans(256, 128, 32)
    edges = sorted({*(a for a, _ in spans[1:]), *(b for _, b in spans[:-1])})
    # whole-image instance-norm statistics: tiles reproduce the untiled result
    for kind in ("ckpt", "torchscript"):
        tiled = load_stylizer(tiny_exports[kind], device="cpu", tile=128, overlap=32, tile_stats="global").stylize_tensor(x)
        assert tiled.shape == full.shape
        assert (tiled - full).abs().mean().item() < 0.005 and (tiled - full).abs().max().item() < 0.1
    # per-tile statistics (default): tiles differ somewhat, but the blend leaves no seam at the tile edges ...
    per_tile = load_stylizer(tiny_exports["ckpt"], device="cpu", tile=128, overlap=32).stylize_tensor(x)
    assert (per_tile - full).abs().mean().item() < 0.8 * contrast
    assert _seam_ratio(per_tile - full, edges) < 1.3
    # ... whereas hard cuts do (so the measure can fail)
    hard = torch.cat([untiled.stylize_tensor(x[..., :128]), untiled.stylize_tensor(x[..., 128:])], dim=-1)
    assert _seam_ratio(hard - full, [128]) > 2.0


def test_blend_weights_are_a_partition_of_unity():
    x = torch.rand(1, 3, 50, 77)
    assert torch.allclose(stylize_tiled(lambda t: t, x, tile=24, overlap=8), x, atol=1e-6)


def test_tiles_are_aligned_and_owned_regions_partition_the_image():
    for length, tile, overlap in [(77, 24, 8), (256, 128, 32), (101, 40, 12), (30, 40, 8)]:
        spans = tile_spans(length, tile, overlap)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a % 4 == 0 for a, _ in spans)
        assert all(b0 > a1 for (_, b0), (a1, _) in zip(spans, spans[1:]))  # neighbours overlap
        covered = [a + lo for (a, _), (lo, _) in zip(spans, map(lambda i: owned(spans, i), range(len(spans))))]
        ends = [a + owned(spans, i)[1] for i, (a, _) in enumerate(spans)]
        assert covered[0] == 0 and covered[1:] == ends[:-1] and ends[-1] == length + (-length) % 4


def test_auto_tiling_when_memory_is_short(tiny_exports, monkeypatch, one_thread):
    import fastmmd.infer.stylize as stylize_module

    monkeypatch.setattr(stylize_module, "available_memory", lambda device: 9_500_000)
    stylizer = load_stylizer(tiny_exports["ckpt"], device="cpu")
    assert stylizer.auto_tile(1, 150, 200) == 96  # width-8 net: ~512 bytes per pixel, half the memory
    assert stylizer.auto_tile(1, 80, 80) is None
    out = stylizer.stylize_tensor(torch.rand(1, 3, 150, 200))
    assert out.shape == (1, 3, 150, 200) and torch.isfinite(out).all()


def test_preserve_color_keeps_input_chroma(tiny_exports):
    img = synthetic_image(40, 30, seed=7)
    rgb = pil_to_tensor(img)
    plain = load_stylizer(tiny_exports["ckpt"], device="cpu").stylize_image(rgb)
    kept = load_stylizer(tiny_exports["ckpt"], device="cpu", preserve_color=True).stylize_image(rgb)
    chroma = lambda t: rgb_to_ycbcr(t)[1:]  # noqa: E731
    assert (chroma(kept) - chroma(rgb)).abs().mean().item() < 0.01
    assert (chroma(plain) - chroma(rgb)).abs().mean().item() > 3 * (chroma(kept) - chroma(rgb)).abs().mean().item()
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-5)


def test_python_api(tiny_exports):
    stylizer = fastmmd.load_stylizer(tiny_exports["torchscript"], device="cpu")
    img = synthetic_image(33, 19).convert("RGBA")
    out = stylizer(img)
    assert isinstance(out, Image.Image) and out.size == (33, 19) and out.mode == "RGBA"
    assert stylizer(synthetic_image(17, 31, mode="L")).size == (17, 31)


def test_no_lightning_or_datasets_on_the_stylize_path(tiny_exports, make_image, tmp_path):
    image = make_image("a.png", 20, 20)
    script = f"""
import sys
import fastmmd.infer.stylize
from fastmmd.__main__ import main
assert main(["stylize", {str(tiny_exports["ckpt"])!r}, {str(image)!r}, "-o", {str(tmp_path / "out")!r}, "-q"]) == 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "datasets", "tensorboard"))
print("heavy:", heavy)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(fastmmd.__file__).parent.parent)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "heavy: []" in res.stdout
    assert (tmp_path / "out" / "a_stylized.png").exists()


@pytest.mark.parametrize("argv, needle", [
    (["stylize", "missing.pt", "{img}"], "does not exist"),
    (["stylize", "{img}", "{img}"], "not a model file"),
    (["stylize", "{fake}", "{img}"], "not a fastmmd checkpoint or model"),
    (["stylize", "{ckpt}", "nothing/*.png"], "no images"),
    (["stylize", "{ckpt}", "{img}", "--half", "--device", "cpu"], "--half"),
    (["stylize", "{ckpt}", "{img}", "--tile", "5"], "--tile"),
])
def test_cli_errors_are_one_line(tiny_exports, make_image, tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    img = make_image("img.png", 20, 20)
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"definitely not a model")
    argv = [a.format(img=img, fake=fake, ckpt=tiny_exports["ckpt"]) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
