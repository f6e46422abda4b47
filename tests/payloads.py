"""Crafted model files for the security tests: every container fastmmd reads, with a payload that
creates a marker file if anything ever unpickles or runs it.

Two kinds:

* **pickle payloads** (:data:`PICKLE_PAYLOADS`): a pickle whose ``__reduce__`` calls ``os.system``
  placed in every pickled part of every format (a checkpoint's dict, raw and zip; a TorchScript
  archive's ``data.pkl``, ``constants.pkl`` and debug pickles; a ``.pt2``'s sample inputs, a pickled
  weight and an "opaque object" constant; a pickle named ``.onnx`` or ``.safetensors``). fastmmd
  must refuse each with one line.
* **program payloads** (:data:`PROGRAM_PAYLOADS`): a genuine export whose *program* writes the
  marker (TorchScript code calling ``aten::save``; ``.pt2`` guard code that ``.module()`` compiles).
  fastmmd never runs a file's program, so these load (their weights are real) and the marker stays
  absent.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import zipfile
from pathlib import Path
from typing import Callable

import torch


class Payload:
    """Unpickles as ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path) -> None:
        self.command = f"touch {shlex.quote(str(marker))}"

    def __reduce__(self):
        return os.system, (self.command,)


def torch_bytes(obj: object, zip_format: bool = True) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=zip_format)
    return buffer.getvalue()


def rewrite_zip(source: Path, target: Path, edit: Callable[[str, bytes], bytes | None]) -> Path:
    """Copies a zip archive member by member through ``edit(name, data)`` (None drops the member)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info, data)
    return target


def _checkpoint(marker: Path, zip_format: bool) -> bytes:
    return torch_bytes({"state_dict": {"network.x": torch.zeros(1)}, "fastmmd": Payload(marker),
                        "global_step": 1}, zip_format)


def ckpt_zip(exports: dict[str, Path], marker: Path, out: Path) -> Path:
    (path := out / "crafted.ckpt").write_bytes(_checkpoint(marker, True))
    return path


def ckpt_raw(exports: dict[str, Path], marker: Path, out: Path) -> Path:
    (path := out / "crafted_raw.ckpt").write_bytes(_checkpoint(marker, False))
    return path


def _torchscript_member(member: str) -> Callable[[dict[str, Path], Path, Path], Path]:
    """The member ending in ``member`` replaced by a payload pickle; added (in the archive's code
    folder) if fastmmd's export has none, as it drops the ``.debug_pkl`` records a crafted file may carry."""
    def build(exports: dict[str, Path], marker: Path, out: Path) -> Path:
        evil = pickle.dumps(Payload(marker), protocol=2)
        target = rewrite_zip(exports["torchscript"], out / f"crafted_{member.strip('/').split('.')[0]}.pt",
                             lambda name, data: evil if name.endswith(member) else data)
        with zipfile.ZipFile(target) as z:
            present = any(n.endswith(member) for n in z.namelist())
        if not present:
            with zipfile.ZipFile(target, "a") as z:
                z.writestr(f"archive/code/__torch__/fastmmd/{member.lstrip('/')}", evil)
        return target
    return build


def pt2_sample_inputs(exports: dict[str, Path], marker: Path, out: Path) -> Path:
    evil = torch_bytes((Payload(marker),))
    return rewrite_zip(exports["pt2"], out / "crafted_inputs.pt2",
                       lambda name, data: evil if name.endswith("data/sample_inputs/model.pt") else data)


def pt2_pickled_weight(exports: dict[str, Path], marker: Path, out: Path) -> Path:
    """The first weight marked ``use_pickle`` (torch.export.load unpickles it with weights_only=False)."""
    config_name = "data/weights/model_weights_config.json"
    with zipfile.ZipFile(exports["pt2"]) as z:
        config = json.loads(z.read(next(n for n in z.namelist() if n.endswith(config_name))))
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    evil = torch_bytes(Payload(marker))

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith(config_name):
            return json.dumps(config).encode()
        return evil if name.endswith(f"data/weights/{first['path_name']}") else data

    return rewrite_zip(exports["pt2"], out / "crafted_weight.pt2", edit)


