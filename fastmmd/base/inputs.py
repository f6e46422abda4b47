"""Where files from anyone enter fastmmd: the few rules every reader applies before it reads.

* **Regular files only** (:func:`regular_file`): a FIFO, socket or device named ``clip.mp4`` or
  ``style.pt`` would block a reader forever (or stream without end); every input is checked with
  ``os.stat`` + ``S_ISREG`` before it is opened.
* **Bounded JSON** (:func:`load_json`): every JSON text fastmmd reads from a file (model metadata,
  a ``.pt2``'s weight description, ``zoo.json``) goes through one parser with a size and a nesting
  limit, and Python's own limits (a 5,000-digit integer, deep recursion) become the same one-line
  error instead of a traceback.
* **Bounded archives** (:class:`ArchiveBudget`): a zip archive (``.pt``, ``.pt2``, zip ``.ckpt``)
  declares the size of every member before it is inflated; fastmmd inflates at most
  :func:`archive_budget` bytes in all from one file: a small multiple of the file's own size,
  under an absolute cap. Members are looked up by name through a dict (an archive of 50,000
  members costs one pass, not one pass per entry), and an archive with more members than
  :data:`MAX_MEMBERS` is refused before it is read.
* **Printable text** (:func:`printable`): text taken from a file (a manifest's titles, metadata) is
  stripped of control characters before it reaches a terminal, so no escape sequence gets through.

Only the standard library is imported here: the module sits on every command's start-up path.
"""

from __future__ import annotations

import json
import os
import re
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

from fastmmd.base.errors import UserError

#: Largest JSON text read from a file (metadata, a weight description, zoo.json).
MAX_JSON_BYTES = 16 << 20
#: Deepest nesting of JSON arrays/objects accepted (fastmmd writes at most 4 levels).
MAX_JSON_DEPTH = 32
#: Most members in a model archive (a fastmmd export has about 100).
MAX_MEMBERS = 4096
#: Inflated bytes allowed per byte of archive file: fastmmd's archives are stored, not deflated (1x).
ARCHIVE_EXPANSION = 4
#: Inflated bytes always allowed for a small archive (metadata and code members compress well).
ARCHIVE_FLOOR = 64 << 20
#: Most inflated bytes read from any one archive (VGG-19 in float32 is 0.55 GB).
ARCHIVE_CAP = 2 << 30

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def regular_file(path: str | os.PathLike, what: str = "input") -> Path:
    """``path`` if it names a regular file (symlinks followed); else a one-line :class:`UserError`.

    Called before any reader opens an input: a FIFO, socket or device is refused without opening it.
    """
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise UserError(f"{what} {str(p)!r} does not exist") from None
    except (OSError, ValueError) as err:  # permission, a name too long, a NUL byte
        raise UserError(f"cannot read {what} {str(p)!r}: {getattr(err, 'strerror', None) or err}") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{what} {str(p)!r} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} {str(p)!r} is not a regular file (a pipe, socket or device); fastmmd reads only files")
    return p


