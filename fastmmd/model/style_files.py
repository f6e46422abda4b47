"""A painting's statistics for an arbitrary-style network, computed once and kept in a file.

An arbitrary-style network (:mod:`fastmmd.model.arbitrary`) reads a painting as phi, the channel
statistics of its VGG-19 features, and phi depends on how the painting was read: the VGG-19
(weights, pooling, width divisor), the layers, and the shorter side the painting was resized to
(the model's ``style_size`` x :data:`INFERENCE_ZOOM`). A style file holds phi with those settings,
so that VGG runs once per painting, not once per command: ``fastmmd stylize MODEL --style-image
painting.jpg --save-style painting.npz`` (or :meth:`fastmmd.infer.stylize.Stylizer.save_style`)
writes one, and ``--style-image painting.npz`` reads it back for any model with the same settings,
without VGG (and, on the ONNX fast path, :mod:`fastmmd.infer.fast_stylize`, without torch).

The format: a NumPy ``.npz`` (an uncompressed zip) of exactly two arrays, ``statistics`` (float32,
(F,)) and ``fastmmd`` (a 0-d unicode array: JSON with ``format_version``, ``painting``, ``layers``,
``vgg``, ``size``, ``features`` and the ``precision`` VGG ran in).

Reading trusts nothing (:func:`read_style_file`): a regular file of at most
:data:`MAX_STYLE_FILE_BYTES`, those two members and no other, each ``.npy`` header parsed before
any data (a float32 or unicode dtype, never an object one; a shape whose bytes are the ones
stored), numpy's reader then given ``allow_pickle=False``; the JSON through the bounded parser;
statistics finite and >= 0 (phi is log(1 + x) of x >= 0); and settings equal to the model's, else
the statistics would describe the painting as another VGG or another scale sees it. Every refusal
is one line naming the file. Only NumPy and the standard library are imported here.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastmmd.base.errors import UserError
from fastmmd.base.inputs import load_json, regular_file

#: The VGG-19 layers whose channel statistics describe a painting (the paper's style layers).
EMBEDDING_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: Paintings are read for their statistics with this short side x the model's ``style_size``: the
#: mean scale of training, whose crops came from paintings resized by 1-1.5x (``data.painting_zoom``).
INFERENCE_ZOOM = 1.25
#: A painting file may be decoded smaller (:func:`fastmmd.base.images.open_image`'s ``min_side``),
#: down to this many times the side VGG reads, so that the final antialiased resize still does most
#: of the filtering and phi stays within the tolerance measured in docs/benchmarks.md ("Arbitrary
#: style", "Speed and exports").
DECODE_MARGIN = 4
#: Most paintings one run of an exported network blends (the rows of its ``style`` input).
MAX_PAINTINGS = 256
#: The suffix of a style file.
STYLE_SUFFIX = ".npz"
FORMAT_VERSION = 1
#: Largest style file read (VGG-19's phi is 12 kB; JSON settings a few hundred bytes).
MAX_STYLE_FILE_BYTES = 1 << 20
_MEMBERS = {"statistics.npy", "fastmmd.npy"}
_MAX_FEATURES = 1 << 16
_MAX_TEXT = 1 << 16
_WEIGHTS, _POOLINGS, _DIVISORS = ("caffe", "torchvision", "random"), ("max", "avg"), (1, 2, 4, 8)


def encoder_settings(description: Mapping[str, Any]) -> dict[str, Any]:
    """How a model reads paintings: ``{"layers", "vgg": {"weights", "pooling", "width_divisor"},
    "size", "features"}``, from its description (a checkpoint's ``fastmmd`` entry or an export's
    metadata, whose ``training`` entry holds the checkpoint's). A value a file cannot mean (a path
    as VGG weights, an odd size) falls back to the default VGG-19 and style size 256; ``features``
    (F, the network's ``style_features``) is None when the description names none."""
    training = description.get("training") if isinstance(description.get("training"), Mapping) else description
    vgg = training.get("vgg") if isinstance(training.get("vgg"), Mapping) else {}
    weights, pooling, divisor = vgg.get("weights", "caffe"), vgg.get("pooling", "max"), vgg.get("width_divisor", 1)
    if weights not in _WEIGHTS or pooling not in _POOLINGS or divisor not in _DIVISORS or type(divisor) is not int:
        weights, pooling, divisor = "caffe", "max", 1
    size = training.get("style_size", 256)
    network = description.get("network") if isinstance(description.get("network"), Mapping) else {}
    features = network.get("style_features")
    return {"layers": list(EMBEDDING_LAYERS),
            "vgg": {"weights": str(weights), "pooling": str(pooling), "width_divisor": int(divisor)},
            "size": round((size if type(size) is int and 16 <= size <= 2048 else 256) * INFERENCE_ZOOM),
            "features": features if type(features) is int and 1 <= features <= _MAX_FEATURES else None}


def is_style_file(painting: Any) -> bool:
    """Whether ``painting`` names a style file (a path ending in :data:`STYLE_SUFFIX`) rather than an image."""
    return isinstance(painting, (str, os.PathLike)) and Path(painting).suffix.lower() == STYLE_SUFFIX


def _describe(settings: Mapping[str, Any]) -> str:
    vgg = settings.get("vgg") or {}
    return (f"VGG-19 {vgg.get('weights')}/{vgg.get('pooling')}/÷{vgg.get('width_divisor')} at {settings.get('size')} px, "
            f"{settings.get('features')} numbers")


def write_style_file(path: str | os.PathLike, statistics: Any, settings: Mapping[str, Any], painting: str,
                     precision: str) -> Path:
    """Writes phi (F numbers, any array-like) of ``painting`` (its name) with the ``settings`` it
    was computed with (:func:`encoder_settings`) and the ``precision`` VGG ran in, atomically.

    Raises:
        UserError: the output cannot be written or has another suffix (checked before writing).
    """
    import numpy as np

    from fastmmd.base.outputs import atomic_path, check_output_file

    out = check_output_file(path, suffixes=[STYLE_SUFFIX], what="--save-style")
    values = np.ascontiguousarray(np.asarray(statistics, dtype=np.float32).reshape(-1))
    meta = {"format_version": FORMAT_VERSION, "painting": str(painting), "layers": list(settings["layers"]),
            "vgg": dict(settings["vgg"]), "size": int(settings["size"]), "features": int(values.size),
            "precision": str(precision)}
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, statistics=values, fastmmd=np.array(json.dumps(meta)))
    return out