def pt2_opaque_constant(exports: dict[str, Path], marker: Path, out: Path) -> Path:
    """An "opaque object" constant (torch.export.load runs ``pickle.loads`` on it)."""
    config = {"config": {"evil": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}}}
    root = None

    def edit(name: str, data: bytes) -> bytes:
        nonlocal root
        if name.endswith("data/constants/model_constants_config.json"):
            root = name.split("/", 1)[0]
            return json.dumps(config).encode()
        return data

    path = rewrite_zip(exports["pt2"], out / "crafted_constant.pt2", edit)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(f"{root}/data/constants/opaque_obj_0", pickle.dumps(Payload(marker)))
    return path


def onnx_pickle(exports: dict[str, Path], marker: Path, out: Path) -> Path:
    (path := out / "crafted.onnx").write_bytes(_checkpoint(marker, True))
    return path


def safetensors_pickle(exports: dict[str, Path], marker: Path, out: Path) -> Path:
    (path := out / "crafted.safetensors").write_bytes(torch_bytes({"0.weight": Payload(marker)}))
    return path


def torchscript_code(exports: dict[str, Path], marker: Path, out: Path) -> Path:
    """A genuine TorchScript export whose ``forward`` first writes ``marker`` with ``aten::save``."""
    def edit(name: str, data: bytes) -> bytes:
        if not name.endswith("code/__torch__/fastmmd/export.py"):
            return data
        anchor = "    net = self.net\n    encoder = net.encoder\n"
        text = data.decode()
        assert anchor in text, "export.py's TorchScript code changed; update the payload"
        return text.replace(anchor, f"    ops.aten.save(x, {json.dumps(str(marker))})\n{anchor}", 1).encode()

    return rewrite_zip(exports["torchscript"], out / "crafted_code.pt", edit)


def pt2_guards(exports: dict[str, Path], marker: Path, out: Path) -> Path:
    """A genuine ``.pt2`` export whose guard code (compiled by ``.module()``, run on every call) writes ``marker``."""
    def edit(name: str, data: bytes) -> bytes:
        if not name.endswith("models/model.json"):
            return data
        program = json.loads(data)
        program["guards_code"] = [f"__import__('os').system({json.dumps(Payload(marker).command)}) == 0"]
        return json.dumps(program).encode()

    return rewrite_zip(exports["pt2"], out / "crafted_guards.pt2", edit)


PICKLE_PAYLOADS = {
    "ckpt-zip": ckpt_zip, "ckpt-raw": ckpt_raw,
    "pt-data.pkl": _torchscript_member("/data.pkl"), "pt-constants.pkl": _torchscript_member("/constants.pkl"),
    "pt-debug_pkl": _torchscript_member("export.py.debug_pkl"),
    "pt2-sample-inputs": pt2_sample_inputs, "pt2-pickled-weight": pt2_pickled_weight,
    "pt2-opaque-constant": pt2_opaque_constant, "onnx-pickle": onnx_pickle, "safetensors-pickle": safetensors_pickle,
}
PROGRAM_PAYLOADS = {"pt-code": torchscript_code, "pt2-guards": pt2_guards}


# ------------------------------------------------------------------------------------------------
# Resource payloads (issue 26): small files that declare huge sizes, read other files, or loop.
# Each builder is ``build(exports, out, scale)``: ``scale`` sizes the declared data (tests keep it
# small enough to build in well under a second; the measurements of the issue use the full size).
# ------------------------------------------------------------------------------------------------
class _StorageRef:
    """Pickles as the persistent id of a torch zip storage record."""

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _TensorView:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    def __init__(self, storage: _StorageRef, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.args = (storage, 0, size, stride, False, __import__("collections").OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


def torch_pickle(obj: object) -> bytes:
    """A torch-zip ``data.pkl`` for ``obj``, whose :class:`_StorageRef` become storage records."""
    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, _StorageRef):
                return ("storage", torch.FloatStorage, o.key, "cpu", o.numel)
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _zero_member(z: zipfile.ZipFile, name: str, nbytes: int) -> None:
    """Writes ``nbytes`` zero bytes as a deflated member, 1 MiB at a time (about 1 KB per MB in the file)."""
    chunk = bytes(1 << 20)
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with z.open(info, "w", force_zip64=True) as f:
        left = nbytes
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)


