"""Reading ``.onnx`` model files from anyone and opening them in onnxruntime, without torch.

The ONNX half of :mod:`fastmmd.model.files`' rules (docs/safety.md), in a module that imports
neither torch nor, until a file is checked, the ``onnx`` package, so that ``fastmmd stylize`` can
run an exported model on onnxruntime, NumPy and Pillow alone (:mod:`fastmmd.infer.fast_stylize`):

* :func:`read_onnx_model` reads a file as bytes and checks it (:func:`check_onnx_graph`: no
  external data, no loops, subgraphs or model-local functions, only the operators of
  :data:`ONNX_OPERATORS`) before onnxruntime sees it;
* :func:`open_session` then hands onnxruntime the checked bytes, with external initializers
  resolved only in an empty folder and the process's onnxruntime memory capped
  (:data:`ONNX_MEMORY_FRACTION`); the graph's memory is bounded for every batch shape before it runs
  (:class:`OnnxMemoryBound`). A file the caller has already verified to be a shipped one
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

from fastmmd.base.devices import available_cpu_memory
from fastmmd.base.errors import UserError, not_a_model
from fastmmd.base.inputs import printable, regular_file
from fastmmd.model.style_files import MAX_PAINTINGS

#: The operators an ONNX file may use: those ``fastmmd export`` writes (plain and conditioned networks,
#: float32/float16/int8 storage, listed from its output) and a few more whose output is never larger
#: than their inputs broadcast together. Nothing that loops (``Loop``, ``Scan``), branches into
#: subgraphs (``If``) or allocates from a number in the data (``ConstantOfShape``, ``Range``,
#: ``Tile``, ``Resize``, random generators...) is run.
ONNX_OPERATORS = frozenset({
    # written by fastmmd export (the int8-compute files' QDQ pairs: elementwise, the input's shape)
    "Add", "Cast", "Concat", "Conv", "DepthToSpace", "DequantizeLinear", "Div", "Expand", "Gemm",
    "InstanceNormalization", "MatMul", "Mod", "Mul", "Pad", "QuantizeLinear", "Relu", "Reshape", "Shape", "Sigmoid",
    "Slice", "Squeeze", "Sub", "Transpose", "Unsqueeze",
    # bounded by their inputs
    "Abs", "Clip", "Constant", "Exp", "Flatten", "Gather", "Identity", "LeakyRelu", "Max", "Min", "Neg", "Pow",
    "ReduceMean", "Sqrt", "Tanh",
})
#: Largest ``.onnx`` file read (a width-32 network is ~7 MB; weights must live inside the file).
MAX_ONNX_BYTES = 1 << 30
#: Share of the memory available when the first ONNX model opens that onnxruntime may hold
#: (its arena is capped there, once per process; also kept under RLIMIT_AS where one is set).
ONNX_MEMORY_FRACTION = 0.7
_MAX_STYLE_FEATURES = 1 << 16
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


#: Bytes the intermediate tensors of one ONNX run may add up to, in units of 4-byte elements:
#: ``ONNX_ACTIVATION_FACTOR`` x the batch's pixels x the widest convolution the file holds (its weight
#: stored in the file, as it is or behind a ``DequantizeLinear``: an int8-compute file's), plus
#: ``ONNX_WEIGHT_FACTOR`` x the elements of its weights, plus ``ONNX_FLOOR_ELEMENTS``. fastmmd's own
#: exports use a small share of it (measured: docs/safety.md, "ONNX memory per run").
ONNX_ACTIVATION_FACTOR = 64
ONNX_WEIGHT_FACTOR = 4
ONNX_FLOOR_ELEMENTS = 1 << 20
#: Largest integer tensor whose values :class:`OnnxMemoryBound` computes itself (shape arithmetic).
_SHAPE_VALUES = 64
_FOLDED_OPS = frozenset({"Shape", "Constant", "Identity", "Squeeze", "Unsqueeze", "Add", "Sub", "Mul", "Div", "Mod",
                         "Reshape", "Concat", "Cast", "Gather", "Slice"})


def _fold_integers(node: Any, values: list[Any], shapes: dict[str, tuple[int, ...]]) -> Any:
    """The value of one shape-arithmetic node on small integer tensors, as onnxruntime computes it
    (integer ``Div`` truncates; ``Mod`` takes the divisor's sign unless ``fmod``; ``Shape`` of a
    tensor whose whole shape ``shapes`` knows: the image's, or one shape inference worked out), or
    None where this is not such a node (the bound then leaves it to ONNX shape inference)."""
    import numpy as np
    from onnx import helper, numpy_helper

    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    op = node.op_type
    if op == "Shape":
        if node.input[0] not in shapes:
            return None
        dims = np.array(shapes[node.input[0]], dtype=np.int64)
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
        stored = {**tensors, **{n.output[0]: tensors[n.input[0]] for n in graph.node  # int8 weights, dequantized
                                if n.op_type == "DequantizeLinear" and n.input[0] in tensors and len(n.output) == 1}}
        convs = [stored[n.input[1]].dims[0] for n in graph.node
                 if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in stored and stored[n.input[1]].dims]
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
        #: inputs without a default (an arbitrary-style network's ``style``): their declared shapes, a
        #: name (str) where the size is the caller's; every run gives their real shapes to :meth:`check`
        self.free = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                     for i in graph.input if i.name != "image" and i.name not in tensors}
        inputs += [i for i in graph.input if i.name in self.free]
        self.known = {t.name: numpy_helper.to_array(t) for t in small}
        skeleton = helper.make_graph(list(graph.node), "bound", inputs, list(graph.output), small)
        self.skeleton = helper.make_model(skeleton, opset_imports=list(model.opset_import), ir_version=model.ir_version)
        self.checked: dict[Any, int] = {}

    def probe(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the inputs without a default for the opening probe: 1 where the caller chooses
        the size (one painting). Raises a one-line error for an input of no declared shape."""
        if any(not dims or any(d == 0 for d in dims) for dims in self.free.values()):
            raise not_a_model(self.path, "it has an input of unknown shape, which fastmmd exports never have")
        return {name: tuple(1 if isinstance(d, str) else int(d) for d in dims) for name, dims in self.free.items()}

    def allowance(self, shape: tuple[int, ...], others: dict[str, tuple[int, ...]] | None = None) -> int:
        """Bytes a run on a batch of ``shape`` (B, 3, H, W) may hold in intermediate tensors (with
        ``others``, the shapes of the other inputs fed: as many again per element as per pixel)."""
        import math

        pixels = shape[0] * shape[2] * shape[3]
        fed = sum(math.prod(s) for s in (others or {}).values())
        return 4 * (ONNX_ACTIVATION_FACTOR * (pixels * self.channels + fed) + ONNX_WEIGHT_FACTOR * self.weights
                    + ONNX_FLOOR_ELEMENTS)

    def _folded(self, shapes: dict[str, tuple[int, ...]], inputs: dict[str, tuple[int, ...]]) -> Any:
        """The skeleton for inputs of the shapes ``inputs`` (by name) with its shape arithmetic
        computed (``shapes``: the tensors whose whole shape is known so far) and replaced by
        initializers.

        Raises:
            UserError: an input of another rank than its shape's.
        """
        import numpy as np
        import onnx
        from onnx import numpy_helper

        model = onnx.ModelProto()
        model.CopyFrom(self.skeleton)
        known, folded = dict(self.known), []
        with np.errstate(all="ignore"):
            for node in model.graph.node:
                if node.op_type not in _FOLDED_OPS or not all(x in known or (x in shapes and node.op_type == "Shape")
                                                              for x in node.input if x):
                    continue
                try:
                    value = _fold_integers(node, [known.get(x) for x in node.input], shapes)
                except (ValueError, IndexError, TypeError, KeyError, OverflowError):
                    value = None
                if value is not None and np.asarray(value).size <= _SHAPE_VALUES and len(node.output) == 1:
                    known[node.output[0]] = np.asarray(value)
                    folded.append(node.output[0])
        kept = [n for n in model.graph.node if not (len(n.output) == 1 and n.output[0] in known)]
        del model.graph.node[:]
        model.graph.node.extend(kept)
        model.graph.initializer.extend(numpy_helper.from_array(known[name], name) for name in folded)
        for value_info in model.graph.input:
            if value_info.name in inputs:
                dims = value_info.type.tensor_type.shape.dim
                if len(dims) != len(inputs[value_info.name]):
                    raise UserError(f"{str(self.path)!r}: input {value_info.name!r} takes {len(dims)} dimension(s), "
                                    f"not the {len(inputs[value_info.name])} of {tuple(inputs[value_info.name])}")
                for dim, value in zip(dims, inputs[value_info.name]):
                    dim.Clear()
                    dim.dim_value = value
        return model

    def nbytes(self, shape: tuple[int, ...], others: dict[str, tuple[int, ...]] | None = None) -> int:
        """The bytes of all intermediate tensors of a run on a batch of ``shape`` and other inputs of
        the shapes ``others`` (by name; those it leaves out keep their declared or default shape).

        Raises:
            UserError: a node's output shape cannot be known, or the graph contradicts itself.
        """
        import math

        import numpy as np
        from onnx import helper, shape_inference

        inputs = {"image": tuple(shape), **{name: tuple(dims) for name, dims in (others or {}).items()}}
        shapes = dict(inputs)
        shaped = {n.input[0] for n in self.skeleton.graph.node if n.op_type == "Shape" and n.input}
        while True:  # a Shape of an intermediate folds once inference knows that tensor's shape: one round each
            model = self._folded(shapes, inputs)
            try:
                inferred = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
            except Exception as err:
                raise not_a_model(self.path, f"its graph contradicts itself for a {'x'.join(map(str, shape))} input: "
                                             f"{(str(err).strip().splitlines() or [''])[0][:100]}") from None
            learnt = {}
            for v in inferred.graph.value_info:
                if v.name in shaped and v.name not in shapes and v.type.tensor_type.HasField("shape"):
                    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                    if min(dims, default=0) >= 0:
                        learnt[v.name] = tuple(dims)
            if not learnt:
                break
            shapes.update(learnt)
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

    def check(self, shape: tuple[int, ...], opening: bool = False, others: dict[str, tuple[int, ...]] | None = None) -> None:
        """Refuses a run on a batch of ``shape`` (and other inputs of the shapes ``others``, by name)
        whose intermediate tensors exceed :meth:`allowance` (at ``opening``, a probe shape, with
        :meth:`probe` for the inputs without a default: the file is then not a model fastmmd runs).

        Raises:
            UserError: one line.
        """
        shape = tuple(int(d) for d in shape)
        others = {name: tuple(int(d) for d in dims) for name, dims in ({**self.probe(), **(others or {})}
                                                                       if opening else others or {}).items()}
        key = (shape, tuple(sorted(others.items())))
        if key not in self.checked:
            self.checked[key] = self.nbytes(shape, others)
        need, allowed = self.checked[key], self.allowance(shape, others)
        if need > allowed:
            why = (f"its intermediate tensors take {_gb(need)} for a {'x'.join(map(str, shape))} batch, over the "
                   f"{_gb(allowed)} fastmmd allows a run in proportion to its input and weights")
            raise not_a_model(self.path, why) if opening else UserError(f"{str(self.path)!r}: {why}")


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
                 verified: bool = False) -> tuple[Any, str, OnnxMemoryBound | None]:
    """An onnxruntime CPU session for a checked ``.onnx`` file, its ``fastmmd`` metadata text ("" if
    none) and its memory bound (:class:`OnnxMemoryBound`, checked for :data:`ONNX_PROBE` before the
    session opens; None for a verified file, which is not parsed).

    Args:
        path: the file.
        threads: onnxruntime intra-op threads (None: its default).
        verified: the caller has checked that the file is a shipped one (module docstring); its
            bytes then go to onnxruntime without being parsed by ``onnx`` first.

    Raises:
        UserError: one line: not a readable or allowed model, onnxruntime missing or refusing it.
    """
    p = regular_file(path, "model")
    bound = None
    if verified:
        data = p.read_bytes()
    else:
        model = read_onnx_model(p)
        bound = OnnxMemoryBound(model, p)
        bound.check(ONNX_PROBE, opening=True)  # onnxruntime folds constant subgraphs when the session opens
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
            first = (str(err).strip().splitlines() or [""])[0][:160]
            raise not_a_model(p, f"onnxruntime cannot run it: {first}") from None
    if verified:
        text = session.get_modelmeta().custom_metadata_map.get("fastmmd", "")
    else:
        text = {q.key: q.value for q in model.metadata_props}.get("fastmmd", "")
    return session, text, bound


