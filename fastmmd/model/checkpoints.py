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

A network trained with ``model.conditioning`` (:mod:`fastmmd.model.conditioning`) also records
``"styles"``/``"strength_width"`` in ``"network"`` and a ``"conditioning"`` entry:
``{"draw": "image", "styles": ["candy", "mosaic"], "strength": {"range": [0.0, 2.0], "default": 1.0}}``.

Loading needs only torch (the weights-only unpickler of :mod:`fastmmd.model.files`), so ``stylize``
and ``export`` never import Lightning. Writing goes through :func:`checkpoint_entries` and
:func:`description`, which ``StyleTransferModule.on_save_checkpoint`` and the tests' stand-in
checkpoints both call, so the format is written in one place.
"""

from __future__ import annotations

import os
from typing import Any

from fastmmd.base.errors import UserError
from fastmmd.base.inputs import regular_file
from fastmmd.base.safe_load import load_pickle, not_a_model
from fastmmd.model.files import network_from_state, validate_metadata
from fastmmd.model.networks import TransformerNet

FORMAT_VERSION = 1
KEY = "fastmmd"
NETWORK_PREFIX = "network."


def description(network: TransformerNet, **training: Any) -> dict[str, Any]:
    """The ``"fastmmd"`` entry: the format and fastmmd versions and the network's layout (all that
    reading the weights back needs), then whatever the run records about its training (``training``:
    style images, loss, weights, VGG, ``global_step``...)."""
    from fastmmd import __version__

    return {"format_version": FORMAT_VERSION, "fastmmd_version": __version__, "network": network.config(), **training}


def checkpoint_entries(network: TransformerNet, meta: dict[str, Any]) -> dict[str, Any]:
    """The entries fastmmd owns in a checkpoint: a ``state_dict`` with only the network's weights
    (keys ``network.*``; never the frozen VGG) and ``meta`` (from :func:`description`) under ``"fastmmd"``."""
    return {"state_dict": {NETWORK_PREFIX + k: v for k, v in network.state_dict().items()}, KEY: meta}


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Loads a checkpoint dict with the weights-only unpickler (:func:`fastmmd.base.safe_load.load_pickle`).

    Raises:
        UserError: missing, unreadable, crafted, or not a training checkpoint (one line).
    """
    p = regular_file(path, "checkpoint")
    ckpt = load_pickle(p)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise not_a_model(p, "no state_dict")
    return ckpt


def describe_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's ``"fastmmd"`` description, checked (present, a known format version, every
    field through :func:`fastmmd.model.files.validate_metadata`)."""
    meta = ckpt.get(KEY)
    if not isinstance(meta, dict):
        raise not_a_model(path, "no fastmmd description; was it written by `fastmmd fit`?")
    version = meta.get("format_version", 0)
    if type(version) is not int:
        raise not_a_model(path, f"format version {str(version)[:20]!r}")
    if version > FORMAT_VERSION:
        raise UserError(f"{str(path)!r} uses checkpoint format {version}; upgrade fastmmd to read it")
    return validate_metadata(meta, path)


def network_from_checkpoint(path: str | os.PathLike) -> tuple[TransformerNet, dict[str, Any]]:
    """The trained :class:`TransformerNet` (eval mode, CPU) and the checkpoint's description."""
    return network_in_checkpoint(read_checkpoint(path), path)


def network_in_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike) -> tuple[TransformerNet, dict[str, Any]]:
    """:func:`network_from_checkpoint` for a checkpoint dict already read (``path`` names it in messages)."""
    meta = describe_checkpoint(ckpt, path)
    state = {k[len(NETWORK_PREFIX):]: v for k, v in ckpt["state_dict"].items()
             if isinstance(k, str) and k.startswith(NETWORK_PREFIX)}
    return network_from_state(meta.get("network"), state, path), meta
