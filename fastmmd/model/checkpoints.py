"""What a fastmmd training checkpoint holds, and reading its network back without Lightning.

A ``.ckpt`` written by ``fastmmd fit`` is a Lightning checkpoint whose ``state_dict`` holds only the
transformation network (keys ``network.*``; never the frozen VGG, so it stays a few MB) plus a
``"fastmmd"`` entry describing itself (format version :data:`FORMAT_VERSION`). What
:func:`description` and ``StyleTransferModule.describe`` write for a default single-style run::

    {"format_version": 1, "fastmmd_version": "0.1.0",
     "network": {"width": 32, "residual_blocks": 5, "downsample_kernel": 4},
     "style_images": ["starry_night.jpg"], "style_blend": [1.0], "style_size": 256, "image_size": 256,
     "loss": "gram", "style_weight": 5.0, "content_weight": 1.0, "tv_weight": 0.0,
     "vgg": {"weights": "caffe", "pooling": "max", "width_divisor": 1},
     "init_from": None, "stability_weight": 0.0, "global_step": 1200}

``"network"`` is :meth:`TransformerNet.config() <fastmmd.model.networks.TransformerNet.config>`
(all that reading the weights back needs); a conditioned network (:mod:`fastmmd.model.conditioning`)
also records ``"styles"``/``"strength_width"`` there (an arbitrary-style one ``"style_embedding"``/
``"style_features"``) and a ``"conditioning"`` entry, e.g.
``{"draw": "image", "styles": ["candy", "mosaic"], "strength": {"range": [0.0, 2.0], "default": 1.0}}``
(an arbitrary-style network: ``"arbitrary": {"layers": [...]}`` instead of ``"styles"``).

Loading needs only torch (:mod:`fastmmd.model.files`, through the weights-only unpickler of
:mod:`fastmmd.base.safe_load`), so ``stylize`` and ``export`` never import Lightning. Writing goes
through :func:`checkpoint_entries` and :func:`description`, which ``StyleTransferModule.on_save_checkpoint``
and the tests' stand-in checkpoints both call, so the format is written in one place.
"""

from __future__ import annotations

import os
from typing import Any

from fastmmd.base.errors import UserError
from fastmmd.base.safe_load import not_a_model
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


def check_format_version(meta: dict[str, Any], path: str | os.PathLike) -> None:
    """The one format-version rule for reading a checkpoint's ``"fastmmd"`` entry: a whole number,
    at most :data:`FORMAT_VERSION` (a newer file asks for a newer fastmmd).

    Raises:
        UserError: naming ``path``, in one line.
    """
    version = meta.get("format_version", 0)
    if type(version) is not int:
        raise not_a_model(path, f"format version {str(version)[:20]!r}")
    if version > FORMAT_VERSION:
        raise UserError(f"{str(path)!r} uses checkpoint format {version}; upgrade fastmmd to read it")


def checkpoint_entries(network: TransformerNet, meta: dict[str, Any]) -> dict[str, Any]:
    """The entries fastmmd owns in a checkpoint: a ``state_dict`` with only the network's weights
    (keys ``network.*``; never the frozen VGG) and ``meta`` (from :func:`description`) under ``"fastmmd"``."""
    return {"state_dict": {NETWORK_PREFIX + k: v for k, v in network.state_dict().items()}, KEY: meta}








