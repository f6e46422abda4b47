"""The model zoo: trained styles shipped with fastmmd, usable by name wherever a model file is.

The repository ships exported networks in ``checkpoints/`` (``<name>.pt``, TorchScript, and
``<name>.onnx``, which ``fastmmd stylize`` runs without torch on a CPU; their weights stored as the
manifest's ``weights`` says, int8 for the shipped styles: :mod:`fastmmd.model.storage`; no ``.pt2``,
which ``fastmmd export NAME --format pt2`` writes from the ``.pt``) with a manifest,
``checkpoints/zoo.json``, written by ``scripts/build_zoo.py``: per style the painting, the loss and
settings it was trained with, the training budget, scores against per-image optimization
(``fastmmd evaluate``) and a checksum of its output. This module is the consumer side: every command that takes a MODEL first calls
:func:`resolve_model`, which turns ``starry_night`` (or ``starry_night:onnx``) into the shipped
file and leaves real paths alone, so the file is then read by the one safe loader
(:mod:`fastmmd.model.files`) like any other. The manifest is only data: it names files inside the
zoo folder and nothing in it is run. Its one reader, which checks it, is :mod:`fastmmd.base.manifest`
(the paintings behind the styles are read from it too: :mod:`fastmmd.base.paintings`); its names
are imported here as well.

The folder is ``checkpoints/`` beside the package (the editable install the README uses), or
``$FASTMMD_ZOO``. A missing or broken manifest matters only when a style is asked for by name.

Why a checksum: a re-export or a torch upgrade that changes what a shipped style looks like
should fail a test, not reach users. :func:`checksum` runs a module on a fixed random
37x53 input (odd sizes exercise the pad/crop path) and records the per-channel mean and standard
deviation of the output; ``scripts/build_zoo.py`` writes them and ``tests/integration/test_zoo.py`` checks them.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from fastmmd.base.errors import UserError, did_you_mean
from fastmmd.base.inputs import printable
from fastmmd.base.manifest import (  # noqa: F401 (names of the zoo, imported from here too)
    ENV_VAR,
    FILE_KINDS,
    FORMAT_VERSION,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    NoZoo,
    file_sha256,
    read_manifest,
    zoo_dir,
)

if TYPE_CHECKING:
    from torch import Tensor

_SPEC_KINDS = {"pt": "torchscript", "pt2": "pt2", "onnx": "onnx"}
CHECKSUM_SEED = 0
CHECKSUM_SHAPE = (1, 3, 37, 53)
#: Largest change of these statistics that still counts as the same look: above what float rounding
#: on another CPU or torch moves them, far below what a different look moves them (tests/integration/test_zoo.py).
CHECKSUM_TOLERANCE = 0.002
_SPEC = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)(?::(?P<kind>pt2?|onnx))?")


def resolve_model(spec: str | os.PathLike) -> Path:
    """The model file ``spec`` means: an existing path as it is, else a shipped style's file.

    A style is named by its bare name, case-insensitive (``starry_night``: its ``.pt``), or with
    ``:pt``, ``:onnx`` or ``:pt2`` for that file (a zoo that lists one: the repository's ships no
    ``.pt2``, and the error says how to write one). Only the name is looked up; the file is then
    read like any other.

    Raises:
        UserError: neither an existing path nor a shipped style (with a "did you mean"), the zoo is
            missing or broken when a name is asked for, or a listed file is missing.
    """
    text = os.fspath(spec)
    path = Path(text)
    if os.path.exists(text):  # never raises (over-long names, NUL bytes)
        return path  # files, and folders (the loaders say "is a folder")
    shown = text if len(text) <= 120 else f"{text[:117]}..."
    match = _SPEC.fullmatch(text)
    if match is None:  # a path: a suffix, a folder, or a character a style name never has
        hint = ""
        if path.name == text:
            try:
                hint = did_you_mean(path.stem.lower(), read_manifest(zoo_dir()))
            except UserError:
                pass
            hint = hint.replace("did you mean", "did you mean the shipped style")
        raise UserError(f"model {shown!r} does not exist{hint}")
    name, kind = match["name"].lower(), _SPEC_KINDS[match["kind"] or "pt"]
    try:
        styles = read_manifest(zoo_dir())
    except NoZoo as err:
        raise UserError(f"{shown!r} is neither a model file nor a shipped style; {err}") from None
    if name not in styles:
        raise UserError(f"{shown!r} is neither a model file nor a shipped style{did_you_mean(name, styles)} "
                        f"(`fastmmd models` lists the styles in {str(zoo_dir())!r})")
    file = styles[name]["files"].get(kind)
    if file is None:
        make = (f"; `fastmmd export {name} --format pt2` writes one from its .pt (the same network)"
                if kind == "pt2" and "torchscript" in styles[name]["files"] else "")
        raise UserError(f"shipped style {name!r} has no {FILE_KINDS[kind]} file; use {name!r}{make}")
    found = zoo_dir() / file
    if not found.is_file():
        raise UserError(f"shipped style {name!r}: {file!r} is missing from {str(zoo_dir())!r}")
    return found


def verified_shipped_file(spec: str | os.PathLike, kind: str | None = None) -> Path | None:
    """The shipped file a style name means, if it is exactly the one the repository's zoo records.

    Answers only for a style name (``NAME`` or ``NAME:KIND``; not a path) of the repository's own
    zoo (``$FASTMMD_ZOO`` unset) whose file of ``kind`` (default: the spec's, a bare name's
    ``torchscript``) has the SHA-256 that ``zoo.json`` records: a file ``scripts/build_zoo.py``
    exported and the tests check, so what checking it whole would say is known. None otherwise.
    """
    text = os.fspath(spec)
    match = _SPEC.fullmatch(text)
    if os.environ.get(ENV_VAR) or match is None or os.path.exists(text):
        return None
    try:
        entry = read_manifest(zoo_dir()).get(match["name"].lower())
    except UserError:
        return None
    kind = kind or _SPEC_KINDS[match["kind"] or "pt"]
    if not isinstance(entry, dict) or kind not in entry["files"]:
        return None
    hashes = entry.get("sha256") if isinstance(entry.get("sha256"), dict) else {}
    path, recorded = zoo_dir() / entry["files"][kind], hashes.get(kind)
    try:
        if not recorded or not path.is_file() or file_sha256(path) != recorded:
            return None
    except OSError:
        return None
    return path


def shipped_metadata(spec: str | os.PathLike) -> dict[str, Any] | None:
    """A shipped style's ``fastmmd.json`` metadata read straight from its archive, without torch.

    Answers only for a style name (not a path) of the repository's own zoo (``$FASTMMD_ZOO`` unset)
    whose file has the SHA-256 that ``zoo.json`` records: that file is the one ``scripts/build_zoo.py``
    exported and the tests load, so reading its metadata member (``<archive>/extra/fastmmd.json``,
    plain JSON; nothing unpickled or run) says what checking it whole would. Everything else gives
    ``None``, and the caller reads the file with :func:`fastmmd.model.files.read_metadata`, which
    checks it whole.
    """
    path = verified_shipped_file(spec)
    kind = _SPEC_KINDS[_SPEC.fullmatch(os.fspath(spec))["kind"] or "pt"] if path is not None else ""
    if path is None or kind == "onnx":  # an .onnx file's metadata is in its protobuf, read by fastmmd.onnx_files
        return None
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.count("/") == 2 and n.split("/", 1)[1] == "extra/fastmmd.json"]
            if len(names) != 1 or z.getinfo(names[0]).file_size > MAX_MANIFEST_BYTES:
                return None
            meta = json.loads(z.read(names[0]))
    except (OSError, zipfile.BadZipFile, ValueError, UnicodeDecodeError, NotImplementedError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == kind else None  # kinds are named as formats


def checksum(module: Callable[..., Tensor], style_features: int = 0) -> dict[str, Any]:
    """Per-channel mean and std of ``module`` on a fixed random input: what a style looks like, in numbers.

    The input is ``torch.rand(1, 3, 37, 53)`` from a generator seeded with 0, float 0-1; the module
    runs as given (an export casts it to its compute dtype and returns float32), on the CPU.
    An arbitrary-style network (``style_features`` = F > 0, the length of its painting statistics)
    gets the painting ``3 * rand(1, F)`` drawn next from the same generator.

    Returns:
        ``{"seed", "shape", "mean": [r, g, b], "std": [r, g, b], "tolerance"}``: the manifest's ``checksum``.
    """
    import torch

    g = torch.Generator().manual_seed(CHECKSUM_SEED)
    x = torch.rand(*CHECKSUM_SHAPE, generator=g)
    with torch.inference_mode():
        y = (module(x, None, None, 3 * torch.rand(1, style_features, generator=g)) if style_features
             else module(x)).float()  # (1, 3, 37, 53)
    if tuple(y.shape) != CHECKSUM_SHAPE:
        raise ValueError(f"the module returned shape {tuple(y.shape)} for {CHECKSUM_SHAPE}")
    return {"seed": CHECKSUM_SEED, "shape": list(CHECKSUM_SHAPE),
            "mean": [round(float(v), 6) for v in y.mean(dim=(0, 2, 3))],
            "std": [round(float(v), 6) for v in y.std(dim=(0, 2, 3))], "tolerance": CHECKSUM_TOLERANCE}


def checksum_difference(expected: dict[str, Any], measured: dict[str, Any]) -> float:
    """The largest |difference| between two checksums' means and stds; infinite if their inputs differ."""
    if (expected.get("seed"), list(expected.get("shape", []))) != (measured.get("seed"), list(measured.get("shape", []))):
        return float("inf")
    pairs = [(a, b) for key in ("mean", "std") for a, b in zip(expected[key], measured[key], strict=True)]
    return max(abs(float(a) - float(b)) for a, b in pairs)


