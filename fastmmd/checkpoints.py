"""What a fastmmd training checkpoint holds, and reading its network back without Lightning.

A ``.ckpt`` written by ``fastmmd fit`` is a Lightning checkpoint whose ``state_dict`` holds only the
transformation network (keys ``network.*``; never the frozen VGG, so it stays a few MB) plus a
``"fastmmd"`` entry describing itself (format version 1)::

    {"format_version": 1, "fastmmd_version": "0.1.0",
     "network": {"width": 32, "residual_blocks": 5},
     "style_images": ["starry_night.jpg"], "style_blend": [1.0], "loss": "gram",
     "style_weight": 5.0, "content_weight": 1.0, "tv_weight": 1e-6,
     "vgg": {"weights": "caffe", "pooling": "max", "width_divisor": 1},
     "global_step": 1200}

Loading needs only torch (``weights_only=True``), so ``stylize`` and ``export`` never import
Lightning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fastmmd.errors import UserError
from fastmmd.networks import TransformerNet

FORMAT_VERSION = 1
KEY = "fastmmd"
NETWORK_PREFIX = "network."


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Loads a checkpoint dict safely (``weights_only=True``), with one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {str(p)!r} does not exist")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read checkpoint {str(p)!r}: {type(err).__name__}: {str(err).splitlines()[0][:200]}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(f"{str(p)!r} is not a fastmmd training checkpoint (no state_dict)")
    return ckpt


def network_from_checkpoint(path: str | os.PathLike) -> tuple[TransformerNet, dict[str, Any]]:
    """The trained :class:`TransformerNet` (eval mode, CPU) and the checkpoint's description."""
    ckpt = read_checkpoint(path)
    meta = ckpt.get(KEY)
    if not isinstance(meta, dict):
        raise UserError(f"{str(path)!r} has no fastmmd description; was it written by `fastmmd fit`?")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise UserError(f"{str(path)!r} uses checkpoint format {meta['format_version']}; upgrade fastmmd to read it")
    state = {k[len(NETWORK_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(NETWORK_PREFIX)}
    net = TransformerNet(**meta["network"])
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"{str(path)!r}: network weights do not match its description ({str(err).splitlines()[0]})") from None
    return net.eval(), meta
