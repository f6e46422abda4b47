"""Reading model and checkpoint files from anyone: tensors and JSON only, never code.

Every model file fastmmd is given (training ``.ckpt``, exported ``.pt``, ``.pt2`` and ``.onnx``) is
read here (VGG weights files by :mod:`fastmmd.vgg.weights`, through the same unpickler), and nothing
in it is ever run:

* **Pickles** (``.ckpt``, ``.pth``, checkpoints saved as ``.pt``) go through
  :func:`~fastmmd.base.safe_load.load_pickle`, the only unpickling in fastmmd: torch's weights-only
  unpickler, which rebuilds tensors and plain containers and refuses any other Python object.
  torch itself may retry a failed safe load with ``weights_only=False`` (``torch.export.load``
  does, for the pickles inside a ``.pt2``); :func:`weights_only_loads` forbids that for a whole
  command.
* **Exported files are programs.** A TorchScript ``.pt`` holds TorchScript code (which can call
  ``aten::save`` and write any file), a ``.pt2`` holds a graph of any registered operator, Python
  guard code that ``.module()`` compiles and pickles that ``torch.export.load`` unpickles without
  restriction. So fastmmd never loads them with ``torch.jit.load``/``torch.export.load``: it reads
  the weights (a ``.pt``'s ``data.pkl`` through a restricted unpickler that knows only tensors,
  lists, dicts and stand-ins for the TorchScript modules; a ``.pt2``'s raw weight files as
  described by their JSON) and the ``fastmmd.json`` metadata, checks them against the network that
  the metadata describes, and runs fastmmd's own :class:`~fastmmd.model.networks.TransformerNet`.
  ``fastmmd export`` proves before writing that the program in the file computes the same function,
  so nothing is lost.
* **ONNX** (``.onnx``) holds a graph of standard operators and tensors, run by onnxruntime, which has
  no operator that runs code or touches files; weights stored outside the file are refused, and the
  memory of every run is bounded before it starts, in proportion to its batch and the file's
  weights (:class:`OnnxMemoryBound`).

Any failure is a one-line :class:`~fastmmd.base.errors.UserError` naming the file: "not a fastmmd
checkpoint or model", never advice to load it unsafely.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from fastmmd.base.errors import UserError
from fastmmd.base.inputs import ArchiveBudget, load_json, regular_file
from fastmmd.base.safe_load import PlainUnpickler, check_tensor_bytes, load_pickle, not_a_model
from fastmmd.base.unpickling import weights_only_loads  # noqa: F401  (re-exported: the guard lives in a torch-free module)
from fastmmd.model.checkpoints import KEY, NETWORK_PREFIX, check_format_version
# the metadata schema is torch-free (stylize's fast path checks an .onnx description with it too); re-exported here
from fastmmd.model.metadata import (MAX_NETWORK_SETTING, parse_metadata, valid_network_config,  # noqa: F401
                                    validate_metadata)
from fastmmd.model.networks import TransformerNet
from fastmmd.model.storage import dequantize_state

METADATA_FILE = "fastmmd.json"
#: Files fastmmd reads a network from: fastmmd's own network runs them (:func:`read_network`).
NETWORK_SUFFIXES = (".pt", ".pt2", ".ckpt")
#: Every model file a command accepts: the networks, and ONNX exports, which run only in onnxruntime (:func:`open_onnx`).
MODEL_SUFFIXES = (*NETWORK_SUFFIXES, ".onnx")
_PREFIX = "net."  # ExportedStylizer keeps its TransformerNet as ``net``


# ------------------------------------------------------------------------------------- networks
def network_from_state(config: Any, state: dict[str, Tensor], path: str | os.PathLike) -> TransformerNet:
    """The :class:`TransformerNet` a recorded ``config`` describes, holding ``state`` (eval mode, CPU, fp32;
    int8-stored convolutions, :mod:`fastmmd.model.storage`, are dequantized).

    The config is checked before anything is allocated (small non-negative integers only), the
    tensors' bytes against the bytes really stored (:func:`check_tensor_bytes`), and the expected
    shapes are taken from a network on the ``meta`` device, so a crafted description can neither
    run code nor make fastmmd allocate more than the tensors the file really holds.

    Raises:
        UserError: a bad description, or tensors that do not match it exactly.
    """
    if not valid_network_config(config):
        raise not_a_model(path, f"its network description {str(config)[:80]!r} is not a TransformerNet's")
    check_tensor_bytes(state, path)
    try:
        state = dequantize_state(state)  # int8 storage -> the float32 weights its program computes with
    except ValueError as err:
        raise not_a_model(path, str(err)) from None
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in TransformerNet.from_config(config).state_dict().items()}
    except (TypeError, ValueError) as err:
        raise not_a_model(path, f"its network description is invalid: {err}") from None
    if set(shapes) != set(state):
        missing, extra = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
        first = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise not_a_model(path, f"its weights do not match its network description ({first})")
    for k, shape in shapes.items():
        v = state[k]
        if not isinstance(v, Tensor) or tuple(v.shape) != shape or not v.is_floating_point():
            raise not_a_model(path, f"its weight {k} does not match its network description")
    net = TransformerNet.from_config(config)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval()


def read_network(path: str | os.PathLike, fmt: str | None = None) -> tuple[TransformerNet, dict[str, Any]]:
    """The trained network and description of any fastmmd file, without running anything in it.

    This is the one entry for "load a model file from anyone": training checkpoints (``.ckpt``, or
    a checkpoint saved as ``.pt``), TorchScript ``.pt`` and torch.export ``.pt2`` exports.

    Args:
        path: the file.
        fmt: ``checkpoint``, ``torchscript`` or ``pt2``; None = from the suffix and contents.

    Returns:
        (network in eval mode on the CPU, fp32; description): a checkpoint's ``"fastmmd"`` entry, or
        an export's metadata (with ``format`` and the stored ``dtype``).

    Raises:
        UserError: missing, unreadable, not written by fastmmd, or crafted (one line).
    """
    p = regular_file(path, "model")
    suffix = p.suffix.lower()
    if fmt is None and suffix == ".onnx":
        raise UserError(f"{str(p)!r}: fastmmd reads networks from a .ckpt, .pt or .pt2 file; an .onnx model only runs in onnxruntime")
    if fmt == "pt2" or (fmt is None and suffix == ".pt2"):
        return _read_pt2(p)
    if fmt == "torchscript" or (fmt is None and zipfile.is_zipfile(p)):
        with _open_zip(p) as z:
            if fmt == "torchscript" or z.find("constants.pkl") is not None:
                return _read_torchscript(p, z)
    from fastmmd.model.files import network_from_checkpoint

    return network_from_checkpoint(p)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``fastmmd.json`` metadata of an exported ``.pt``/``.pt2``/``.onnx`` file (``export --info``).

    The whole file is checked as :func:`read_network` (or, for ONNX, :func:`open_onnx`) checks it, so
    ``--info`` also answers "would fastmmd load this file?".
    """
    p = regular_file(path, "model")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        model = read_onnx_model(p)
        OnnxMemoryBound(model, p).check(ONNX_PROBE, opening=True)
        text = {q.key: q.value for q in model.metadata_props}.get("fastmmd", "")
        meta = parse_metadata(text, p) if text else {}
    elif suffix in (".pt", ".pt2"):
        meta = read_network(p, "pt2" if suffix == ".pt2" else "torchscript")[1]
    else:
        raise UserError(f"cannot tell the format of {str(p)!r} from its suffix; use .pt, .pt2 or .onnx")
    if not meta:
        raise UserError(f"{str(p)!r} carries no fastmmd metadata; was it written by `fastmmd export`?")
    return meta


