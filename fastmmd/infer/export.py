"""Exporting a trained network for inference without fastmmd, verified before it is written.

Three formats, each one file that loads with torch (or onnxruntime) alone:

* ``torchscript`` (``.pt``): ``torch.jit.load(path)``; metadata in the archive's ``fastmmd.json``
  (``torch.jit.load(path, _extra_files={"fastmmd.json": ""})``) and as the module's ``metadata``
  string attribute. Takes uint8 0-255 or float 0-1 input and returns the same dtype. TorchScript is
  deprecated from torch 2.14 (every ``torch.jit`` call of fastmmd lives in this module, with that
  FutureWarning filtered narrowly), so also:
* ``pt2`` (``.pt2``): ``torch.export.load(path).module()``, the successor format; metadata in the
  archive's ``extra_files`` (``torch.export.load(path, extra_files={"fastmmd.json": ""})``), so
  one file travels, no sidecar. A traced graph fixes the input dtype: float 0-1 in, float out.
* ``onnx`` (``.onnx``): input ``image`` / output ``stylized``, float32 0-1, dynamic batch, height and
  width; metadata in the model's ``metadata_props["fastmmd"]``.

A conditioned network (several styles and/or a strength input, :mod:`fastmmd.model.conditioning`) keeps
its conditioning as inputs, one setting for the whole batch: ``mix`` (S,) float32 style weights
(convex) and ``strength`` (1,) float32. Their defaults are style 0 (one-hot) and strength 1 (the
trained default), and each format carries them its own way:

* TorchScript: ``forward(image, mix=None, strength=None)``, None meaning the default (eager
  fastmmd takes the same call); an arbitrary-style network takes the paintings' statistics as a
  fourth input, ``style`` (:mod:`fastmmd.model.arbitrary`; below);
* ONNX: ``mix`` and ``strength`` are graph inputs that also have an initializer of the same name,
  which ONNX treats as the input's default: onnxruntime lists them under
  ``get_overridable_initializers()`` and a run that feeds only ``image`` uses them;
* pt2: a ``torch.export`` graph has a fixed list of inputs and ``ExportedProgram.module()``
  refuses a call that leaves one out (its ``in_spec`` must match), so a conditioned ``.pt2`` takes
  ``(image, mix, strength)`` (inputs the network lacks are ``None``), and the defaults are written in
  the metadata's ``conditioning.inputs``.

The metadata's ``conditioning`` lists the ``styles`` by name (index = position in ``mix``) and the
trained ``strength`` range and default.

An arbitrary-style network exports to all three formats with one more input, ``style``: the
statistics phi of K paintings, float32 (K, F) (F = 2944 for VGG-19; not the painting itself: phi
needs VGG-19, i.e. torch, :class:`~fastmmd.model.arbitrary.PaintingEncoder`, or a style file saved
once, :mod:`fastmmd.model.style_files`), 1 <= K <= 256, blended by ``mix`` (K,) for the whole batch
(default [1], one painting; a ``.pt2`` takes ``(image, mix, strength, style)``, all given). In ONNX
``style`` is the one input without a default. TorchScript's ``mix=None`` with K = B paintings
also gives each image its own (eager fastmmd's call); ``.pt2`` and ONNX blend for the whole batch.

All take RGB NCHW batches of any height and width (pt2/ONNX: at least 8 px per side) and return
the same size; padding (:func:`fastmmd.model.networks.padded_size`), cropping and value scaling
happen inside. The file holds
only the transformation network (no VGG), so its size is about 4 bytes per parameter (2 with
``--weights float16``, 1 with ``--weights int8``, :mod:`fastmmd.model.storage`). ``float16`` suits
GPUs: torch's CPU fp16 convolutions are far slower than fp32 (measured: docs/benchmarks.md,
"Stylize / export"), so ``fastmmd stylize`` upcasts a half file on CPU; ``int8`` files compute in
float32 everywhere.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from fastmmd.base.errors import UserError
from fastmmd.base.outputs import atomic_path, check_output_file
from fastmmd.model.files import METADATA_FILE, open_onnx, parse_metadata, read_network, weights_only_loads
from fastmmd.model.networks import MIN_SIZE, TransformerNet
from fastmmd.model.runtime import ExportedStylizer, condition_defaults, condition_examples
from fastmmd.model.storage import STORAGES, dequantize_state, store
from fastmmd.model.style_files import MAX_PAINTINGS

FORMATS = {"torchscript": ".pt", "pt2": ".pt2", "onnx": ".onnx"}
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-2}
INPUT_CONVENTION = {
    "torchscript": "RGB NCHW batch, uint8 0-255 or float 0-1, any height/width; returns the input's dtype and size",
    "pt2": "RGB NCHW batch, float32 0-1, height/width >= 8; returns float32 0-1 of the same size",
    "onnx": "input 'image': RGB NCHW float32 0-1, dynamic batch/height/width >= 8; output 'stylized' float32 0-1, same size",
}
_MAX_SIDE = 1 << 15


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silences only torch 2.14's "`torch.jit.*` is deprecated" FutureWarning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield




def format_for(path: str | os.PathLike, fmt: str | None) -> str:
    """The export format: ``fmt`` if given, else from the suffix (.pt, .pt2, .onnx)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise UserError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        return fmt
    suffix = Path(path).suffix.lower()
    for name, ext in FORMATS.items():
        if suffix == ext:
            return name
    raise UserError(f"cannot tell the format of {str(path)!r} from its suffix; use .pt, .pt2 or .onnx, or pass --format")


