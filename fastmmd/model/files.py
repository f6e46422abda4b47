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
from fastmmd.base.inputs import ArchiveBudget, load_json, printable, regular_file
from fastmmd.base.safe_load import PlainUnpickler, check_tensor_bytes, load_pickle, not_a_model
from fastmmd.base.unpickling import weights_only_loads  # noqa: F401  (re-exported: the guard lives in a torch-free module)
from fastmmd.model.checkpoints import KEY, NETWORK_PREFIX, check_format_version
from fastmmd.model.conditioning import MAX_STYLES
from fastmmd.model.networks import TransformerNet
from fastmmd.model.storage import dequantize_state

METADATA_FILE = "fastmmd.json"
#: Files fastmmd reads a network from: fastmmd's own network runs them (:func:`read_network`).
NETWORK_SUFFIXES = (".pt", ".pt2", ".ckpt")
#: Every model file a command accepts: the networks, and ONNX exports, which run only in onnxruntime (:func:`open_onnx`).
MODEL_SUFFIXES = (*NETWORK_SUFFIXES, ".onnx")
#: Largest value of a recorded network setting (width, residual blocks, kernel); bounds what a file can ask to build.
MAX_NETWORK_SETTING = 4096
#: Tighter bounds for the conditioning settings (:mod:`fastmmd.model.conditioning`): styles and strength MLP units.
_LIMITS = {"styles": MAX_STYLES, "strength_width": MAX_STYLES}
_PREFIX = "net."  # ExportedStylizer keeps its TransformerNet as ``net``
_FLOAT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_STORED_DTYPES = {*_FLOAT_DTYPES, "int8"}  # int8: fastmmd.model.storage




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
        model = _onnx_model(p)
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
#: The operators an ONNX file may use: those ``fastmmd export`` writes (plain and conditioned networks,
#: float32/float16/int8 storage, listed from its output) and a few more whose output is never larger
#: than their inputs broadcast together. Nothing that loops (``Loop``, ``Scan``), branches into
#: subgraphs (``If``) or allocates from a number in the data (``ConstantOfShape``, ``Range``,
#: ``Tile``, ``Resize``, random generators...) is run.
ONNX_OPERATORS = frozenset({
    # written by fastmmd export
    "Add", "Cast", "Concat", "Conv", "DepthToSpace", "Div", "Expand", "Gemm", "InstanceNormalization", "MatMul",
    "Mod", "Mul", "Pad", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Squeeze", "Sub", "Unsqueeze",
    # bounded by their inputs
    "Abs", "Clip", "Constant", "Exp", "Flatten", "Gather", "Identity", "LeakyRelu", "Max", "Min", "Neg", "Pow",
    "ReduceMean", "Sqrt", "Tanh", "Transpose",
})
#: Largest ``.onnx`` file read (a width-32 network is ~7 MB; weights must live inside the file).
MAX_ONNX_BYTES = 1 << 30
#: Share of the memory available when the first ONNX model opens that onnxruntime may hold
#: (its arena is capped there, once per process; also kept under RLIMIT_AS where one is set).
ONNX_MEMORY_FRACTION = 0.7
#: The batch every ONNX file is bounded for when it opens (:class:`OnnxMemoryBound`), before onnxruntime
#: builds a session (and folds the graph's constant parts) from it.
ONNX_PROBE = (1, 3, 16, 16)
_ONNX_ARENA: list[int] = []  # the cap registered with onnxruntime, once per process


def _onnx_graphs(model: Any) -> Iterator[Any]:
    """Every graph of a model: the main one and, recursively, the subgraphs in node attributes."""
    stack = [model.graph]
    while stack:
        graph = stack.pop()
        yield graph
        for node in graph.node:
            for a in node.attribute:
                if a.HasField("g"):
                    stack.append(a.g)
                stack.extend(a.graphs)


def _external_tensors(model: Any) -> bool:
    """True if any tensor anywhere in the model (initializers, sparse initializers, tensor
    attributes, in every graph and function) is stored outside the file."""
    import onnx

    def tensors(nodes: Any, graph: Any = None) -> Iterator[Any]:
        if graph is not None:
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield from (sparse.values, sparse.indices)
        for node in nodes:
            for a in node.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                for sparse in [*([a.sparse_tensor] if a.HasField("sparse_tensor") else []), *a.sparse_tensors]:
                    yield from (sparse.values, sparse.indices)

    every = [t for g in _onnx_graphs(model) for t in tensors(g.node, g)]
    every += [t for f in model.functions for t in tensors(f.node)]
    return any(t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) for t in every)


