"""The process-wide guard against unrestricted unpickling, importable without torch.

It only sets the environment variables that torch reads at each ``torch.load``, so the entry point
can hold it for every command (``fastmmd models`` included) without paying for ``import torch``.
:mod:`fastmmd.model.files` re-exports it beside the readers it protects.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Forces every ``torch.load`` in the process to the weights-only unpickler while active.

    torch honours ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` even where a caller (a library) passes
    ``weights_only=False``, so no fallback to an unrestricted unpickle can happen under it. The
    entry point holds it for the whole command; child processes (DDP) inherit it.
    """
    keys = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)  # both set is an error in torch
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