def _deflated_zip(path: Path, members: dict[str, bytes | int]) -> Path:
    """A zip archive; ``int`` members are that many deflated zero bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            if isinstance(data, int):
                _zero_member(z, name, data)
            else:
                z.writestr(name, data)
    return path


def _bomb_meta(network: dict[str, int]) -> dict[str, object]:
    return {"format_version": 1, "network": network, "style_images": ["x.png"]}


def ckpt_deflated(exports: dict[str, Path], out: Path, scale: int = 1 << 30) -> Path:
    """A zip ``.ckpt`` whose three storages are ``scale`` deflated zero bytes each (issue: 6.7 MB -> 3.9 GB)."""
    numel = scale // 4
    refs = [_StorageRef(str(i), numel) for i in range(3)]
    state = {f"network.w{i}": _TensorView(r, (numel,), (1,)) for i, r in enumerate(refs)}
    data = torch_pickle({"state_dict": state, "fastmmd": _bomb_meta({"width": 8, "residual_blocks": 1})})
    return _deflated_zip(out / "deflated.ckpt", {"archive/data.pkl": data, "archive/byteorder": b"little",
                                                  "archive/version": b"3\n",
                                                  **{f"archive/data/{r.key}": scale for r in refs}})


def ckpt_stride0(exports: dict[str, Path], out: Path, scale: int = 1 << 28) -> Path:
    """A ``.ckpt`` whose weights are stride-0 views of one 64-byte storage, matching a width-4096 network
    (the largest description fastmmd accepts): reading it used to build that network (GBs)."""
    from fastmmd.model.networks import TransformerNet

    config = {"width": 4096, "residual_blocks": 2}
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in TransformerNet.from_config(config).state_dict().items()}
    ref = _StorageRef("0", 16)
    state = {f"network.{k}": _TensorView(ref, shape, (0,) * len(shape)) for k, shape in shapes.items()}
    data = torch_pickle({"state_dict": state, "fastmmd": _bomb_meta(config)})
    return _deflated_zip(out / "stride0.ckpt", {"archive/data.pkl": data, "archive/byteorder": b"little",
                                                 "archive/version": b"3\n", "archive/data/0": bytes(64)})


def pt_stride0(exports: dict[str, Path], out: Path, scale: int = 1 << 28) -> Path:
    """A TorchScript ``.pt`` whose ``data.pkl`` holds four stride-0 views (``scale`` elements each) of a 64-byte record."""
    ref = _StorageRef("bomb", 16)
    data = torch_pickle({f"w{i}": _TensorView(ref, (scale,), (0,)) for i in range(4)})

    def edit(name: str, content: bytes) -> bytes:
        return data if name.endswith("/data.pkl") else content

    path = rewrite_zip(exports["torchscript"], out / "stride0.pt", edit)
    with zipfile.ZipFile(path) as z:
        root = z.namelist()[0].split("/", 1)[0]
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(f"{root}/data/bomb", bytes(64))
    return path


def _pt2_config_edit(exports: dict[str, Path], target: Path, change: Callable[[dict], None],
                     extra: dict[str, bytes | int] | None = None) -> Path:
    config_name = "data/weights/model_weights_config.json"
    with zipfile.ZipFile(exports["pt2"]) as z:
        full = next(n for n in z.namelist() if n.endswith(config_name))
        config = json.loads(z.read(full))
    root = full.split("/", 1)[0]
    change(config["config"])
    path = rewrite_zip(exports["pt2"], target,
                       lambda name, data: json.dumps(config).encode() if name == full else data)
    if extra:
        with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
            for name, data in extra.items():
                if isinstance(data, int):
                    _zero_member(z, f"{root}/{name}", data)
                else:
                    z.writestr(f"{root}/{name}", data)
    return path


def pt2_stride0(exports: dict[str, Path], out: Path, scale: int = 1 << 28) -> Path:
    """A ``.pt2`` whose first four weights are stride-0 views of ``scale`` elements of their records."""
    def change(config: dict) -> None:
        for entry in list(config.values())[:4]:
            entry["tensor_meta"]["sizes"] = [{"as_int": scale}]
            entry["tensor_meta"]["strides"] = [{"as_int": 0}]
    return _pt2_config_edit(exports, out / "stride0.pt2", change)


def pt2_deflated(exports: dict[str, Path], out: Path, scale: int = 1 << 30) -> Path:
    """A ``.pt2`` whose first four weights are views of one deflated member of ``scale`` zero bytes."""
    def change(config: dict) -> None:
        for entry in list(config.values())[:4]:
            entry["path_name"] = "bomb"
            entry["tensor_meta"]["sizes"] = [{"as_int": scale // 4}]
            entry["tensor_meta"]["strides"] = [{"as_int": 1}]
    return _pt2_config_edit(exports, out / "deflated.pt2", change, {"data/weights/bomb": scale})


def pt2_many_members(exports: dict[str, Path], out: Path, scale: int = 50_000) -> Path:
    """A ``.pt2`` with ``scale`` extra weight members and entries (the reader was quadratic in them)."""
    def change(config: dict) -> None:
        meta = {**next(iter(config.values()))["tensor_meta"], "sizes": [{"as_int": 0}], "strides": [{"as_int": 1}]}
        for i in range(scale):
            config[f"net.extra{i}"] = {"path_name": f"extra{i}", "is_param": False, "use_pickle": False, "tensor_meta": meta}
    return _pt2_config_edit(exports, out / "many.pt2", change, {f"data/weights/extra{i}": b"" for i in range(scale)})


def _onnx_model(nodes: list, initializers: list, output_shape=None, opset: int = 17):
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "crafted", [helper.make_tensor_value_info("image", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("stylized", TensorProto.FLOAT, output_shape)],
                              initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _save_onnx(model, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def onnx_subgraph_external(exports: dict[str, Path], out: Path, scale: int = 0, secret: str = ".env") -> Path:
    """An ``If`` whose branches add an initializer stored as external data (``secret``, relative to
    the working folder) to the image: running it would copy that file's bytes into the output."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    def branch(name: str):
        t = helper.make_tensor(f"{name}_data", TensorProto.FLOAT, [1], [0.0])
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value=secret)
        t.external_data.add(key="length", value="4")
        return helper.make_graph([helper.make_node("Identity", [f"{name}_data"], [f"{name}_out"])], name, [],
                                 [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)], [t])

    cond = numpy_helper.from_array(np.array(True), "cond")
    nodes = [helper.make_node("If", ["cond"], ["leak"], then_branch=branch("then"), else_branch=branch("else")),
             helper.make_node("Add", ["image", "leak"], ["stylized"])]
    return _save_onnx(_onnx_model(nodes, [cond]), out / "subgraph_external.onnx")


