"""The shipped styles' paintings, usable by name wherever a style image is taken.

The paintings behind the shipped styles (public domain; ``zoo.json`` names each one's title,
painter, year, licence and ``source``) are not in the repository. Each style's manifest entry
records where the file the style was trained on can be downloaded and how to check it
(``download``: ``url``, ``sha256``, ``bytes``; :mod:`fastmmd.base.manifest` checks the record);
``fastmmd data paintings`` (:mod:`fastmmd.apps.download`) fetches them into one folder per user,
:func:`paintings_dir`, under their manifest file names (``starry_night.jpg``).

:func:`resolve_painting` is the one resolver every style-image argument goes through (``optimize
--style``, ``compare``/``evaluate --style``, ``fit``'s ``model.style_images``, an arbitrary-style
network's ``--style-image``):

* an existing path is returned as it is: a real file named ``starry_night`` in the current folder
  wins over the style of that name;
* else a shipped style's name (case-insensitive; not ``arbitrary``, which has no painting) gives
  the downloaded painting, checked against the recorded size and SHA-256 on every use; not yet
  downloaded (or changed since): one line saying which command fetches it;
* anything else is returned as it is, so the image reader reports a missing file as it always has
  (a missing or broken zoo matters only for names it would list).

Only the standard library is imported here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastmmd.base.errors import UserError
from fastmmd.base.manifest import file_sha256, read_manifest

#: Overrides the folder the paintings are downloaded to and looked up in.
ENV_VAR = "FASTMMD_PAINTINGS"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Painting:
    """A shipped style's painting: its style ``name``, the ``file`` name it is kept under, and where
    it comes from (``url``, checked by ``sha256`` and its size in ``bytes``; ``note``: how the
    training copy differed, if it did)."""

    name: str
    file: str
    url: str
    sha256: str
    bytes: int
    title: str = ""
    painter: str = ""
    year: str = ""
    license: str = ""
    note: str = ""

    def describe(self) -> str:
        """``"Vincent van Gogh, The Starry Night (1889)"``, from what the manifest gives."""
        who = ", ".join(x for x in (self.painter, self.title) if x)
        return f"{who} ({self.year})" if self.year else who or self.name


def paintings_dir() -> Path:
    """Where the paintings are kept: ``$FASTMMD_PAINTINGS`` if set, else ``$XDG_CACHE_HOME/fastmmd/paintings``
    (``~/.cache/fastmmd/paintings`` without ``XDG_CACHE_HOME``)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "fastmmd" / "paintings"


def _painting(name: str, entry: dict[str, Any]) -> Painting:
    download = entry["download"]
    text = {k: str(entry.get(k) or "") for k in ("title", "painter", "year", "license")}
    return Painting(
        name,
        entry["style_image"],
        download["url"],
        download["sha256"],
        download["bytes"],
        note=str(download.get("note") or ""),
        **text,
    )


def shipped_paintings(folder: str | os.PathLike | None = None) -> dict[str, Painting]:
    """The shipped styles' paintings that the zoo's manifest says how to download, by style name.

    Raises:
        NoZoo, UserError: as :func:`fastmmd.base.manifest.read_manifest`.
    """
    return {
        name: _painting(name, entry)
        for name, entry in read_manifest(folder).items()
        if entry.get("kind") != "arbitrary" and isinstance(entry.get("download"), dict)
    }


def painting_problem(path: Path, painting: Painting) -> str | None:
    """Why the file at ``path`` is not ``painting`` (missing, another size, another SHA-256), or None."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            return "is not a file"
        if size != painting.bytes:
            return f"has {size} bytes, not the {painting.bytes} recorded"
        if file_sha256(path) != painting.sha256:
            return "does not have the recorded SHA-256"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    return None


def fetch_hint(name: str) -> str:
    """The command that downloads one painting (the one place that spells it)."""
    return f"fastmmd data paintings {name}"


def resolve_painting(spec: Any) -> Any:
    """The style image ``spec`` means: an existing path as it is, a shipped style's name its downloaded
    painting (a :class:`~pathlib.Path`), anything else unchanged (module docstring).

    Non-path values (a PIL image, a tensor) pass through, so callers can resolve any painting list.

    Raises:
        UserError: ``spec`` names a shipped style whose painting is not downloaded, or not the
            recorded file; one line naming the command that fetches it.
    """
    if not isinstance(spec, (str, os.PathLike)):
        return spec
    text = os.fspath(spec)
    if os.path.exists(text) or not _NAME.fullmatch(text):  # exists() never raises (over-long names, NUL bytes)
        return spec
    name = text.lower()
    try:
        painting = shipped_paintings().get(name)
    except UserError:  # no zoo or a broken one: the name is a path like any other
        return spec
    if painting is None:
        return spec
    path = paintings_dir() / painting.file
    if not os.path.lexists(path):
        raise UserError(f"painting {name!r} is not downloaded: run `{fetch_hint(name)}` (or pass a file)")
    problem = painting_problem(path, painting)
    if problem:
        raise UserError(
            f"painting {name!r}: {str(path)!r} {problem}: run `{fetch_hint(name)}` to fetch it again (or pass a file)"
        )
    return path


def resolve_paintings(specs: Any) -> list[Any]:
    """:func:`resolve_painting` for each of ``specs``."""
    return [resolve_painting(s) for s in specs]