def check_onnx_graph(model: Any, path: str | os.PathLike) -> None:
    """Refuses an ONNX model that could read other files, loop, or allocate from its data.

    The rules, one per class: no tensor stored outside the file, anywhere (subgraphs and functions
    included); no subgraph and no model-local function; only standard-domain operators of
    :data:`ONNX_OPERATORS`.

    Raises:
        UserError: one line naming the first rule broken.
    """
    if _external_tensors(model):
        raise not_a_model(path, "its weights live in other files, which fastmmd does not follow")
    if len(model.functions):
        raise not_a_model(path, "it defines its own ONNX functions, which fastmmd exports never do")
    for graph in _onnx_graphs(model):
        if graph is not model.graph:
            raise not_a_model(path, "it holds subgraphs (If/Loop/Scan bodies), which fastmmd exports never do")
        for node in graph.node:
            if node.domain not in ("", "ai.onnx") or node.op_type not in ONNX_OPERATORS:
                op = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
                raise not_a_model(path, f"it uses the ONNX operator {op[:60]!r}, which fastmmd exports never use "
                                        "(no loops, subgraphs or sizes taken from data)")


def _onnx_model(path: Path) -> Any:
    try:
        import onnx
    except ImportError:
        raise UserError("reading .onnx models needs the onnx extra: pip install 'fastmmd[onnx]'") from None
    regular_file(path, "model")
    size = path.stat().st_size
    if size > MAX_ONNX_BYTES:
        raise not_a_model(path, f"{size / 1e9:.1f} GB, over the {MAX_ONNX_BYTES / 1e9:.1f} GB fastmmd reads")
    try:
        model = onnx.load_model_from_string(path.read_bytes())  # bytes: nothing is resolved against a folder
    except Exception:
        raise not_a_model(path, "not a readable ONNX model") from None
    if not model.graph.node:
        raise not_a_model(path, "an ONNX file without a graph")
    check_onnx_graph(model, path)
    return model


#: Bytes the intermediate tensors of one ONNX run may add up to, in units of 4-byte elements:
#: ``ONNX_ACTIVATION_FACTOR`` x the batch's pixels x the widest convolution the file holds, plus
#: ``ONNX_WEIGHT_FACTOR`` x the elements of its weights, plus ``ONNX_FLOOR_ELEMENTS``. fastmmd's own
#: exports use a small share of it (measured: docs/safety.md, "ONNX memory per run").
ONNX_ACTIVATION_FACTOR = 64
ONNX_WEIGHT_FACTOR = 4
ONNX_FLOOR_ELEMENTS = 1 << 20
#: Largest integer tensor whose values :class:`OnnxMemoryBound` computes itself (shape arithmetic).
_SHAPE_VALUES = 64
_FOLDED_OPS = frozenset({"Shape", "Constant", "Identity", "Squeeze", "Unsqueeze", "Add", "Sub", "Mul", "Div", "Mod",
                         "Reshape", "Concat", "Cast", "Gather", "Slice"})


