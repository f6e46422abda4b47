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
