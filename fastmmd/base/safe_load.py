"""The one unpickling of untrusted torch files: torch's weights-only unpickler, bounded archives, one-line refusals."""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from fastmmd.base.errors import UserError, not_a_model  # noqa: F401  (not_a_model: re-exported, torch-free there)
from fastmmd.base.inputs import check_zip_budget, regular_file
from fastmmd.base.unpickling import weights_only_loads


def load_pickle(source: str | os.PathLike | bytes, name: str | None = None,
                kind: str = "fastmmd checkpoint or model") -> Any:
    """Unpickles a torch file with the weights-only unpickler (tensors and plain containers only).

    Args:
        source: a path (``.safetensors`` paths are read by safetensors, no pickle) or the file's bytes.
        name: the file's name for messages (default: ``source``).
        kind: what the file should have been, for messages.

    Raises:
        UserError: unreadable, truncated, a TorchScript archive, or holding any other Python object
            (one line, never the advice to retry unsafely).
    """
    label = name or str(source)
    if not isinstance(source, bytes):
        regular_file(source, "file")
        if Path(source).stat().st_size == 0:
            raise not_a_model(label, "empty file", kind)
    try:
        check_zip_budget(source, label)  # a zip file's storages are inflated by torch.load: bounded first
    except UserError as err:
        raise not_a_model(label, str(err).replace(f"{label!r} ", "it ", 1), kind) from None
    try:
        with weights_only_loads(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive")  # refused just below
            return torch.load(io.BytesIO(source) if isinstance(source, bytes) else source, map_location="cpu",
                              weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "GLOBAL" in text:  # torch: "Unsupported global: GLOBAL os.system ..." / "unsupported GLOBAL ..."
            raise not_a_model(label, "it holds Python objects besides tensors, which fastmmd never loads", kind) from None
        raise not_a_model(label, "unreadable: truncated or corrupt", kind) from None
    except RuntimeError as err:
        if "TorchScript" in str(err):
            raise not_a_model(label, "a TorchScript archive, not a checkpoint", kind) from None
        raise not_a_model(label, "unreadable: truncated or corrupt", kind) from None
    except MemoryError:
        raise not_a_model(label, "it declares more data than fits in memory", kind) from None
    except Exception:  # zip, EOF, struct, unicode errors on random or truncated bytes
        raise not_a_model(label, "unreadable: truncated or corrupt", kind) from None