class _Archive:
    """A model archive opened once: members by name (a dict) and by their path inside the archive's
    top folder, and every read charged to its :class:`~fastmmd.base.inputs.ArchiveBudget`."""

    def __init__(self, path: Path, z: zipfile.ZipFile) -> None:
        self.path = path
        try:
            self.budget = ArchiveBudget(z, path.stat().st_size, str(path))
        except UserError as err:
            raise not_a_model(path, str(err).replace(f"{str(path)!r} ", "it ", 1)) from None
        self.names = list(self.budget.members)
        self._inner: dict[str, list[str]] = {}
        for n in self.names:
            if "/" in n:
                self._inner.setdefault(n.split("/", 1)[1], []).append(n)

    def find(self, suffix: str) -> str | None:
        """The one member named ``<archive folder>/<suffix>`` (exports keep everything in one top folder)."""
        hits = self._inner.get(suffix, [])
        return hits[0] if len(hits) == 1 else None

    def read(self, name: str | None, optional: bool = False) -> bytes:
        """A member's bytes (declared size checked against the budget before inflating)."""
        if name is None:
            if optional:
                return b""
            raise not_a_model(self.path, "an archive member fastmmd writes is missing")
        try:
            return self.budget.read(name)
        except UserError as err:
            raise not_a_model(self.path, str(err).replace(f"{str(self.path)!r}: ", "", 1)) from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError, KeyError):
            raise not_a_model(self.path, f"member {name!r} is truncated or corrupt") from None