def build_metadata(meta: dict[str, Any], net: TransformerNet, fmt: str, storage: str, source: str) -> dict[str, Any]:
    """What travels in the file: the style, loss and weights it was trained with, versions, input
    convention and, for a conditioned network, ``conditioning`` (styles, strength range, inputs)."""
    from fastmmd import __version__

    extra = {}
    if net.conditioned:
        conditioning = dict(meta.get("conditioning") or {})
        conditioning["inputs"] = {name: {"shape": list(t.shape), "dtype": "float32", "default": t.tolist()}
                                  for name, t in condition_defaults(net).items()}
        if net.style_embedding:  # K paintings: mix (K,) and style (K, F), style without a default
            conditioning["inputs"]["mix"]["shape"] = ["paintings"]
            conditioning["inputs"]["style"] = {"shape": ["paintings", net.style_features], "dtype": "float32"}
        conditioning["inputs_required"] = fmt == "pt2"
        extra["conditioning"] = conditioning
    return {**extra,
        "fastmmd_version": __version__,
        "format": fmt,
        "input": INPUT_CONVENTION[fmt],
        "min_size": 1 if fmt == "torchscript" else MIN_SIZE,
        "dtype": storage,
        "network": net.config(),
        "parameters": sum(p.numel() for p in net.parameters()),
        "style_images": meta.get("style_images"),
        "loss": meta.get("loss"),
        "style_weight": meta.get("style_weight"),
        "content_weight": meta.get("content_weight"),
        "tv_weight": meta.get("tv_weight"),
        "training_steps": meta.get("global_step"),
        "source_checkpoint": source,
        "torch_version": torch.__version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "training": meta,
    }


def _dynamic_shapes(net: TransformerNet) -> dict[str, Any]:
    from torch.export import Dim

    image = {0: Dim("batch", min=1, max=4096), 2: Dim("height", min=MIN_SIZE, max=_MAX_SIDE),
             3: Dim("width", min=MIN_SIZE, max=_MAX_SIDE)}
    if net.style_embedding:
        paintings = Dim("paintings", min=1, max=MAX_PAINTINGS)
        return {"x": image, "mix": {0: paintings}, "strength": None, "style": {0: paintings}}
    return {"x": image, "mix": None, "strength": None} if net.conditioned else {"x": image}


def _trace_inputs(net: TransformerNet) -> tuple[Any, ...]:
    """(image,) for an unconditioned network, (image, mix, strength) for a conditioned one (None
    for an input it lacks), the conditioning at its defaults; an arbitrary-style network's
    (image, mix, strength, style) with two seeded paintings (two, so that K is not traced as 1)."""
    if not net.conditioned:
        return (_example(),)
    defaults = condition_defaults(net)
    if net.style_embedding:
        style = 3 * torch.rand(2, net.style_features, generator=torch.Generator().manual_seed(0))
        return _example(), torch.tensor([0.5, 0.5]), defaults.get("strength"), style
    return _example(), defaults.get("mix"), defaults.get("strength")