def _fold_integers(node: Any, values: list[Any], image_shape: tuple[int, ...]) -> Any:
    """The value of one shape-arithmetic node on small integer tensors, as onnxruntime computes it
    (integer ``Div`` truncates; ``Mod`` takes the divisor's sign unless ``fmod``), or None where
    this is not such a node (the bound then leaves it to ONNX shape inference)."""
    import numpy as np
    from onnx import helper, numpy_helper

    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    op = node.op_type
    if op == "Shape":
        if node.input[0] != "image":
            return None
        dims = np.array(image_shape, dtype=np.int64)
        start, end = a.get("start", 0), a.get("end", len(dims))
        return dims[start:end]
    if op == "Constant":
        return numpy_helper.to_array(a["value"]) if "value" in a else None
    if any(v is None or v.dtype.kind not in "iu" for v in values[:1]):
        return None
    if op == "Identity":
        return values[0]
    if op in ("Squeeze", "Unsqueeze"):
        axes = [int(x) for x in (values[1] if len(values) > 1 else a.get("axes", []))]
        if op == "Squeeze":
            return np.squeeze(values[0], axis=tuple(axes) if axes else None)
        out = values[0]
        for axis in sorted(axes):
            out = np.expand_dims(out, axis)
        return out
    if op in ("Add", "Sub", "Mul", "Div", "Mod"):
        x, y = values
        if op in ("Div", "Mod") and not np.all(y):
            return None
        if op == "Div":
            return np.sign(x) * np.sign(y) * (np.abs(x) // np.abs(y))
        if op == "Mod":
            return np.fmod(x, y) if a.get("fmod", 0) else np.mod(x, y)
        return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](x, y)
    if op == "Reshape":
        shape = [int(d) for d in values[1]]
        if not a.get("allowzero", 0):
            shape = [values[0].shape[i] if d == 0 else d for i, d in enumerate(shape)]
        return values[0].reshape(shape)
    if op == "Concat":
        return np.concatenate(values, axis=a["axis"])
    if op == "Cast":
        target = helper.tensor_dtype_to_np_dtype(a["to"])
        return values[0].astype(target) if np.dtype(target).kind in "iu" else None
    if op == "Gather":
        return np.take(values[0], values[1], axis=a.get("axis", 0))
    if op == "Slice":
        data, starts, ends = values[:3]
        axes = values[3] if len(values) > 3 else np.arange(len(starts))
        steps = values[4] if len(values) > 4 else np.ones(len(starts), dtype=np.int64)
        index = [slice(None)] * data.ndim
        for start, end, axis, step in zip(starts, ends, axes, steps):
            index[int(axis)] = slice(int(start), int(end), int(step))
        return data[tuple(index)]
    return None


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