@contextlib.contextmanager
def _open_zip(path: Path) -> Iterator[_Archive]:
    try:
        with zipfile.ZipFile(path) as z:
            yield _Archive(path, z)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise not_a_model(path, "not a readable zip archive: truncated or corrupt") from None


def _export_metadata(path: Path, z: _Archive, fmt: str) -> dict[str, Any]:
    meta = parse_metadata(z.read(z.find(f"extra/{METADATA_FILE}")).decode("utf-8", "replace"), path)
    if meta.get("format") != fmt:
        raise not_a_model(path, f"its metadata says format {meta.get('format')!r}, not {fmt!r}")
    if "dtype" not in meta:
        raise not_a_model(path, "its metadata names no weight dtype")
    return meta


def _read_pt2(path: Path) -> tuple[TransformerNet, dict[str, Any]]:
    """Weights of a ``torch.export`` archive from its raw weight files and their JSON description."""
    with _open_zip(path) as z:
        meta = _export_metadata(path, z, "pt2")
        byteorder = z.read(z.find("byteorder"), optional=True).decode("ascii", "replace") or "little"
        if byteorder != "little":
            raise not_a_model(path, f"byte order {byteorder!r}")
        try:
            config = load_json(z.read(z.find("data/weights/model_weights_config.json")), "its weight description")
            items = list(config["config"].items())
        except UserError as err:
            raise not_a_model(path, str(err)) from None
        except (KeyError, TypeError, AttributeError):
            raise not_a_model(path, "its weight description is not one fastmmd writes") from None
        _check_pt2_members(path, z)
        state, records = {}, {}
        for fqn, entry in items:
            if not (isinstance(fqn, str) and fqn.startswith(_PREFIX) and isinstance(entry, dict)):
                raise not_a_model(path, f"unexpected weight {str(fqn)[:60]!r}")
            if entry.get("use_pickle"):
                raise not_a_model(path, f"weight {fqn!r} is a pickle, which fastmmd never loads")
            state[fqn[len(_PREFIX):]] = _pt2_tensor(path, z, entry, records)
    return network_from_state(meta.get("network"), state, path), meta


def _check_pt2_members(path: Path, z: _Archive) -> None:
    """Refuses a ``.pt2`` holding what fastmmd exports never hold: compiled code (AOTInductor), pickled
    or custom-object constants, or a pickle (the sample inputs) with anything besides tensors.
    Nothing here is needed to run the network; the checks are there so a crafted file is named as one."""
    for name in z.names:
        inner = name.split("/", 1)[-1]
        if inner.startswith("data/aotinductor/"):
            raise not_a_model(path, "it holds compiled code (AOTInductor), which fastmmd never loads")
        if inner.endswith((".pt", ".pkl")):
            load_pickle(z.read(name), f"{path}:{inner}")
    constants = z.find("data/constants/model_constants_config.json")
    if constants is not None:
        try:
            entries = load_json(z.read(constants), "its constants description")["config"].values()
            bad = [e for e in entries if e.get("use_pickle") or not str(e.get("path_name", "")).startswith("tensor_")]
        except UserError as err:
            raise not_a_model(path, str(err)) from None
        except (KeyError, TypeError, AttributeError):
            raise not_a_model(path, "its constants description is not one fastmmd writes") from None
        if bad:
            raise not_a_model(path, "it holds pickled or custom-object constants, which fastmmd never loads")