def _example(dtype: torch.dtype = torch.float32) -> Tensor:
    """A random odd-sized batch (odd sizes exercise the pad/crop path)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 37, 45, generator=g).to(dtype)


def _build_torchscript(module: ExportedStylizer) -> Any:
    with quiet_jit():
        return torch.jit.script(module)


def _save_torchscript(scripted: Any, path: Path, metadata: str) -> None:
    scripted.metadata = metadata
    buffer = io.BytesIO()  # saved to a path, the archive's top folder would be named after our temp file
    with quiet_jit():
        torch.jit.save(scripted, buffer, _extra_files={METADATA_FILE: metadata})
    path.write_bytes(_without_debug_records(buffer.getvalue()))


def _without_debug_records(archive: bytes) -> bytes:
    """The TorchScript archive without its ``*.debug_pkl`` records: source ranges for error
    messages, which name this machine's source files (fastmmd's and torch's paths); loading and
    running never need them."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith(".debug_pkl"):
                target.writestr(info, source.read(info))
    return out.getvalue()


def _build_pt2(module: ExportedStylizer) -> Any:
    program = torch.export.export(module, _trace_inputs(module.net), dynamic_shapes=_dynamic_shapes(module.net))
    for node in program.graph.nodes:  # stack traces name this machine's source files; the graph needs none
        node.meta.pop("stack_trace", None)
    return program


def _save_pt2(program: Any, path: Path, metadata: str) -> None:
    buffer = io.BytesIO()  # torch.export.save wants a buffer or a name ending in .pt2 (ours is a temp name)
    torch.export.save(program, buffer, extra_files={METADATA_FILE: metadata})
    path.write_bytes(buffer.getvalue())


def _build_onnx(module: ExportedStylizer) -> Any:
    try:
        import onnx
        import onnxscript.optimizer
    except ImportError:
        raise UserError("ONNX export needs the onnx extra: pip install 'fastmmd[onnx]'") from None
    defaults = condition_defaults(module.net)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the exporter prints its progress
        # notes on naming the dynamic axes (mix and style share "paintings"; an input left out as None): names only
        warnings.filterwarnings("ignore", message=r".*The axis name: \w+ will not be used", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*The dynamic axes will not be renamed", category=UserWarning)
        program = torch.onnx.export(module, _trace_inputs(module.net), dynamo=True,
                                    dynamic_shapes=_dynamic_shapes(module.net),
                                    input_names=["image", *defaults, *(["style"] if module.net.style_embedding else [])],
                                    output_names=["stylized"], external_data=False)
    _fold_computed_kernels(program.model, onnxscript.optimizer)
    proto = program.model_proto
    for name, value in defaults.items():  # an initializer named like an input is that input's default
        proto.graph.initializer.append(onnx.numpy_helper.from_array(value.numpy(), name))
    for node in [*proto.graph.node, *(n for f in proto.functions for n in f.node)]:
        kept = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]  # names this machine's files
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    return proto


#: Operators through which a stored weight reaches a Conv unchanged but for its dequantization (int8 storage).
_DEQUANTIZE = frozenset({"Cast", "Mul"})


def _fold_computed_kernels(model: Any, optimizer: Any) -> None:
    """Folds the kernels the network computes from its weights (the folded upsampling convs' einsum,
    the space-to-depth RGB convs' gather; :mod:`fastmmd.model.networks`) into initializers, whatever
    their size; every other constant subgraph keeps the exporter's own rules.

    Why: the exporter folds only tensors under 8192 values, which left ``Einsum`` nodes (outside the
    ONNX allowlist of :mod:`fastmmd.model.files`) in any network wider than the tests'; folding
    everything instead would also fold an int8 file's dequantization (``Cast``, ``Mul`` straight
    into a ``Conv``) and store its weights as float32. A node is forced to fold when its output
    reaches, through dequantization ops only, anything but a ``Conv``.
    """
    memo: dict[int, bool] = {}

    def builds_a_kernel(node: Any) -> bool:
        if id(node) not in memo:
            memo[id(node)] = False  # a graph has no cycles; this only bounds the recursion
            consumers = [use[0] for value in node.outputs for use in value.uses()]
            memo[id(node)] = any(c.op_type not in ("Conv", *_DEQUANTIZE)
                                 or (c.op_type in _DEQUANTIZE and builds_a_kernel(c)) for c in consumers)
        return memo[id(node)]

    optimizer.fold_constants(model, should_fold=lambda node: True if builds_a_kernel(node) else None)
    optimizer.optimize(model)  # the exporter's clean-up once more: the folded nodes' leftovers go


