"""Reading ``.onnx`` model files from anyone and opening them in onnxruntime, without torch.

The ONNX half of :mod:`fastmmd.model.files`' rules (docs/safety.md), in a module that imports
neither torch nor, until a file is checked, the ``onnx`` package, so that ``fastmmd stylize`` can
run an exported model on onnxruntime, NumPy and Pillow alone (:mod:`fastmmd.infer.fast_stylize`):

* :func:`read_onnx_model` reads a file as bytes and checks it (:func:`check_onnx_graph`: no
  external data, no loops, subgraphs or model-local functions, only the operators of
  :data:`ONNX_OPERATORS`) before onnxruntime sees it;
* :func:`open_session` then hands onnxruntime the checked bytes, with external initializers
  resolved only in an empty folder and the process's onnxruntime memory capped
  (:data:`ONNX_MEMORY_FRACTION`). A file the caller has already verified to be a shipped one
  (``verified=True``: its SHA-256 is the one the repository's own ``zoo.json`` records, a file
  ``scripts/build_zoo.py`` exported and the tests check against these rules;
  :func:`fastmmd.infer.zoo.verified_shipped_file`) is handed over without the ``onnx`` package, whose
  import alone costs about a second of start-up.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastmmd.base.errors import UserError, not_a_model
from fastmmd.base.inputs import regular_file

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


def read_onnx_model(path: Path) -> Any:
    """The ONNX model in ``path`` (read as bytes: nothing is resolved against a folder), checked by
    :func:`check_onnx_graph`; a one-line :class:`UserError` for anything else."""
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


def available_cpu_memory() -> int:
    """Bytes of memory available to a new allocation: the OS's MemAvailable (8 GiB where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _onnx_memory_cap() -> int:
    """Bytes onnxruntime may hold in this process: a share of the available memory, under RLIMIT_AS."""
    cap = int(ONNX_MEMORY_FRACTION * available_cpu_memory())
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            cap = min(cap, int(ONNX_MEMORY_FRACTION * max(0, limit - used)))
    return max(cap, 64 << 20)


def _onnx_options(onnxruntime: Any, empty_folder: str, threads: int | None = None) -> Any:
    """Session options: quiet logs, every graph optimisation (onnxruntime's ``ORT_ENABLE_ALL``: constant
    folding, node fusions, its blocked NCHWc convolution layout), ``threads`` intra-op threads (None:
    onnxruntime's default, one per physical core), external initializers resolved only in an empty
    folder, and the process-wide arena cap (:data:`ONNX_MEMORY_FRACTION`) registered on first use."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # errors come back as exceptions, not as log lines on stderr
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
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


def onnx_error(path: Path, err: BaseException) -> UserError:
    """The one-line error for a failed onnxruntime run (the memory cap named when it was the cause)."""
    text = (str(err).strip().splitlines() or [""])[0]
    if "Available memory" in text or "Failed to allocate" in text:
        return UserError(f"{str(path)!r}: onnxruntime would need more than the "
                         f"{_ONNX_ARENA[0] / 2**30:.1f} GiB fastmmd lets it hold; try --max-size or --tile")
    return UserError(f"{str(path)!r}: onnxruntime failed: {text[-200:]}")


def open_session(path: str | os.PathLike, threads: int | None = None,
                 verified: bool = False) -> tuple[Any, str]:
    """An onnxruntime CPU session for a checked ``.onnx`` file, and its ``fastmmd`` metadata text ("" if none).

    Args:
        path: the file.
        threads: onnxruntime intra-op threads (None: its default).
        verified: the caller has checked that the file is a shipped one (module docstring); its
            bytes then go to onnxruntime without being parsed by ``onnx`` first.

    Raises:
        UserError: one line: not a readable or allowed model, onnxruntime missing or refusing it.
    """
    p = regular_file(path, "model")
    if verified:
        data = p.read_bytes()
    else:
        model = read_onnx_model(p)
        data = model.SerializeToString()
    try:
        import onnxruntime
    except ImportError:
        raise UserError("running .onnx models needs onnxruntime: pip install 'fastmmd[onnx]'") from None
    with tempfile.TemporaryDirectory(prefix="fastmmd-onnx-") as empty:
        try:
            session = onnxruntime.InferenceSession(data, _onnx_options(onnxruntime, empty, threads),
                                                   providers=["CPUExecutionProvider"])
        except Exception as err:
            raise not_a_model(p, f"onnxruntime cannot run it: {(str(err).strip().splitlines() or [''])[0][:160]}") from None
    if verified:
        text = session.get_modelmeta().custom_metadata_map.get("fastmmd", "")
    else:
        text = {q.key: q.value for q in model.metadata_props}.get("fastmmd", "")
    return session, text


class OnnxNetwork:
    """A checked ``.onnx`` stylization network on onnxruntime's CPU provider, NumPy in and out.

    ``network(x)`` maps a float32 (B, 3, H, W) RGB batch in [0, 1] to the stylized batch of the same
    shape (the graph pads and crops itself, :mod:`fastmmd.infer.export`); a conditioned network also takes
    ``mix`` (S,) and ``strength`` (1,), inputs with defaults that None leaves alone. Opened by
    :func:`open_session` (``threads``, ``verified`` as there); ``metadata_text`` is the file's
    ``fastmmd`` metadata, unparsed.

    Raises:
        UserError: one line: the file is refused (:func:`open_session`), its inputs are not a
            fastmmd export's, a run fails (the memory cap named), or an output has another shape.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, verified: bool = False) -> None:
        self.path = regular_file(path, "model")
        self.session, self.metadata_text = open_session(self.path, threads, verified)
        names = [i.name for i in self.session.get_inputs()]
        if names != ["image"]:
            raise not_a_model(self.path, f"inputs {names}, not ['image']")
        self.optional = {i.name for i in self.session.get_overridable_initializers()} & {"mix", "strength"}

    def __call__(self, x: Any, mix: Any = None, strength: Any = None) -> Any:
        import numpy as np

        feeds = {"image": np.ascontiguousarray(x, dtype=np.float32)}
        for name, value in (("mix", mix), ("strength", strength)):
            if value is not None:
                if name not in self.optional:
                    raise UserError(f"{str(self.path)!r} takes no {name} input")
                feeds[name] = np.ascontiguousarray(value, dtype=np.float32).reshape(-1)
        try:
            out = self.session.run(None, feeds)[0]
        except Exception as err:
            raise onnx_error(self.path, err) from None
        shape = tuple(getattr(out, "shape", ()))
        if shape != tuple(feeds["image"].shape) or getattr(out, "dtype", None) is None or out.dtype.kind != "f":
            raise UserError(f"{str(self.path)!r} returned an output of shape {shape} for an image batch of "
                            f"{tuple(feeds['image'].shape)}; a fastmmd model returns the batch's shape")
        return out
