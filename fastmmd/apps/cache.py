"""Optimized images kept between runs: the one cache of ``compare`` and ``evaluate``.

An image is kept as ``<key>.png`` (its 8-bit pixels: what every metric reads, so a reused image
scores exactly as the first time) and ``<key>.json`` (how it was made: seconds, iterations, final
loss terms, and what a command adds, such as compare's metrics). ``key`` is the first 16 hex digits
of the SHA-256 of the canonical JSON of a spec; for an optimized image the spec is
:func:`optimized_spec`: everything that changes the image, from the pixels of the photo and the
style as read (their sizes included) to every loss and optimizer setting, the precision, the VGG
and the losses' calibration. So ``evaluate`` reuses ``compare``'s image of the same photo, style
and settings, and the other way round, when both are given the same ``--cache-dir``; a change of
any setting makes a new key, never a stale image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor

from fastmmd.base.images import pil_to_tensor, save_image
from fastmmd.base.outputs import atomic_path
from fastmmd.base.settings import OptimizerSettings
from fastmmd.losses import StyleLoss
from fastmmd.losses.criterion import CALIBRATION

#: Bumped when what a key covers changes (format 1: compare's and evaluate's separate keys).
FORMAT = 2


def pixel_digest(image: Tensor) -> str:
    """A short SHA-256 of an image tensor's values (the image as read, at the size it was read)."""
    return hashlib.sha256(image.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def file_digest(path: str | os.PathLike) -> str:
    """A short SHA-256 of a file's bytes (a model file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def key_of(spec: Mapping[str, Any]) -> str:
    """The cache key of ``spec`` (JSON-serialisable): 16 hex digits of the SHA-256 of its canonical JSON."""
    return hashlib.sha256(json.dumps({"format": FORMAT, **spec}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def optimized_spec(*, content: Tensor | None, style: Tensor, init: str, loss: StyleLoss, optimizer: OptimizerSettings,
                   precision: str, vgg: Mapping[str, Any]) -> dict[str, Any]:
    """What makes an optimized image (:func:`fastmmd.apps.optimize.optimize_image`): the photo and
    style pixels (``content`` None: a style reconstruction from noise), the initial image
    (``content`` or ``random``), every :class:`~fastmmd.losses.StyleLoss` setting, the optimizer
    settings, the precision, the VGG (:meth:`~fastmmd.vgg.features.VGGFeatures.describe`) and the
    losses' calibration."""
    return {"kind": "optimize", "content": None if content is None else pixel_digest(content),
            "style": pixel_digest(style), "init": init, "loss": asdict(loss), "optimizer": asdict(optimizer),
            "precision": precision, "vgg": dict(vgg), "calibration": CALIBRATION}


class KeptImages:
    """The images of one cache folder, by key."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def image_path(self, key: str) -> Path:
        return self.folder / f"{key}.png"

    def record(self, key: str) -> dict[str, Any] | None:
        """The kept record of ``key``, or None (missing, unreadable, or its image is gone)."""
        with contextlib.suppress(OSError, ValueError):
            record = json.loads((self.folder / f"{key}.json").read_text())
            if isinstance(record, dict) and self.image_path(key).is_file():
                return record
        return None

    def image(self, key: str) -> Tensor:
        """The kept image (1, 3, H, W) in [0, 1], as its 8-bit PNG holds it."""
        with Image.open(self.image_path(key)) as img:
            return pil_to_tensor(img.convert("RGB")).unsqueeze(0)

    def keep(self, key: str, image: Tensor, record: dict[str, Any]) -> dict[str, Any]:
        """Writes the image (with ``record`` in its PNG metadata) and then the record, each atomically."""
        save_image(image.detach().cpu(), self.image_path(key), {"fastmmd": json.dumps(record)})
        self.update(key, record)
        return record

    def update(self, key: str, record: dict[str, Any]) -> None:
        """Replaces the record of an image already kept (compare adds its metrics)."""
        with atomic_path(self.folder / f"{key}.json") as tmp:
            tmp.write_text(json.dumps(record, indent=1))