class OnnxMemoryBound:
    """The bytes of intermediate tensors one run of an ONNX graph takes, for a given input shape,
    and the refusal of a run that would take more than its share (:data:`ONNX_ACTIVATION_FACTOR`).

    onnxruntime has no per-run memory limit (docs/safety.md), so the shapes are worked out before
    the run: shape arithmetic on the image's shape (``Shape``, ``Mod``, ``Div``, ``Concat``... on
    small integer tensors) is computed here, then ONNX shape inference (strict, with data
    propagation) gives every node's output shape. A graph whose shapes cannot all be known is
    refused, as is one whose tensors add up to more than the allowance; values of the file's large
    tensors and of inputs a caller may override (``mix``, ``strength``) are never assumed. The sum
    counts every intermediate as alive at once (onnxruntime frees them as it goes), so it bounds
    the run's peak from above. Each input shape is worked out once (a few to tens of ms).
    """

    def __init__(self, model: Any, path: Path) -> None:
        import math

        from onnx import TensorProto, helper, numpy_helper

        self.path = path
        graph = model.graph
        overridable = {i.name for i in graph.input}
        tensors = {t.name: t for t in graph.initializer}
        self.weights = sum(math.prod(t.dims) for t in graph.initializer)
        self.weights += sum(math.prod(t.values.dims) + math.prod(t.indices.dims) for t in graph.sparse_initializer)
        convs = [tensors[n.input[1]].dims[0] for n in graph.node
                 if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in tensors and tensors[n.input[1]].dims]
        self.channels = max([3, *convs])
        small, inputs = [], [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", "c", "h", "w"])]
        for t in graph.initializer:
            if (t.name not in overridable and math.prod(t.dims) <= _SHAPE_VALUES
                    and t.data_type in (TensorProto.INT64, TensorProto.INT32)):
                small.append(t)
            else:
                inputs.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        for sparse in graph.sparse_initializer:
            inputs.append(helper.make_tensor_value_info(sparse.values.name, sparse.values.data_type, list(sparse.dims)))
        self.known = {t.name: numpy_helper.to_array(t) for t in small}
        skeleton = helper.make_graph(list(graph.node), "bound", inputs, list(graph.output), small)
        self.skeleton = helper.make_model(skeleton, opset_imports=list(model.opset_import), ir_version=model.ir_version)
        self.checked: dict[tuple[int, ...], int] = {}

    def allowance(self, shape: tuple[int, ...]) -> int:
        """Bytes a run on a batch of ``shape`` (B, 3, H, W) may hold in intermediate tensors."""
        pixels = shape[0] * shape[2] * shape[3]
        return 4 * (ONNX_ACTIVATION_FACTOR * pixels * self.channels + ONNX_WEIGHT_FACTOR * self.weights
                    + ONNX_FLOOR_ELEMENTS)

    def nbytes(self, shape: tuple[int, ...]) -> int:
        """The bytes of all intermediate tensors of a run on a batch of ``shape``.

        Raises:
            UserError: a node's output shape cannot be known, or the graph contradicts itself.
        """
        import math

        import numpy as np
        import onnx
        from onnx import helper, numpy_helper, shape_inference

        model = onnx.ModelProto()
        model.CopyFrom(self.skeleton)
        known, folded = dict(self.known), []
        with np.errstate(all="ignore"):
            for node in model.graph.node:
                if node.op_type not in _FOLDED_OPS or not all(x in known or (x == "image" and node.op_type == "Shape")
                                                              for x in node.input if x):
                    continue
                try:
                    value = _fold_integers(node, [known.get(x) for x in node.input], shape)
                except (ValueError, IndexError, TypeError, KeyError, OverflowError):
                    value = None
                if value is not None and np.asarray(value).size <= _SHAPE_VALUES and len(node.output) == 1:
                    known[node.output[0]] = np.asarray(value)
                    folded.append(node.output[0])
        kept = [n for n in model.graph.node if not (len(n.output) == 1 and n.output[0] in known)]
        del model.graph.node[:]
        model.graph.node.extend(kept)
        model.graph.initializer.extend(numpy_helper.from_array(known[name], name) for name in folded)
        for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, shape):
            dim.Clear()
            dim.dim_value = value
        try:
            inferred = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except Exception as err:
            raise not_a_model(self.path, f"its graph contradicts itself for a {'x'.join(map(str, shape))} input: "
                                         f"{(str(err).strip().splitlines() or [''])[0][:100]}") from None
        infos = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
        total = 0
        for node in inferred.graph.node:
            for name in node.output:
                t = infos[name].type.tensor_type if name in infos else None
                dims = ([d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
                        if t and t.HasField("shape") else [-1])
                try:
                    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize if t else 0
                except (KeyError, TypeError, ValueError):
                    itemsize = 0
                if min(dims, default=0) < 0 or not itemsize:
                    raise not_a_model(self.path, "fastmmd cannot bound the memory it takes: the shape of "
                                                 f"{node.op_type} output {printable(name, 40)!r} is unknown for a "
                                                 f"{'x'.join(map(str, shape))} input")
                total += math.prod(dims) * itemsize
        return total

    def check(self, shape: tuple[int, ...], opening: bool = False) -> None:
        """Refuses a run on a batch of ``shape`` whose intermediate tensors exceed :meth:`allowance`
        (at ``opening``, a probe shape: the file is then not a model fastmmd runs).

        Raises:
            UserError: one line.
        """
        shape = tuple(int(d) for d in shape)
        if shape not in self.checked:
            self.checked[shape] = self.nbytes(shape)
        need, allowed = self.checked[shape], self.allowance(shape)
        if need > allowed:
            why = (f"its intermediate tensors take {_gb(need)} for a {'x'.join(map(str, shape))} batch, over the "
                   f"{_gb(allowed)} fastmmd allows a run in proportion to its input and weights")
            raise not_a_model(self.path, why) if opening else UserError(f"{str(self.path)!r}: {why}")


def _onnx_memory_cap() -> int:
    """Bytes onnxruntime may hold in this process: a share of the available memory, under RLIMIT_AS."""
    from fastmmd.base.devices import available_memory

    cap = int(ONNX_MEMORY_FRACTION * available_memory(torch.device("cpu")))
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            cap = min(cap, int(ONNX_MEMORY_FRACTION * max(0, limit - used)))
    return max(cap, 64 << 20)


def _onnx_options(onnxruntime: Any, empty_folder: str) -> Any:
    """Session options: quiet logs, external initializers resolved only in an empty folder, and the
    process-wide arena cap (:data:`ONNX_MEMORY_FRACTION`) registered on first use."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # errors come back as exceptions, not as log lines on stderr
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", empty_folder)
    if not _ONNX_ARENA:
        cap = _onnx_memory_cap()
        info = onnxruntime.OrtMemoryInfo("Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                         onnxruntime.OrtMemType.DEFAULT)
        try:
            onnxruntime.create_and_register_allocator(info, onnxruntime.OrtArenaCfg(cap, -1, -1, -1))
        except Exception:  # registered already (by another library): its arena serves
            pass
        _ONNX_ARENA.append(cap)
    options.add_session_config_entry("session.use_env_allocators", "1")
    return options


def _onnx_error(path: Path, err: BaseException) -> UserError:
    text = (str(err).strip().splitlines() or [""])[0]
    if "Available memory" in text or "Failed to allocate" in text:
        return UserError(f"{str(path)!r}: onnxruntime would need more than the "
                         f"{_ONNX_ARENA[0] / 2**30:.1f} GiB fastmmd lets it hold; try --max-size or --tile")
    return UserError(f"{str(path)!r}: onnxruntime failed: {text[-200:]}")


def open_onnx(path: str | os.PathLike) -> tuple[Callable[[Tensor], Tensor], dict[str, Any]]:
    """An onnxruntime session (CPU) for an ``.onnx`` file and its metadata.

    The model is read as bytes and checked (:func:`check_onnx_graph`: no external data, loops,
    subgraphs or data-sized allocations) before onnxruntime sees it; onnxruntime then resolves
    external data only in an empty folder and holds at most the arena cap of
    :data:`ONNX_MEMORY_FRACTION`. The graph's memory is bounded (:class:`OnnxMemoryBound`) for the
    :data:`ONNX_PROBE` batch before the session opens and for every batch shape before it runs.
    The returned callable maps (B, 3, H, W) to (B, 3, H, W) or raises a one-line
    :class:`UserError` (a run error, a batch over the graph's bound or the memory cap, an output of
    another shape).
    """
    import tempfile

    p = regular_file(path, "model")
    model = _onnx_model(p)
    bound = OnnxMemoryBound(model, p)
    bound.check(ONNX_PROBE, opening=True)  # onnxruntime folds constant subgraphs when the session opens
    try:
        import onnxruntime
    except ImportError:
        raise UserError("running .onnx models needs onnxruntime: pip install 'fastmmd[onnx]'") from None
    meta = parse_metadata(text, p) if (text := {q.key: q.value for q in model.metadata_props}.get("fastmmd", "")) else {}
    with tempfile.TemporaryDirectory(prefix="fastmmd-onnx-") as empty:
        try:
            session = onnxruntime.InferenceSession(model.SerializeToString(), _onnx_options(onnxruntime, empty),
                                                   providers=["CPUExecutionProvider"])
        except Exception as err:
            raise not_a_model(p, f"onnxruntime cannot run it: {(str(err).strip().splitlines() or [''])[0][:160]}") from None
    names = [i.name for i in session.get_inputs()]
    if names != ["image"]:
        raise not_a_model(p, f"inputs {names}, not ['image']")
    optional = {i.name for i in session.get_overridable_initializers()} & {"mix", "strength"}

    def run(x: Tensor, mix: Tensor | None = None, strength: Tensor | None = None) -> Tensor:
        """A conditioned model's ``mix`` (S,) and ``strength`` (1,) are inputs with defaults
        (:mod:`fastmmd.infer.export`); None leaves the default."""
        bound.check(tuple(x.shape))  # before onnxruntime allocates anything for this batch
        feeds = {"image": x.detach().float().cpu().contiguous().numpy()}
        for name, value in (("mix", mix), ("strength", strength)):
            if value is not None:
                if name not in optional:
                    raise UserError(f"{str(p)!r} takes no {name} input")
                feeds[name] = value.detach().float().cpu().reshape(-1).contiguous().numpy()
        try:
            out = session.run(None, feeds)[0]
        except Exception as err:
            raise _onnx_error(p, err) from None
        shape = tuple(getattr(out, "shape", ()))
        if shape != tuple(x.shape) or getattr(out, "dtype", None) is None or out.dtype.kind != "f":
            raise UserError(f"{str(p)!r} returned an output of shape {shape} for an image batch of {tuple(x.shape)}; "
                            "a fastmmd model returns the batch's shape")
        return torch.from_numpy(out)

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