def _pt2_tensor(path: Path, z: _Archive, entry: dict[str, Any], records: dict[str, bytes]) -> Tensor:
    """The (uncopied) view an entry describes of its weight file; ``records`` caches the files read."""
    from torch._export.serde.schema import ScalarType

    dtypes = {int(ScalarType.FLOAT): torch.float32, int(ScalarType.HALF): torch.float16,
              int(ScalarType.BFLOAT16): torch.bfloat16, int(ScalarType.CHAR): torch.int8}
    try:
        meta = entry["tensor_meta"]
        dtype = dtypes[int(meta["dtype"])]
        size = [int(s["as_int"]) for s in meta["sizes"]]
        stride = [int(s["as_int"]) for s in meta["strides"]]
        offset = int(meta["storage_offset"]["as_int"])
        name = str(entry["path_name"])
    except (KeyError, TypeError, ValueError):
        raise not_a_model(path, "a weight's description is not one fastmmd writes") from None
    if name not in records:
        records[name] = z.read(z.find(f"data/weights/{name}"))
    return _strided(path, records[name], dtype, size, stride, offset)


def _strided(path: Path, data: bytes, dtype: torch.dtype, size: list[int], stride: list[int], offset: int) -> Tensor:
    """The (size, stride, offset) view of ``data`` (not copied: :func:`check_tensor_bytes` bounds the
    views together before anything is materialised), after a bounds check."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(data) % itemsize or min([offset, *size, *stride], default=0) < 0 or len(size) != len(stride):
        raise not_a_model(path, "a weight's layout does not fit its data")
    numel = len(data) // itemsize
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else -1
    if last >= numel:
        raise not_a_model(path, "a weight's layout reaches past its data")
    flat = torch.frombuffer(bytearray(data), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
    return torch.as_strided(flat, size, stride, offset)


# ------------------------------------------------------------------------------------- TorchScript
class _ScriptObject:
    """Stand-in for a TorchScript module in ``data.pkl``: holds its attributes, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _RestrictedUnpickler(PlainUnpickler):
    """Unpickles a TorchScript ``data.pkl``: tensors, lists, dicts and module stand-ins only.

    ``find_class`` is the only way a pickle reaches Python objects; it answers with stand-ins and
    fastmmd's own tensor builder, and refuses every other name (``os.system`` included). The base is
    the pure-Python unpickler (:class:`~fastmmd.base.safe_load.PlainUnpickler`), whose memo cannot be
    made to allocate from an index in the pickle.
    """

    _STORAGES = {"FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
                 "CharStorage": torch.int8}

    def __init__(self, data: bytes, read_record: Callable[[str], bytes]) -> None:
        super().__init__(io.BytesIO(data))
        self.read_record = read_record
        self.stubs: dict[str, type] = {}
        self.storages: dict[str, Tensor] = {}  # one read per record, however often the pickle names it

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__.") or module == "__torch__":
            return self.stubs.setdefault(f"{module}.{name}", type(name, (_ScriptObject,), {}))
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_floatlist", "build_boollist",
                                                       "build_tensorlist", "build_doublelist"):
            return list
        if module == "torch" and name in self._STORAGES:
            return self._STORAGES[name]
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise pickle.UnpicklingError("unexpected persistent id")
        _, dtype, key, _location, numel = pid
        if str(key) in self.storages:
            return self.storages[str(key)]
        data = self.read_record(str(key))
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not isinstance(numel, int) or len(data) != numel * itemsize:
            raise pickle.UnpicklingError("storage size mismatch")
        storage = torch.frombuffer(bytearray(data), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
        self.storages[str(key)] = storage
        return storage


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> Tensor:
    if not (isinstance(storage, Tensor) and isinstance(offset, int) and isinstance(size, (tuple, list))
            and isinstance(stride, (tuple, list)) and all(isinstance(v, int) for v in (*size, *stride))):
        raise pickle.UnpicklingError("malformed tensor")
    if min([offset, *size, *stride], default=0) < 0 or len(size) != len(stride):
        raise pickle.UnpicklingError("malformed tensor layout")
    if all(size) and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= storage.numel():
        raise pickle.UnpicklingError("tensor layout reaches past its storage")
    return torch.as_strided(storage, list(size), list(stride), offset)  # a view: check_tensor_bytes bounds them


def _flatten(obj: Any, prefix: str = "", out: dict[str, Tensor] | None = None, depth: int = 0) -> dict[str, Tensor]:
    """Tensor attributes of a stand-in module tree, keyed like a ``state_dict``."""
    out = {} if out is None else out
    state = getattr(obj, "state", None)
    if depth > 64 or not isinstance(state, dict):
        return out
    for k, v in state.items():
        if isinstance(v, Tensor):
            out[f"{prefix}{k}"] = v
        elif isinstance(v, _ScriptObject):
            _flatten(v, f"{prefix}{k}.", out, depth + 1)
    return out


def _unpickle_member(path: Path, z: _Archive, name: str, record: Callable[[str], bytes]) -> Any:
    try:
        return _RestrictedUnpickler(z.read(name), record).load()
    except UserError:
        raise
    except pickle.UnpicklingError as err:
        raise not_a_model(path, f"{name.split('/', 1)[-1]} holds something besides tensors and modules: {err}") from None
    except Exception:
        raise not_a_model(path, f"{name.split('/', 1)[-1]} is truncated or corrupt") from None


def _read_torchscript(path: Path, z: _Archive) -> tuple[TransformerNet, dict[str, Any]]:
    """Weights of a TorchScript archive from ``data.pkl`` (restricted unpickler); its code is never compiled."""
    meta = _export_metadata(path, z, "torchscript")
    name = z.find("data.pkl")
    if name is None:
        raise not_a_model(path, "a TorchScript archive without data.pkl")
    root = name.split("/", 1)[0]
    names = set(z.names)

    def record(key: str, folder: str = "data") -> bytes:
        member = f"{root}/{folder}/{key}"
        if "/" in key or member not in names:
            raise pickle.UnpicklingError(f"missing record {key!r}")
        return z.read(member)

    obj = _unpickle_member(path, z, name, record)
    for other in sorted(names - {name}):  # constants.pkl and the code's debug pickles: checked, then dropped
        if other.endswith((".pkl", ".debug_pkl")):
            _unpickle_member(path, z, other, lambda key: record(key, "constants"))
    state = {k[len(_PREFIX):]: v for k, v in _flatten(obj).items() if k.startswith(_PREFIX)}
    return network_from_state(meta.get("network"), state, path), meta


# ------------------------------------------------------------------------------------- ONNX
# The checks, the memory bound and the session live in the torch-free fastmmd.model.onnx_files (fastmmd
# stylize's fast path uses them without torch); re-exported here, where every other file format's rules are.
from fastmmd.model.onnx_files import (MAX_ONNX_BYTES, ONNX_MEMORY_FRACTION, ONNX_OPERATORS, ONNX_PROBE,  # noqa: E402,F401
                                      OnnxMemoryBound, OnnxNetwork, check_onnx_graph, read_onnx_model)


def open_onnx(path: str | os.PathLike, threads: int | None = None,
              verified: bool = False) -> tuple[Callable[[Tensor], Tensor], dict[str, Any]]:
    """An onnxruntime session (CPU) for an ``.onnx`` file and its metadata.

    The model is read as bytes and checked (:func:`check_onnx_graph`: no external data, loops,
    subgraphs or data-sized allocations) before onnxruntime sees it; onnxruntime then resolves
    external data only in an empty folder and holds at most the arena cap of
    :data:`ONNX_MEMORY_FRACTION`. The graph's memory is bounded (:class:`OnnxMemoryBound`) for the
    :data:`ONNX_PROBE` batch before the session opens and for every batch shape before it runs
    (:class:`fastmmd.model.onnx_files.OnnxNetwork`; ``threads`` and ``verified`` as there). The
    returned callable maps (B, 3, H, W) to (B, 3, H, W) or raises a one-line :class:`UserError` (a
    run error, a batch over the graph's bound or the memory cap, an output of another shape).
    """
    network = OnnxNetwork(path, threads, verified)
    meta = parse_metadata(network.metadata_text, network.path) if network.metadata_text else {}

    def run(x: Tensor, mix: Tensor | None = None, strength: Tensor | None = None, style: Tensor | None = None) -> Tensor:
        """A conditioned model's ``mix`` (S,) and ``strength`` (1,) are inputs with defaults
        (:mod:`fastmmd.infer.export`); None leaves the default. An arbitrary-style model's ``style``
        (K, F) is required, and ``mix`` (K,) with K > 1 (:class:`fastmmd.model.onnx_files.OnnxNetwork`)."""
        def array(t: Tensor | None) -> Any:
            return None if t is None else t.detach().float().cpu().contiguous().numpy()

        return torch.from_numpy(network(array(x), array(mix), array(strength), array(style)))

    return run, meta


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
    check_format_version(meta, path)
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