def onnx_loop(exports: dict[str, Path], out: Path, scale: int = 1 << 62) -> Path:
    """A ``Loop`` with trip count ``scale`` around an Identity (hangs a runtime that runs it)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph([helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
                             "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                                      helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                                      helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
                             [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    inits = [numpy_helper.from_array(np.array(scale, dtype=np.int64), "trips"),
             numpy_helper.from_array(np.array(True), "keep")]
    nodes = [helper.make_node("Loop", ["trips", "keep", "image"], ["stylized"], body=body)]
    return _save_onnx(_onnx_model(nodes, inits), out / "loop.onnx")


def onnx_constant_of_shape(exports: dict[str, Path], out: Path, scale: int = 1 << 30) -> Path:
    """A 400-byte ``ConstantOfShape`` graph filling ``scale`` floats, added to the image."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([scale], dtype=np.int64), "shape")]
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"]), helper.make_node("ReduceMean", ["big"], ["m"], keepdims=0),
             helper.make_node("Add", ["image", "m"], ["stylized"])]
    return _save_onnx(_onnx_model(nodes, inits), out / "constant_of_shape.onnx")


def onnx_expand(exports: dict[str, Path], out: Path, scale: int = 1 << 16) -> Path:
    """Only allowed operators: the image's first value ``Expand``-ed to ``scale`` x ``scale`` floats
    (16 GiB at the default): the memory cap, not the operator list, must stop it."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([scale, scale], dtype=np.int64), "shape"),
             numpy_helper.from_array(np.array([0, 0, 0, 0], dtype=np.int64), "zeros"),
             numpy_helper.from_array(np.array([1, 1, 1, 1], dtype=np.int64), "ones")]
    nodes = [helper.make_node("Slice", ["image", "zeros", "ones"], ["one"]),
             helper.make_node("Reshape", ["one", "ones"], ["one4"]),
             helper.make_node("Flatten", ["one4"], ["flat"], axis=0),
             helper.make_node("Expand", ["flat", "shape"], ["big"]),
             helper.make_node("ReduceMean", ["big"], ["m"], keepdims=0),
             helper.make_node("Add", ["image", "m"], ["stylized"])]
    return _save_onnx(_onnx_model(nodes, inits), out / "expand.onnx")


def onnx_shape_of_intermediate(exports: dict[str, Path], out: Path, scale: int = 1 << 12) -> Path:
    """Only allowed operators: a value of the image ``Expand``-ed to the shape of an intermediate
    tensor (its ReLU) times ``scale`` per side, computed with ``Shape``, ``Mul`` and ``Div`` as the
    space-to-depth reshapes of fastmmd's ONNX exports compute theirs (ONNX's own shape inference
    does not follow ``Div``): the memory bound must work the shape out and refuse it."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([1, 1, 2 * scale, 2 * scale], dtype=np.int64), "grow"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.int64), "two"),
             numpy_helper.from_array(np.array([0, 0, 0, 0], dtype=np.int64), "zeros"),
             numpy_helper.from_array(np.array([1, 1, 1, 1], dtype=np.int64), "ones")]
    nodes = [helper.make_node("Relu", ["image"], ["relu"]),
             helper.make_node("Shape", ["relu"], ["shape"]),
             helper.make_node("Mul", ["shape", "grow"], ["doubled"]),
             helper.make_node("Div", ["doubled", "two"], ["target"]),
             helper.make_node("Slice", ["relu", "zeros", "ones"], ["one"]),
             helper.make_node("Expand", ["one", "target"], ["big"]),
             helper.make_node("ReduceMean", ["big"], ["m"], keepdims=0),
             helper.make_node("Add", ["image", "m"], ["stylized"])]
    return _save_onnx(_onnx_model(nodes, inits), out / f"shape_of_intermediate_{scale}.onnx")


