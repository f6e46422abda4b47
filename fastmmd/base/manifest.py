"""The shipped styles' manifest, ``zoo.json``: where it is, and the one reader that checks it.

``checkpoints/zoo.json`` (written by ``scripts/build_zoo.py``) lists per style its network files
and the painting it was trained on. Two layers read it: the model side (:mod:`fastmmd.infer.zoo`:
a style name -> its ``.pt``/``.pt2``/``.onnx``) and the painting side (:mod:`fastmmd.base.paintings`:
a style name -> its painting, wherever a style image is taken, training included). Both go
through :func:`read_manifest`, which sits here, at the bottom, so that training (which may not
import ``infer``) reads the same checked manifest.

The manifest is only data, and ``$FASTMMD_ZOO`` may take it from anyone, so every name in it that
becomes a path is checked to stay inside its folder, and a painting's download record is checked
before anything is fetched: an ``https://`` URL, a SHA-256 and a size in bytes (``download``,
below). Nothing in it is run. Only the standard library is imported here (start-up path).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from fastmmd.base.errors import UserError
from fastmmd.base.inputs import load_json

ENV_VAR = "FASTMMD_ZOO"
MANIFEST = "zoo.json"
FORMAT_VERSION = 1
#: file kind in the manifest -> suffix; ``NAME:pt2`` picks the ``pt2`` file, ``NAME:onnx`` the ``onnx`` one
#: (run by onnxruntime: ``fastmmd stylize NAME`` takes it on a CPU, :mod:`fastmmd.infer.fast_stylize`), and a
#: bare name the ``torchscript`` one everywhere else.
FILE_KINDS = {"torchscript": ".pt", "pt2": ".pt2", "onnx": ".onnx"}
#: The largest painting a manifest may record (bytes): the shipped ones are under 0.4 MB.
MAX_PAINTING_BYTES = 64 << 20
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a plain name: no folder, no "..", nothing hidden
_SHA256 = re.compile(r"[0-9a-f]{64}")
_URL = re.compile(r"https://[A-Za-z0-9.-]+(?::[0-9]+)?/[A-Za-z0-9._~%/+-]*")  # no query, no spaces, no user
#: The largest zoo.json read (and the largest metadata member of a shipped file, fastmmd.infer.zoo).
MAX_MANIFEST_BYTES = 1 << 20


class NoZoo(UserError):
    """The zoo folder holds no ``zoo.json`` (an installed wheel without the repository, or a wrong ``$FASTMMD_ZOO``)."""


def zoo_dir() -> Path:
    """The zoo folder: ``$FASTMMD_ZOO`` if set, else ``checkpoints/`` beside the package."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parents[2] / "checkpoints"


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, hex: what ``zoo.json`` records per shipped file (``sha256``) and per painting."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_problem(name: str, entry: dict[str, Any]) -> str | None:
    """What is wrong with a style's painting record (``style_image`` + ``download``), or None.

    ``download`` is optional (a zoo without it has no paintings to fetch); where present it is
    ``{"url": "https://...", "sha256": 64 hex digits, "bytes": size, "note": text (optional)}`` and
    ``style_image`` is the plain file name the painting is kept under.
    """
    download = entry.get("download")
    if download is None:
        return None
    if not isinstance(download, dict):
        return f"style {name!r}: 'download' is not an object"
    image = entry.get("style_image")
    if not (isinstance(image, str) and _FILE.fullmatch(image)):
        return f"style {name!r}: style_image {str(image)[:60]!r} is not a plain file name"
    url, sha, size = download.get("url"), download.get("sha256"), download.get("bytes")
    if not (isinstance(url, str) and len(url) <= 500 and _URL.fullmatch(url)):
        return f"style {name!r}: download url {str(url)[:80]!r} is not a plain https:// URL"
    if not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        return f"style {name!r}: download sha256 is not 64 lower-case hex digits"
    if not (isinstance(size, int) and not isinstance(size, bool) and 0 < size <= MAX_PAINTING_BYTES):
        return f"style {name!r}: download bytes is not a size from 1 to {MAX_PAINTING_BYTES} bytes"
    if not isinstance(download.get("note", ""), str):
        return f"style {name!r}: download note is not text"
    return None


def read_manifest(folder: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The styles of a zoo's ``zoo.json``, checked: ``{name: entry}``; its arbitrary-style networks
    (the manifest's ``arbitrary`` object, for any painting) come with them, marked ``"kind": "arbitrary"``.

    Every entry's ``files`` must be plain file names inside the zoo folder with the suffix of their
    kind, and a painting's ``download`` record as :func:`_download_problem` says, so a manifest
    (which ``$FASTMMD_ZOO`` may take from anyone) can point at nothing else.

    Args:
        folder: the zoo folder (default: :func:`zoo_dir`).

    Raises:
        NoZoo: no manifest in the folder.
        UserError: a manifest that is not one ``scripts/build_zoo.py`` writes (one line, naming it).
    """
    root = Path(folder) if folder is not None else zoo_dir()
    path = root / MANIFEST
    if not path.is_file():
        how = (
            f"{ENV_VAR}={os.environ[ENV_VAR]!r}"
            if os.environ.get(ENV_VAR)
            else f"set {ENV_VAR} to a folder holding one"
        )
        raise NoZoo(f"no shipped styles: no {MANIFEST} in {str(root)!r} ({how})")

    def broken(why: str) -> UserError:
        return UserError(f"the style zoo's manifest {str(path)!r} is broken: {why}")

    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise OSError(f"larger than {MAX_MANIFEST_BYTES >> 20} MB")
        data = load_json(path.read_bytes(), "it", max_bytes=MAX_MANIFEST_BYTES)  # size and depth limits
    except OSError as err:
        raise broken(f"not readable ({err.strerror or err})") from None
    except UserError as err:
        raise broken(str(err).removeprefix("it ")) from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        version = data.get("format_version") if isinstance(data, dict) else None
        raise broken(f"format_version {version!r}, this fastmmd reads {FORMAT_VERSION}")
    styles = data.get("styles")
    if not isinstance(styles, dict):
        raise broken("no 'styles' object")
    arbitrary = data.get("arbitrary", {})  # networks for any painting (fastmmd.model.arbitrary), listed apart
    if not isinstance(arbitrary, dict) or set(arbitrary) & set(styles):
        raise broken("'arbitrary' is not an object of names other than the styles'")
    for name, entry in [*styles.items(), *arbitrary.items()]:
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            raise broken(f"style name {str(name)[:40]!r} is not lower-case letters, digits, '_' and '-'")
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(files, dict) or "torchscript" not in files:
            raise broken(f"style {name!r} lists no torchscript file")
        for kind, file in files.items():
            if kind not in FILE_KINDS:
                raise broken(f"style {name!r} lists a file of unknown kind {str(kind)[:40]!r}")
            if not (isinstance(file, str) and _FILE.fullmatch(file) and file.lower().endswith(FILE_KINDS[kind])):
                raise broken(
                    f"style {name!r}: {str(file)[:60]!r} is not a {FILE_KINDS[kind]} file name inside the zoo folder"
                )
        problem = _download_problem(name, entry)
        if problem:
            raise broken(problem)
    return {**styles, **{name: {**entry, "kind": "arbitrary"} for name, entry in arbitrary.items()}}