class OnnxNetwork:
    """A checked ``.onnx`` stylization network on onnxruntime's CPU provider, NumPy in and out.

    ``network(x)`` maps a float32 (B, 3, H, W) RGB batch in [0, 1] to the stylized batch of the same
    shape (the graph pads and crops itself, :mod:`fastmmd.infer.export`); a conditioned network also takes
    ``mix`` (S,) and ``strength`` (1,), inputs with defaults that None leaves alone. An arbitrary-style
    network (:mod:`fastmmd.model.arbitrary`) needs ``style``, K paintings' statistics (K, F) (or (F,)),
    1 <= K <= :data:`MAX_PAINTINGS`, and with K > 1 ``mix`` (K,), their blend. Opened by
    :func:`open_session` (``threads``, ``verified`` as there); ``metadata_text`` is the file's
    ``fastmmd`` metadata, unparsed; ``style_features`` is F (None: no ``style`` input).

    Raises:
        UserError: one line: the file is refused (:func:`open_session`), its inputs are not a
            fastmmd export's, a run fails (the memory cap named), or an output has another shape.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, verified: bool = False) -> None:
        self.path = regular_file(path, "model")
        self.session, self.metadata_text, self.bound = open_session(self.path, threads, verified)
        inputs = {i.name: i for i in self.session.get_inputs()}
        if list(inputs) not in (["image"], ["image", "style"]):
            raise not_a_model(self.path, f"inputs {list(inputs)}, not ['image'] (or ['image', 'style'])")
        self.style_features = None
        if "style" in inputs:
            shape = inputs["style"].shape
            if not (len(shape) == 2 and isinstance(shape[1], int) and 1 <= shape[1] <= _MAX_STYLE_FEATURES):
                raise not_a_model(self.path, f"its style input has shape {shape}, not (paintings, F)")
            self.style_features = shape[1]
        self.optional = {i.name for i in self.session.get_overridable_initializers()} & {"mix", "strength"}

    def __call__(self, x: Any, mix: Any = None, strength: Any = None, style: Any = None) -> Any:
        import numpy as np

        feeds = {"image": np.ascontiguousarray(x, dtype=np.float32)}
        for name, value in (("mix", mix), ("strength", strength)):
            if value is not None:
                if name not in self.optional:
                    raise UserError(f"{str(self.path)!r} takes no {name} input")
                feeds[name] = np.ascontiguousarray(value, dtype=np.float32).reshape(-1)
        if (style is None) != (self.style_features is None):
            raise UserError(f"{str(self.path)!r} is an arbitrary-style network: give a painting's statistics"
                            if style is None else f"{str(self.path)!r} takes no style statistics (not an arbitrary-style network)")
        if style is not None:
            phi = np.ascontiguousarray(style, dtype=np.float32)
            phi = phi.reshape(1, -1) if phi.ndim == 1 else phi
            count = phi.shape[0] if phi.ndim == 2 else 0
            if phi.ndim != 2 or phi.shape[1] != self.style_features or not 1 <= count <= MAX_PAINTINGS:
                raise UserError(f"{str(self.path)!r} takes the statistics of 1 to {MAX_PAINTINGS} paintings, "
                                f"(K, {self.style_features}), not {tuple(np.shape(style))}")
            if feeds.get("mix", np.ones(1)).shape != (count,):
                raise UserError(f"{str(self.path)!r}: {count} paintings need a mix of {count} weights")
            feeds["style"] = phi
        if self.bound is not None:  # before onnxruntime allocates anything for this batch
            self.bound.check(tuple(feeds["image"].shape), others={k: v.shape for k, v in feeds.items() if k != "image"})
        try:
            out = self.session.run(None, feeds)[0]
        except Exception as err:
            raise onnx_error(self.path, err) from None
        shape = tuple(getattr(out, "shape", ()))
        if shape != tuple(feeds["image"].shape) or getattr(out, "dtype", None) is None or out.dtype.kind != "f":
            raise UserError(f"{str(self.path)!r} returned an output of shape {shape} for an image batch of "
                            f"{tuple(feeds['image'].shape)}; a fastmmd model returns the batch's shape")
        return out