def onnx_wrong_rank(exports: dict[str, Path], out: Path, scale: int = 0) -> Path:
    """A graph returning the image flattened (rank 2), not (B, 3, H, W)."""
    from onnx import helper

    return _save_onnx(_onnx_model([helper.make_node("Flatten", ["image"], ["stylized"])], []), out / "wrong_rank.onnx")


#: Resource payloads: name -> (builder, the scale a test uses, the scale of the issue's measurements).
RESOURCE_PAYLOADS = {
    "ckpt-deflated": (ckpt_deflated, 1 << 27, 1 << 30),
    "ckpt-stride0": (ckpt_stride0, 0, 0),
    "pt-stride0": (pt_stride0, 1 << 28, 1 << 28),
    "pt2-stride0": (pt2_stride0, 1 << 28, 1 << 28),
    "pt2-deflated": (pt2_deflated, 1 << 27, 1 << 30),
    "pt2-many-members": (pt2_many_members, 5_000, 50_000),
    "onnx-subgraph-external": (onnx_subgraph_external, 0, 0),
    "onnx-loop": (onnx_loop, 1 << 62, 1 << 62),
    "onnx-constant-of-shape": (onnx_constant_of_shape, 1 << 30, 1 << 30),
    "onnx-expand": (onnx_expand, 1 << 16, 1 << 16),
    "onnx-shape-of-intermediate": (onnx_shape_of_intermediate, 1 << 12, 1 << 12),
    "onnx-wrong-rank": (onnx_wrong_rank, 0, 0),
}


