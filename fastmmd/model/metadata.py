"""The one schema of a model's description (an export's ``fastmmd.json``, a checkpoint's ``"fastmmd"``
entry), without torch: :mod:`fastmmd.model.files` reads every file format through it, and
``fastmmd stylize``'s torch-free path (:mod:`fastmmd.infer.fast_stylize`) reads an ``.onnx``
file's description through it too, so a crafted field is refused alike on both paths.
"""

from __future__ import annotations

import os
from typing import Any

from fastmmd.base.errors import UserError, not_a_model
from fastmmd.base.inputs import load_json

#: Most styles one network holds (:mod:`fastmmd.model.conditioning` builds its layers with this bound).
MAX_STYLES = 256
#: Largest value of a recorded network setting (width, residual blocks, kernel); bounds what a file can ask to build.
MAX_NETWORK_SETTING = 4096
#: Tighter bounds for the conditioning settings (:mod:`fastmmd.model.conditioning`): styles and strength MLP units.
_LIMITS = {"styles": MAX_STYLES, "strength_width": MAX_STYLES}
#: Weight storages a file may declare (float dtypes and int8, :mod:`fastmmd.model.storage`).
_STORED_DTYPES = {"float32", "float16", "bfloat16", "int8"}


def parse_metadata(text: str, path: str | os.PathLike) -> dict[str, Any]:
    """An export's ``fastmmd.json`` text -> dict (one-line error if it is not a JSON object), read
    through :func:`fastmmd.base.inputs.load_json` (size and nesting limits)."""
    try:
        meta = load_json(text, "its fastmmd metadata")
    except UserError as err:
        raise not_a_model(path, f"{err}; re-export it") from None
    if not isinstance(meta, dict):
        raise not_a_model(path, "its fastmmd metadata is not a JSON object")
    return validate_metadata(meta, path)


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def valid_network_config(config: Any) -> bool:
    """True for a network description fastmmd builds: small non-negative integers under known names' limits."""
    return isinstance(config, dict) and bool(config) and all(
        isinstance(k, str) and _is_int(v, 0, _LIMITS.get(k, MAX_NETWORK_SETTING)) for k, v in config.items())


def validate_metadata(meta: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The one schema check of a model's description (an export's ``fastmmd.json``, a checkpoint's
    ``"fastmmd"`` entry) before any field of it is used; fields that are absent keep their defaults.

    ``min_size``: an integer 1-4096; ``dtype``: a stored dtype; ``format``: text; ``network``: a
    description :func:`network_from_state` accepts; ``style_images``: a list of text;
    ``conditioning``: an object; ``parameters``, ``global_step``, ``training_steps``: integers >= 0.

    Returns:
        ``meta``, unchanged.

    Raises:
        UserError: the first field that breaks its rule, in one line.
    """
    def bad(field: str, rule: str) -> UserError:
        return not_a_model(path, f"its metadata field {field!r} is {str(meta[field])[:40]!r}, not {rule}")

    if "min_size" in meta and not _is_int(meta["min_size"], 1, MAX_NETWORK_SETTING):
        raise bad("min_size", f"an integer from 1 to {MAX_NETWORK_SETTING}")
    if "dtype" in meta and meta["dtype"] not in _STORED_DTYPES:
        raise bad("dtype", f"one of {', '.join(sorted(_STORED_DTYPES))}")
    if "format" in meta and not isinstance(meta["format"], str):
        raise bad("format", "text")
    if "network" in meta and not valid_network_config(meta["network"]):  # network_from_state's words
        raise not_a_model(path, f"its network description {str(meta['network'])[:80]!r} is not a TransformerNet's")
    if meta.get("style_images") is not None and not (
            isinstance(meta["style_images"], list) and all(isinstance(n, str) for n in meta["style_images"])):
        raise bad("style_images", "a list of names")
    if meta.get("conditioning") is not None and not isinstance(meta["conditioning"], dict):
        raise bad("conditioning", "an object")
    for field in ("parameters", "global_step", "training_steps"):
        if meta.get(field) is not None and not _is_int(meta[field], 0, 1 << 62):
            raise bad(field, "a non-negative integer")
    return meta