def has_student(entry: dict[str, Any]) -> bool:
    """Whether a manifest entry's ``.onnx`` is a student distilled from its ``.pt`` (its ``onnx`` record
    has a ``distillation``; checkpoints/README.md)."""
    record = entry.get("onnx")
    return isinstance(record, dict) and bool(record.get("distillation"))


def describe_styles(folder: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per shipped style, for listings: name, painting, loss, scores, training time, files, and
    ``student``: whether its ``.onnx`` is a smaller network distilled from its ``.pt`` (checkpoints/README.md).

    ``style_ratio``/``content_ratio`` are the network's distance to the painting / photo divided by
    per-image optimization's on the same photos (``fastmmd evaluate``; below 1: closer).

    Raises:
        NoZoo, UserError: as :func:`read_manifest`.
    """
    root = Path(folder) if folder is not None else zoo_dir()
    rows = []
    for name, entry in sorted(read_manifest(root).items()):
        scores, training = (entry.get(k) if isinstance(entry.get(k), dict) else {} for k in ("scores", "training"))
        files = list(entry["files"].values())
        rows.append({
            "name": name, "kind": entry.get("kind", "style"),
            "title": entry.get("title"), "painter": entry.get("painter"), "year": entry.get("year"),
            "loss": entry.get("loss"),
            "style_ratio": scores.get("style_ratio"), "content_ratio": scores.get("content_ratio"),
            "minutes": training.get("minutes"), "files": files,
            "student": has_student(entry),
            "missing": [f for f in files if not (root / f).is_file()],
            "megabytes": sum((root / f).stat().st_size for f in files if (root / f).is_file()) / 1e6,
        })
    return rows


def styles_table(rows: list[dict[str, Any]], folder: str | os.PathLike) -> str:
    """The listing of ``fastmmd models`` and ``fastmmd stylize --list``: a header, one line per style, a legend."""
    def num(value: Any, form: str = "{:.2f}") -> str:
        try:
            return form.format(float(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"
        except OverflowError:  # an integer of hundreds of digits
            return "?"

    table = [("name", "painting", "loss", "style/opt", "content/opt", "training", "files")]
    for r in rows:
        painting = ", ".join(str(r[k]) for k in ("title", "painter", "year") if r.get(k))
        if r.get("kind") == "arbitrary":
            painting = "any painting: --style-image PAINTING"
        short = [f[len(r["name"]):] if f.startswith(f"{r['name']}.") else f for f in r["files"]]  # NAME.pt -> .pt
        short = [f"{f} (student)" if r.get("student") and f.endswith(".onnx") else f for f in short]
        files = " ".join(short) + f" ({r['megabytes']:.1f} MB)"
        if r["missing"]:
            files += " MISSING: " + " ".join(r["missing"])
        table.append((r["name"], printable(painting or "?", 80), printable(r.get("loss") or "?", 40),  # manifest text:
                      num(r.get("style_ratio")), num(r.get("content_ratio")),              # no escape sequences
                      num(r.get("minutes"), "{:.1f} min"), printable(files)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]) for row in table]
    lines += ["", "style/opt, content/opt: the network's distance to the painting / the photo divided by per-image "
              "optimization's (fastmmd evaluate; below 1: closer).",
              "Use: fastmmd stylize NAME photo.jpg (NAME:pt for the .pt file; a .pt2: fastmmd export NAME --format "
              f"pt2). Folder: {str(folder)} (${ENV_VAR})."]
    if any(r.get("kind") == "arbitrary" for r in rows):
        lines.append("Any painting: fastmmd stylize arbitrary photo.jpg --style-image painting.jpg (scores: on "
                     "paintings it never saw).")
    return "\n".join(lines)


def print_styles(as_json: bool = False) -> int:
    """Prints the shipped styles (or says in one line that there are none); exit code 0."""
    try:
        rows = describe_styles()
    except NoZoo as err:
        print(f"{err}" if not as_json else "[]")
        return 0
    if as_json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no shipped styles: {str(zoo_dir() / MANIFEST)!r} lists none")
    else:
        print(styles_table(rows, zoo_dir()))
    return 0