def _array(data: bytes, name: str, what: str) -> Any:
    """The array in one ``.npy`` member, its header checked before numpy reads any data."""
    import numpy as np

    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
    except (ValueError, TypeError, SyntaxError, EOFError):
        raise UserError(f"{what}: its member {name!r} is not a NumPy array") from None
    if dtype.hasobject or dtype.kind not in "fU" or fortran:
        raise UserError(f"{what}: its member {name!r} holds {dtype}, not numbers or text (nothing is unpickled)")
    if len(data) - f.tell() != math.prod(shape) * dtype.itemsize:
        raise UserError(f"{what}: its member {name!r} is truncated or padded")
    f.seek(0)
    return np.lib.format.read_array(f, allow_pickle=False)


def read_style_file(path: str | os.PathLike, settings: Mapping[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """phi (float32 NumPy (F,)) and the description of a style file, checked as the module says.

    Args:
        path: the ``.npz`` file.
        settings: the model's :func:`encoder_settings`; None checks the file alone.

    Raises:
        UserError: one line: missing, not a style file fastmmd writes, crafted, or computed with
            other settings than the model's.
    """
    import numpy as np

    p = regular_file(path, "style file")
    what = f"style file {str(p)!r}"
    size = p.stat().st_size
    if size > MAX_STYLE_FILE_BYTES:
        raise UserError(f"{what} is {size / 1e6:.1f} MB; fastmmd's style files are kB (at most "
                        f"{MAX_STYLE_FILE_BYTES >> 20} MB read)")
    try:
        with zipfile.ZipFile(io.BytesIO(p.read_bytes())) as z:
            infos = {i.filename: i for i in z.infolist()}
            if set(infos) != _MEMBERS or len(z.infolist()) != len(_MEMBERS):
                raise UserError(f"{what} holds {sorted(infos)[:4]}, not the arrays statistics and fastmmd "
                                "(write it with --save-style)")
            if any(i.file_size > MAX_STYLE_FILE_BYTES for i in infos.values()):
                raise UserError(f"{what} declares members larger than fastmmd reads")
            arrays = {name[:-4]: _array(z.read(info), name, what) for name, info in infos.items()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
        raise UserError(f"{what} is not a readable .npz archive (write it with --save-style)") from None
    statistics, text = arrays["statistics"], arrays["fastmmd"]
    if text.dtype.kind != "U" or text.shape != () or len(str(text)) > _MAX_TEXT:
        raise UserError(f"{what}: its fastmmd entry is not the JSON text fastmmd writes")
    meta = load_json(str(text), f"{what}: its description")
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise UserError(f"{what}: format_version {version!r}, this fastmmd reads {FORMAT_VERSION}")
    if statistics.dtype != np.float32 or statistics.ndim != 1 or not 1 <= statistics.size <= _MAX_FEATURES:
        raise UserError(f"{what}: its statistics are {statistics.dtype} of shape {statistics.shape}, not float32 (F,)")
    if not (np.isfinite(statistics).all() and (statistics >= 0).all()):
        raise UserError(f"{what}: its statistics hold non-finite or negative numbers, which phi never does")
    if meta.get("features") != statistics.size:
        raise UserError(f"{what}: its description says {meta.get('features')!r} numbers, its statistics hold {statistics.size}")
    if settings is not None:
        expected = {k: settings.get(k) for k in ("layers", "vgg", "size")}
        found = {k: meta.get(k) for k in ("layers", "vgg", "size")}
        if settings.get("features") is not None:
            expected["features"], found["features"] = settings["features"], statistics.size
        if found != expected:
            raise UserError(f"{what} holds statistics of {_describe({**meta, 'features': statistics.size})}; this model "
                            f"reads {_describe(settings)}: compute them again with --style-image PAINTING --save-style")
    return statistics, meta

