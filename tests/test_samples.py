"""Offline sample data: files appear, are valid images, are deterministic and are not rewritten."""

from __future__ import annotations

from pathlib import Path

import torch

from fastmmd.base.images import read_image
from fastmmd.core.samples import main, write_samples


def test_write_samples_makes_valid_varied_images(tmp_path: Path) -> None:
    out = write_samples(tmp_path, photos=4, size=64, seed=1)
    photos = sorted((tmp_path / "photos").glob("*.jpg"))
    assert out["written"] == 5 and len(photos) == 4 and out["style"] == tmp_path / "style.png"
    images = [read_image(p) for p in photos]
    style = read_image(out["style"])
    assert all(t.shape == (3, 64, 64) for t in [*images, style])
    assert all(float(t.std()) > 0.05 for t in [*images, style])  # not flat
    assert min(float((a - b).abs().mean()) for i, a in enumerate(images) for b in images[i + 1:]) > 0.03  # varied
    # the style's palette and texture differ from the photos': more high-frequency energy
    def texture(t: torch.Tensor) -> float:
        return float((t[:, 1:] - t[:, :-1]).abs().mean() + (t[:, :, 1:] - t[:, :, :-1]).abs().mean())
    assert texture(style) > 1.3 * max(texture(t) for t in images)


def test_write_samples_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    write_samples(tmp_path / "a", photos=2, size=48, seed=3)
    write_samples(tmp_path / "b", photos=2, size=48, seed=3)
    for rel in ["photos/photo_000.jpg", "photos/photo_001.jpg", "style.png"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    before = (tmp_path / "a" / "style.png").stat().st_mtime_ns
    assert write_samples(tmp_path / "a", photos=3, size=48, seed=3)["written"] == 1  # only the new photo
    assert (tmp_path / "a" / "style.png").stat().st_mtime_ns == before
    other = write_samples(tmp_path / "c", photos=1, size=48, seed=4)
    assert (tmp_path / "c" / "style.png").read_bytes() != (tmp_path / "a" / "style.png").read_bytes()
    assert other["written"] == 2


def test_module_entry_point(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "s"), "--photos", "1", "--size", "40"]) == 0
    assert (tmp_path / "s" / "photos" / "photo_000.jpg").is_file() and (tmp_path / "s" / "style.png").is_file()
    assert "2 files written" in capsys.readouterr().out