def gif_huge_screen(out: Path, side: int = 16000) -> Path:
    """An 85-byte GIF whose logical screen is ``side`` x ``side`` (one 1x1 image in it): a decoder
    that trusts the screen allocates side^2 pixels per frame (3 GB at 16000)."""
    import struct

    header = b"GIF89a" + struct.pack("<HHBBB", side, side, 0xF0, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = (b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: 0.1 s
             + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00")  # 1x1 image
    path = out / "huge_screen.gif"
    path.write_bytes(header + frame * 3 + b"\x3b")
    return path


def fifo_clip(out: Path, name: str = "clip.mp4") -> Path:
    """A FIFO named like a video: opening it for reading blocks until a writer comes (never)."""
    path = out / name
    os.mkfifo(path)
    return path


def with_metadata(exports: dict[str, Path], out: Path, kind: str, text: Callable[[str], str], name: str) -> Path:
    """A genuine export (``torchscript``, ``pt2`` or ``onnx``) whose ``fastmmd.json`` text is ``text(original)``."""
    suffix = {"torchscript": ".pt", "pt2": ".pt2", "onnx": ".onnx"}[kind]
    target = out / f"{name}{suffix}"
    if kind == "onnx":
        import onnx

        model = onnx.load(str(exports["onnx"]))
        for prop in model.metadata_props:
            if prop.key == "fastmmd":
                prop.value = text(prop.value)
        onnx.save_model(model, str(target))
        return target
    return rewrite_zip(exports[kind], target,
                       lambda n, data: text(data.decode()).encode() if n.endswith("fastmmd.json") else data)


def _field(field: str, value: str) -> Callable[[str], str]:
    """Sets a top-level (``min_size``) or ``network.`` field of the metadata to raw JSON ``value``."""
    def edit(text: str) -> str:
        meta = json.loads(text)
        head, _, tail = field.partition(".")
        meta.setdefault(head, {})
        marker = "\u0000FIELD\u0000"
        if tail:
            meta[head][tail] = marker
        else:
            meta[head] = marker
        return json.dumps(meta).replace(json.dumps(marker), value)
    return edit


#: Metadata payloads: name -> edit of the fastmmd.json text (each a traceback before issue 26).
METADATA_PAYLOADS = {
    "min_size-text": _field("min_size", '"abc"'),
    "width-text": _field("network.width", '"x"'),
    "deep-json": lambda text: "[" * 100_000 + "]" * 100_000,
    "5000-digit-int": _field("min_size", "1" * 5000),
}


# ------------------------------------------------------------------------------------------------
# Issue 26, round three: old-format (non-zip) torch files, pickle-machine bombs, video timelines.
# ------------------------------------------------------------------------------------------------
def legacy_bytes(obj: object, storages: list[tuple[_StorageRef, bool]], storage_type: object = None) -> bytes:
    """An old-format (``_use_new_zipfile_serialization=False``) torch file for ``obj``, built by hand.

    Layout (torch.serialization._legacy_save): pickles of the magic number, the protocol version,
    the system info and ``obj`` (whose :class:`_StorageRef` become storage ids naming their element
    count), the list of storage keys, then each listed storage inline (int64 count, 64 zero bytes
    here). torch allocates every storage from its declared count while unpickling ``obj``; a storage
    whose ``listed`` flag is False is never filled and comes back as uninitialised memory.
    """
    import struct

    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

    kind = storage_type or torch.FloatStorage

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            return ("storage", kind, o.key, "cpu", o.numel, None) if isinstance(o, _StorageRef) else None

    buffer = io.BytesIO()
    info = {"protocol_version": PROTOCOL_VERSION, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    for value in (MAGIC_NUMBER, PROTOCOL_VERSION, info):
        pickle.dump(value, buffer, protocol=2)
    Pickler(buffer, protocol=2).dump(obj)
    listed = [ref for ref, keep in storages if keep]
    pickle.dump([ref.key for ref in listed], buffer, protocol=2)
    for ref in listed:
        buffer.write(struct.pack("<q", ref.numel) + bytes(64))
    return buffer.getvalue()


def ckpt_legacy_declared(exports: dict[str, Path], out: Path, scale: int = 4096) -> Path:
    """A 4 KB old-format ``.ckpt`` describing a network of width ``scale`` whose weights are storages
    that *declare* exactly the bytes of each weight (51 GB at width 4096, 3.2 GB at 1024) and are never
    filled: torch allocated them uninitialised, the byte check passed (views = storages), and fastmmd
    built the network."""
    from fastmmd.model.networks import TransformerNet

    config = {"width": scale or 4096, "residual_blocks": 2}
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in TransformerNet.from_config(config).state_dict().items()}
    state, refs = {}, []
    for i, (k, shape) in enumerate(shapes.items()):
        numel = max(1, int(torch.Size(shape).numel()))
        refs.append((ref := _StorageRef(str(i), numel), False))
        state[f"network.{k}"] = _TensorView(ref, shape, tuple(torch.empty(shape, device="meta").stride()))
    (path := out / "legacy_declared.ckpt").write_bytes(legacy_bytes({"state_dict": state, "fastmmd": _bomb_meta(config)}, refs))
    return path


def ckpt_legacy_resized(exports: dict[str, Path], out: Path, scale: int = 1 << 30) -> Path:
    """An old-format ``.ckpt`` whose one 16-element storage is seen as a ``scale``-element weight:
    torch's ``set_`` *grows* an old-format storage to fit the view (4 GB at 2^30) before anything checks it."""
    ref = _StorageRef("0", 16)
    state = {"network.w": _TensorView(ref, (scale,), (1,))}
    data = legacy_bytes({"state_dict": state, "fastmmd": _bomb_meta({"width": 8, "residual_blocks": 1})}, [(ref, False)])
    (path := out / "legacy_resized.ckpt").write_bytes(data)
    return path


def vgg_legacy_declared(out: Path, scale: int = 1 << 31) -> Path:
    """A 400-byte old-format VGG ``.pth`` whose ``0.weight`` is a float16 storage declaring ``scale``
    elements, never filled: ``.float()`` of it allocated and wrote 4 x ``scale`` bytes (8 GB at 2^31)."""
    ref = _StorageRef("0", scale)
    data = legacy_bytes({"features.0.weight": _TensorView(ref, (scale,), (1,))}, [(ref, False)], torch.HalfStorage)
    (path := out / "legacy_declared.pth").write_bytes(data)
    return path


def vgg_stride0(out: Path, scale: int = 1 << 31) -> Path:
    """A zip VGG ``.pth`` whose ``0.weight`` is a stride-0 view (``scale`` float16 elements) of one
    64-byte storage: ``.float()`` of it wrote 4 x ``scale`` bytes."""
    ref = _StorageRef("0", 32)
    data = torch_pickle({"features.0.weight": _TensorView(ref, (scale,), (0,))}).replace(b"FloatStorage", b"HalfStorage")
    return _deflated_zip(out / "stride0.pth", {"archive/data.pkl": data, "archive/byteorder": b"little",
                                                "archive/version": b"3\n", "archive/data/0": bytes(64)})


def pickle_memo_bomb(index: int = 1 << 30) -> bytes:
    """Eight bytes of pickle: ``None`` stored at memo index ``index``. CPython's C unpickler grows its
    memo table to 2 x ``index`` slots and zeroes them (16 GB at 2^30) before anything else happens."""
    import struct

    return b"\x80\x02N" + b"r" + struct.pack("<I", index) + b"."


def pt_memo(exports: dict[str, Path], out: Path, scale: int = 1 << 30) -> Path:
    """A TorchScript ``.pt`` whose ``data.pkl`` is :func:`pickle_memo_bomb` (fastmmd unpickles it itself)."""
    bomb = pickle_memo_bomb(scale)
    return rewrite_zip(exports["torchscript"], out / "memo.pt", lambda name, data: bomb if name.endswith("/data.pkl") else data)


RESOURCE_PAYLOADS.update({
    "ckpt-legacy-declared": (ckpt_legacy_declared, 4096, 4096),
    "ckpt-legacy-resized": (ckpt_legacy_resized, 1 << 30, 1 << 30),
    "pt-memo": (pt_memo, 1 << 30, 1 << 30),
})


def gif_fast_screen(out: Path, side: int = 4600, frames: int = 50) -> Path:
    """A GIF (20 bytes a frame) whose ``frames`` 1x1 images each repaint a ``side`` x ``side`` screen
    every 0.02 s (the shortest delay FFmpeg honours): 21 Mpx x 50 fps = 1.06 Gpx per second of clip at 4600."""
    import struct

    header = b"GIF89a" + struct.pack("<HHBBB", side, side, 0xF0, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = (b"\x21\xf9\x04\x00\x02\x00\x00\x00"  # graphic control: 2 centiseconds
             + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00")
    path = out / "fast_screen.gif"
    path.write_bytes(header + frame * frames + b"\x3b")
    return path


def _retimed_clip(out: Path, name: str, frames: int, time_base: "Fraction", step: int, size: int = 16) -> Path:
    """``frames`` black ``size`` px H.264 frames whose packets are restamped ``step`` units of
    ``time_base`` apart (0: all at one instant) in the container that ``name``'s suffix picks."""
    import av
    import numpy as np

    plain = out / f"plain_{name}.mkv"
    with av.open(str(plain), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = size, size, "yuv420p"
        black = np.zeros((size, size, 3), np.uint8)
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(black, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    path = out / name
    with av.open(str(plain)) as src, av.open(str(path), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        stream.time_base = time_base
        for i, packet in enumerate(p for p in src.demux(src.streams.video[0]) if p.size):
            packet.stream, packet.time_base = stream, time_base
            packet.pts = packet.dts = i * step
            dst.mux(packet)
    plain.unlink()
    return path


def clip_microsecond_frames(out: Path, frames: int = 300) -> Path:
    """An MP4 (7 KB) whose ``frames`` are a microsecond apart: it declares about 900,000 fps."""
    from fractions import Fraction

    return _retimed_clip(out, "microseconds.mp4", frames, Fraction(1, 1_000_000), 1)


def clip_one_instant(out: Path, frames: int = 1100) -> Path:
    """An MKV whose ``frames`` all carry timestamp 0 while its header declares 25 fps: only the
    frames as decoded tell (1,100 frames in 0 s of timeline)."""
    from fractions import Fraction

    return _retimed_clip(out, "one_instant.mkv", frames, Fraction(1, 1000), 0)


def onnx_constant_expand(exports: dict[str, Path], out: Path, scale: int = 1 << 15) -> Path:
    """A constant 1.0 ``Expand``-ed to ``scale`` x ``scale`` floats from initializers alone (4 GiB at
    2^15): onnxruntime folds it while it *opens* the session, before any run."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([scale, scale], dtype=np.int64), "shape"),
             numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one")]
    nodes = [helper.make_node("Expand", ["one", "shape"], ["big"]),
             helper.make_node("ReduceMean", ["big"], ["m"], keepdims=0),
             helper.make_node("Add", ["image", "m"], ["stylized"])]
    return _save_onnx(_onnx_model(nodes, inits), out / "constant_expand.onnx")


def onnx_outer_product(exports: dict[str, Path], out: Path, scale: int = 0) -> Path:
    """Allowed operators only: the image's values as a column times themselves as a row, a
    (3HW)^2 matrix: 5.8 MB for a 20 x 20 photo, 3.6 GB for 100 x 100, 36 TB for 1000 x 1000."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "column"),
             numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "row")]
    nodes = [helper.make_node("Reshape", ["image", "column"], ["c"]), helper.make_node("Reshape", ["image", "row"], ["r"]),
             helper.make_node("MatMul", ["c", "r"], ["square"]),
             helper.make_node("ReduceMean", ["square"], ["m"], keepdims=0),
             helper.make_node("Add", ["image", "m"], ["stylized"])]
    return _save_onnx(_onnx_model(nodes, inits), out / "outer_product.onnx")


def onnx_shape_from_data(exports: dict[str, Path], out: Path, scale: int = 1 << 20) -> Path:
    """A ``Reshape``/``Expand`` whose target shape is computed from the image's *values*
    (mean x ``scale``): no shape can be known before the run, so no bound either."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([float(scale)], dtype=np.float32), "scale")]
    nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "scale"], ["n"]),
             helper.make_node("Cast", ["n"], ["dims"], to=TensorProto.INT64),
             helper.make_node("Expand", ["mean", "dims"], ["big"]),
             helper.make_node("ReduceMean", ["big"], ["m"], keepdims=0),
             helper.make_node("Add", ["image", "m"], ["stylized"])]
    return _save_onnx(_onnx_model(nodes, inits), out / "shape_from_data.onnx")


RESOURCE_PAYLOADS.update({
    "onnx-constant-expand": (onnx_constant_expand, 1 << 15, 1 << 15),
    "onnx-shape-from-data": (onnx_shape_from_data, 1 << 20, 1 << 20),
})