def _save_onnx(proto: Any, path: Path, metadata: str) -> None:
    import onnx

    del proto.metadata_props[:]
    proto.metadata_props.append(onnx.StringStringEntryProto(key="fastmmd", value=metadata))
    onnx.save_model(proto, str(path))


def load_exported(path: str | os.PathLike, fmt: str | None = None) -> tuple[Callable[[Tensor], Tensor], dict[str, Any]]:
    """Loads the program in an exported ``.pt`` (TorchScript), ``.pt2`` (torch.export) or ``.onnx`` file.

    This runs the file's own program (TorchScript code, a torch.export graph with its guards), so it
    is only for files this process wrote itself: the parity check of :func:`export_network`, tests
    and benchmarks. Files from anyone else go through :func:`fastmmd.model.files.read_network`,
    which reads only their weights. Even here no pickle is ever loaded unrestricted
    (:func:`~fastmmd.model.files.weights_only_loads`).

    Args:
        path: the file.
        fmt: its format; None = from the suffix.

    Returns:
        (module, metadata): the module maps a float 0-1 (B, 3, H, W) batch to its stylization
        (``.onnx`` gives an onnxruntime-backed callable on CPU tensors).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model {str(p)!r} does not exist")
    fmt = format_for(p, fmt)
    if fmt == "onnx":
        return open_onnx(p)
    extra = {METADATA_FILE: ""}
    try:
        with weights_only_loads():
            if fmt == "torchscript":
                with quiet_jit():
                    module = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
                module.eval()
            else:
                module = torch.export.load(io.BytesIO(p.read_bytes()), extra_files=extra).module()
    except Exception as err:
        reason = next((line.strip() for line in str(err).splitlines() if line.strip()), "")[:160]
        raise UserError(f"cannot load {str(p)!r} as a {fmt} model ({type(err).__name__}: {reason})") from None
    return module, parse_metadata(extra[METADATA_FILE], p) if extra[METADATA_FILE] else {}


def max_abs_diff(module: Callable[..., Tensor], reference: nn.Module, x: Tensor,
                 conditions: list[tuple[Optional[Tensor], Optional[Tensor]]] | None = None) -> float:
    """max |module(x, mix, strength) - reference(x, mix, strength)| over a batch and every
    (mix, strength) of ``conditions`` (default: the plain call ``module(x)``; the export parity figure)."""
    worst = 0.0
    with torch.inference_mode():
        for condition in conditions or [(None, None)]:
            args = (x,) if all(t is None for t in condition) else (x, *condition)
            worst = max(worst, float((module(*args).float() - reference(*args).float()).abs().max()))
    return worst


def _stated_parity(loaded: Callable[..., Tensor], reference: nn.Module, crops: list[Any]) -> dict[str, float]:
    """Mean and largest |int8-compute file - eager network| over the calibration crops (0-1 RGB).

    Raises:
        UserError: a mean over :data:`fastmmd.infer.quantize.MEAN_DIFF_TOLERANCE` (nothing written).
    """
    from fastmmd.infer.quantize import MEAN_DIFF_TOLERANCE

    total, count, worst = 0.0, 0, 0.0
    with torch.inference_mode():
        for crop in crops:
            x = torch.from_numpy(crop)
            d = (loaded(x).float() - reference(x).float()).abs()
            total, count, worst = total + float(d.sum()), count + d.numel(), max(worst, float(d.max()))
    mean = total / count
    if not mean <= MEAN_DIFF_TOLERANCE:
        raise UserError(f"the int8-compute ONNX file moves the calibration photos by {mean:.3g} on average "
                        f"(> {MEAN_DIFF_TOLERANCE:g}); nothing written; try more or other --calibrate photos")
    return {"mean_abs_diff": mean, "max_abs_diff": worst}


_BUILDERS = {"torchscript": (_build_torchscript, _save_torchscript), "pt2": (_build_pt2, _save_pt2),
             "onnx": (_build_onnx, _save_onnx)}


def export_network(net: TransformerNet, output: str | os.PathLike, fmt: str | None = None, half: bool = False,
                   meta: dict[str, Any] | None = None, source: str = "", tolerance: float | None = None,
                   weights: str = "float32", calibration: Sequence[str | os.PathLike] | None = None) -> dict[str, Any]:
    """Exports ``net`` to ``output``, after checking the written file against eager execution.

    The file is written to a temporary name, loaded back and run on a random odd-sized batch
    (float, and uint8 for TorchScript); only if max |exported - eager| <= tolerance (1e-5 fp32 and
    int8, 2e-2 fp16; uint8: one level) is it rewritten with the measured difference in its metadata
    and moved to ``output``. The eager reference holds the weights as stored (``weights``:
    float32, float16 or int8, :mod:`fastmmd.model.storage`; ``half`` = float16); how far storage
    moved the output from the float32 network is recorded as ``storage_max_abs_diff``.

    ``calibration`` (photos; ONNX, single-style networks): the file computes its convolutions in
    int8 (:mod:`fastmmd.infer.quantize`, activation ranges calibrated on these photos), so parity is
    stated instead of bounded by 1e-5: the eager network and the file run the calibration crops, the
    metadata's ``compute`` is ``"int8"`` and ``int8_compute`` records the mean and largest |difference|
    (``parity_max_abs_diff`` the largest); a mean over
    :data:`fastmmd.infer.quantize.MEAN_DIFF_TOLERANCE` writes nothing.

    Returns:
        The metadata stored in the file, plus ``parity_max_abs_diff`` and ``storage_max_abs_diff``.

    Raises:
        UserError: bad format/suffix, unwritable output, or a parity mismatch (nothing written).
    """
    fmt = format_for(output, fmt)
    if half and weights not in ("float32", "float16"):  # --half meant float16; it never silently replaces int8
        raise UserError(f"--half is --weights float16; it does not combine with --weights {weights}")
    storage = "float16" if half else weights
    if storage not in STORAGES:
        raise UserError(f"--weights must be one of {', '.join(STORAGES)}, not {storage!r}")
    if calibration is not None and (fmt != "onnx" or net.conditioned):
        raise UserError("--calibrate (int8 compute) makes ONNX files (.onnx) of single-style networks; "
                        f"not {'a conditioned network' if net.conditioned else fmt}")
    out = check_output_file(output)
    crops = None
    if calibration is not None:  # read before the export's slow parts: a bad photo fails first
        from fastmmd.infer.quantize import calibration_crops

        crops = calibration_crops(list(calibration))
    dtype = torch.float16 if storage == "float16" else torch.float32
    tol = TOLERANCE[dtype] if tolerance is None else tolerance
    full = store(net, "float32")  # copies: the caller's network stays as it was
    net = store(net, storage)
    metadata = build_metadata(meta or {}, full, fmt, storage, source)
    # the graphs exports write keep each conditional norm and its affine apart (the fused call is an eager speed-up,
    # TransformerNet.set_layout); onnxruntime pads a conv's 3 output channels to 16: ONNX's last conv at 1/4 resolution
    # (48 channels; docs/benchmarks.md, "Side by side")
    for network in (full, net):
        network.set_layout(space_to_depth_on_cpu="output" if fmt == "onnx" else False, fused_norms=False)
    module = ExportedStylizer(net, json.dumps(metadata), traceable=fmt != "torchscript").eval()
    reference = ExportedStylizer(net).eval()
    x = _example()
    conditions = condition_examples(net)
    if fmt != "pt2" and net.conditioned and not net.style_embedding:
        conditions.append((None, None))  # the defaults (a .pt2 takes every input, module docstring)
    if fmt == "pt2" and net.style_embedding:  # every input given: one painting's mix is [1]
        conditions = [(torch.ones(style.shape[0]) if mix is None else mix, strength, style)
                      for mix, strength, style in conditions]
    metadata["storage_max_abs_diff"] = max_abs_diff(reference, ExportedStylizer(full).eval(), x, conditions)
    build, save = _BUILDERS[fmt]
    artifact = build(module)
    if crops is not None:
        from fastmmd.infer.quantize import quantize_compute

        artifact, metadata["int8_compute"] = quantize_compute(artifact, crops)
        metadata["compute"] = "int8"
    with atomic_path(out) as tmp:
        save(artifact, tmp, json.dumps(metadata))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            loaded, _ = load_exported(tmp, fmt)
        if crops is not None:
            metadata["int8_compute"].update(_stated_parity(loaded, reference, crops))
            diff = metadata["int8_compute"]["max_abs_diff"]
            tol = float("inf")  # stated, and bounded on the mean by _stated_parity
        else:
            diff = max_abs_diff(loaded, reference, x, conditions)
        # the uint8 path (TorchScript): rounding may differ by one level at most
        x8 = x.mul(255).round().to(torch.uint8)
        diff8 = max_abs_diff(loaded, reference, x8, conditions) if fmt == "torchscript" else 0.0
        if not (diff <= tol and diff8 <= 1):
            raise UserError(f"exported {fmt} model differs from the network by {max(diff, diff8):.3g} (> {tol:g}); "
                            f"nothing written to {str(out)!r}; try another --format or fp32")
        if fmt != "onnx":  # what `fastmmd stylize` reads from the file (its weights only) must be this network too
            read_back, expected = read_network(tmp, fmt)[0].state_dict(), dequantize_state(net.state_dict())
            if set(read_back) != set(expected) or not all(torch.equal(v.float(), read_back[k]) for k, v in expected.items()):
                raise UserError(f"the weights read back from the exported {fmt} file differ from the network; "
                                f"nothing written to {str(out)!r}")
        metadata["parity_max_abs_diff"] = diff
        save(artifact, tmp, json.dumps(metadata))
    return metadata


def export_checkpoint(checkpoint: str | os.PathLike, output: str | os.PathLike, fmt: str | None = None,
                      half: bool = False, weights: str | None = None,
                      calibration: Sequence[str | os.PathLike] | None = None) -> dict[str, Any]:
    """Exports the network of a training ``.ckpt`` (see :func:`export_network`), or re-exports the one
    in an exported ``.pt``/``.pt2`` or a shipped style (``arbitrary``, ``starry_night``) to another
    format or storage: its weights read safely (:func:`~fastmmd.model.files.read_network`; int8 ones
    dequantized, so ``weights`` int8 stores them as they were), its training description carried over.
    The output is checked (writable, not the source itself) before the source is read.

    ``weights`` None keeps what the source holds: float32 for a checkpoint, an export's own storage
    (an int8 file stays int8: re-quantizing its weights q s gives back q and s, the same network;
    ``storage_max_abs_diff`` records it). ``calibration``: int8 compute (:func:`export_network`)."""
    from fastmmd.infer.zoo import resolve_model
    from fastmmd.model.files import NETWORK_SUFFIXES, network_from_checkpoint

    source = resolve_model(checkpoint)
    check_output_file(output, [("the checkpoint", source)], suffixes=None if fmt else FORMATS.values())
    if source.suffix.lower() in NETWORK_SUFFIXES and source.suffix.lower() != ".ckpt":
        net, meta = read_network(source)
        if meta.get("format") in FORMATS:  # an export: its training description, and the checkpoint it came from
            name = meta.get("source_checkpoint") if isinstance(meta.get("source_checkpoint"), str) else source.name
            training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
            if weights is None and not half:
                weights = meta.get("dtype") if meta.get("dtype") in STORAGES else "float32"
            return export_network(net, output, fmt=fmt, half=half, meta=training, source=name,
                                  weights=weights or "float32", calibration=calibration)
    else:
        net, meta = network_from_checkpoint(source)
    return export_network(net, output, fmt=fmt, half=half, meta=meta, source=source.name, weights=weights or "float32",
                          calibration=calibration)