def is_regular_file(path: str | os.PathLike) -> bool:
    """True if ``path`` names a regular file (``S_ISREG``); never raises."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of ``[``/``{`` in a JSON text (brackets inside strings ignored), in one pass."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def load_json(text: str | bytes, what: str, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parses a JSON text read from a file, within size and nesting limits.

    Args:
        text: the text (bytes are decoded as UTF-8).
        what: how messages name it (``"'style.pt2': its fastmmd metadata"``).

    Raises:
        UserError: larger than ``max_bytes``, nested deeper than ``max_depth``, not UTF-8, not JSON,
            or beyond Python's own limits (integers of thousands of digits): one line.
    """
    if len(text) > max_bytes:
        raise UserError(f"{what} is {len(text) / 1e6:.1f} MB of JSON, over the {max_bytes / 1e6:.0f} MB limit")
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if json_depth(text) > max_depth:
            raise UserError(f"{what} is JSON nested deeper than {max_depth} levels")
        return json.loads(text, parse_constant=_no_constant)
    except UserError:
        raise
    except (ValueError, RecursionError, TypeError) as err:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        raise UserError(f"{what} is not valid JSON ({type(err).__name__})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def printable(text: Any, limit: int | None = None) -> str:
    """``str(text)`` without control characters (escape sequences, bidi overrides), optionally cut to ``limit``."""
    out = _CONTROL.sub("", str(text))
    return out if limit is None or len(out) <= limit else out[: max(0, limit - 3)] + "..."


def archive_budget(file_size: int) -> int:
    """The inflated bytes fastmmd reads from one archive of ``file_size`` bytes (module docstring)."""
    return min(ARCHIVE_CAP, max(ARCHIVE_FLOOR, ARCHIVE_EXPANSION * file_size))


class ArchiveBudget:
    """One zip archive's members by name, and the inflated bytes read from it so far.

    Built once per archive (one pass over its directory). :meth:`read` checks a member's declared
    size against what is left of :func:`archive_budget` *before* inflating it, so however the
    members are crafted (deflated gigabytes, one member read many times), at most the budget is
    ever allocated.

    Raises (constructor):
        UserError: more than :data:`MAX_MEMBERS` members, or members whose declared sizes add up to
            more than the budget (the archive claims more data than it can hold).
    """

    def __init__(self, z: zipfile.ZipFile, file_size: int, name: str) -> None:
        self.zip, self.name = z, name
        infos = z.infolist()
        if len(infos) > MAX_MEMBERS:
            raise UserError(f"{name!r} is an archive of {len(infos)} members; fastmmd reads at most {MAX_MEMBERS}")
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            self.members.setdefault(info.filename, info)
        self.left = archive_budget(file_size)
        declared = sum(info.file_size for info in self.members.values())
        if declared > self.left:
            raise UserError(f"{name!r} declares {declared / 1e6:.0f} MB of data in a {file_size / 1e6:.1f} MB file, "
                            f"over the {self.left / 1e6:.0f} MB fastmmd inflates from it")

    def read(self, member: str) -> bytes:
        """The member's bytes, after charging its declared size to the budget.

        Raises:
            KeyError: no such member.
            UserError: the budget is spent.
        """
        info = self.members[member]
        if info.file_size > self.left:
            raise UserError(f"{self.name!r}: reading member {member!r} ({info.file_size / 1e6:.0f} MB) would inflate "
                            f"more than fastmmd reads from a {self.name!r}-sized file")
        self.left -= info.file_size
        return self.zip.read(info)


def check_zip_budget(source: str | os.PathLike | bytes, name: str) -> None:
    """Checks a torch zip file (path or bytes: one that starts as a zip archive, which is how torch
    picks its zip reader) with :class:`ArchiveBudget` before ``torch.load`` inflates it.

    Raises:
        UserError: over the budget, or an archive that Python's zipfile cannot read (torch's own
            reader is never left to inflate what was not checked).
    """
    import io

    data = io.BytesIO(source) if isinstance(source, bytes) else source
    size = len(source) if isinstance(source, bytes) else os.stat(source).st_size
    try:
        with zipfile.ZipFile(data) as z:
            ArchiveBudget(z, size, name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise UserError(f"{name!r} is a zip archive that cannot be read (truncated or corrupt)") from None


def unique_labels(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Short labels for files, unique among ``paths``, for names of outputs, rows and styles: the
    file stem (``candy``); where stems repeat, the file name (``candy.png``); then
    ``<folder>_<file name>``; then ``<stem>-<index>``. The one rule for every command."""
    labels = [PurePath(p).stem for p in paths]
    for rule in (lambda p: p.name, lambda p: f"{p.parent.name}_{p.name}" if p.parent.name else None, lambda p: None):
        for i in [i for i, n in enumerate(labels) if labels.count(n) > 1]:
            labels[i] = rule(PurePath(paths[i])) or f"{PurePath(paths[i]).stem}-{i}"
    return labels
