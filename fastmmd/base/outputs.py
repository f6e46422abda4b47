"""Where commands write: every output checked before any work, never an input, no debris on failure.

Three rules every command follows:

* **Check outputs first.** :func:`check_output_file` and :func:`check_output_dir` run before any
  model is loaded or pixel optimised: a folder where a file is wanted (or the reverse), a path
  through an existing file, an unknown image suffix, a folder that cannot take a new file (no
  permission, read-only or special file systems such as ``/proc``: probed by creating and removing
  a temporary file, since ``os.access`` says yes to root everywhere).
* **Never write over an input.** An output that is the same file as an input (same resolved path,
  or ``os.path.samefile``, so symlinks and hard links count) is refused.
* **A failed command removes what it created, and nothing else.** Folders created through
  :func:`make_dirs` while :func:`cleanup_on_failure` is active (the entry point holds it) are
  removed again if the command fails and they are still empty; files already written stay. A
  training run folder goes with its contents if the fit fails before its first checkpoint (its
  config and logs then describe nothing that can be resumed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from fastmmd.base.errors import UserError

_created: list[list[_Created]] = []  # one list per active cleanup_on_failure scope


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True if ``a`` and ``b`` name the same file: equal resolved paths, or the same inode (links)."""
    pa, pb = Path(a), Path(b)
    if pa.resolve() == pb.resolve():
        return True
    try:
        return os.path.samefile(pa, pb)
    except OSError:  # either does not exist
        return False


def refuse_inputs(output: str | os.PathLike, inputs: Iterable[tuple[str, str | os.PathLike | None]]) -> None:
    """Raises if ``output`` is the same file as any ``(flag, path)`` input."""
    for flag, path in inputs:
        if path is not None and same_file(output, path):
            raise UserError(f"output {str(output)!r} is the same file as {flag} {str(path)!r}; "
                            "choose another output so the input is not overwritten")


def make_dirs(folder: str | os.PathLike, keep: str | None = None) -> Path:
    """``mkdir -p`` that remembers which folders it created, for :func:`cleanup_on_failure`.

    Args:
        keep: for a folder the command fills with several files (a training run): if the command
            fails with an error and the folder, created here, holds no file matching this glob
            (``*.ckpt``), it is removed with its contents. Without ``keep`` only an empty folder is.
    """
    p = Path(folder)
    missing = []
    q = p
    while not q.exists() and q != q.parent:
        missing.append(q)
        q = q.parent
    if q.exists() and not q.is_dir():
        raise UserError(f"cannot create folder {str(p)!r}: {str(q)!r} is a file, not a folder")
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise UserError(f"cannot create folder {str(p)!r}: {str(d)!r} is a file, not a folder") from None
            continue
        except OSError as err:
            raise UserError(f"cannot create folder {str(d)!r}: {err.strerror or err}") from None
        if _created:
            _created[-1].append(_Created(d, keep if d == p else None))
    return p


class _Created(NamedTuple):
    path: Path
    keep: str | None


def _probe(folder: Path) -> None:
    """Creates and removes a temporary file in ``folder``: the only sure test that it takes new files."""
    try:
        fd, name = tempfile.mkstemp(prefix=".fastmmd-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise UserError(f"output folder {str(folder)!r} is not writable ({err.strerror or err})") from None


def check_output_file(path: str | os.PathLike, inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
                      suffixes: Iterable[str] | None = None, what: str = "output") -> Path:
    """Checks, before any work, that ``path`` can be written as a new or replaced file.

    Creates its folder if missing (removed again if the command fails).

    Args:
        inputs: ``(flag, path)`` pairs the output must not be.
        suffixes: allowed suffixes (lower case, with the dot); None = any.
        what: how messages name the output (e.g. ``--output``).

    Raises:
        UserError: an existing folder, an input, an unknown suffix, or a folder that cannot take it.
    """
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} {str(p)!r} is a folder; give a file name such as {str(p / 'out.png')!r}")
    if suffixes is not None:
        allowed = sorted(set(suffixes))
        if p.suffix.lower() not in allowed:
            raise UserError(f"cannot tell the format of {what} {str(p)!r} from its suffix; use {', '.join(allowed)}")
    refuse_inputs(p, inputs)
    folder = p.parent if str(p.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} {str(p)!r}: {str(folder)!r} is a file, not a folder")
    make_dirs(folder)
    _probe(folder)
    return p


def check_output_dir(path: str | os.PathLike, inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
                     what: str = "--output-dir") -> Path:
    """Checks, before any work, that ``path`` is (or can become) a folder that takes new files.

    Raises:
        UserError: an existing file, an input, or a folder that cannot be created or written.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {str(p)!r} is an existing file, not a folder")
    refuse_inputs(p, inputs)
    make_dirs(p)
    _probe(p)
    return p


def image_file_output(path: str | os.PathLike, files: list[Path], suffixes: Iterable[str]) -> Path | None:
    """``--output NAME.jpg`` for one image: that file, checked as :func:`check_output_file` checks
    (never an input); None when ``path`` is a folder: an existing one, or a name without one of the
    image ``suffixes`` (the results then go in it as ``<stem>_stylized<suffix>``).

    Raises:
        UserError: an image file named for several images (or for none), or a file check that fails.
    """
    p = Path(path)
    if p.is_dir() or p.suffix.lower() not in set(suffixes):
        return None
    if len(files) != 1:
        raise UserError(f"--output {str(p)!r} names one image file, but {len(files)} images were given; "
                        "name a folder instead")
    return check_output_file(p, [("input", f) for f in files], suffixes, "--output")


def remove_created(created: list, error: bool = False) -> None:
    """Removes the folders in ``created`` that are empty, deepest first (never a file, never a full folder).

    With ``error`` (the command raised), a folder made with ``keep`` that holds nothing matching
    ``keep`` is removed with what the command wrote into it.
    """
    for d, keep in sorted(created, key=lambda c: len(c.path.parts), reverse=True):
        if error and keep and d.is_dir() and not any(d.rglob(keep)):
            shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            d.rmdir()  # only succeeds when empty


@contextlib.contextmanager
def cleanup_on_failure() -> Iterator[list]:
    """Removes what :func:`make_dirs` created in this scope if the scope fails (see :func:`remove_created`).

    Yields the list of created folders, so a caller that fails without an exception (an exit code)
    can pass it to :func:`remove_created`. An interrupt (Ctrl-C) removes only empty folders; files a
    command had already written, and everything that existed before it started, stay.
    """
    _created.append([])
    try:
        yield _created[-1]
    except Exception:
        remove_created(_created[-1], error=True)
        raise
    except BaseException:
        remove_created(_created[-1])
        raise
    finally:
        mine = _created.pop()
        if _created:
            _created[-1].extend(mine)


#: Suffixes of lossless image formats: a stylized copy keeps them, others become PNG.
LOSSLESS_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


class OutputNames:
    """The one place ``fastmmd stylize`` names its outputs, for every input kind: images, videos,
    frames of a folder and ``--grid`` sheets.

    A name is ``<stem><suffix>`` in its folder, numbered ``<stem>_2<suffix>``, ``_3``... when it
    would be an input (the same path, or by ``(st_dev, st_ino)`` a hard link to one) or a name this
    run already gave out: ``a/clip.mp4`` and ``b/clip.mp4`` (or ``clip.gif`` and ``clip.mp4``, or
    frames ``f1.png`` and ``f1.jpg``) never land on one file.
    """

    def __init__(self, inputs: Iterable[str | os.PathLike] = ()) -> None:
        paths = [Path(p) for p in inputs]
        self.avoid: set[Path] = {p.resolve() for p in paths}
        self.inodes: set[tuple[int, int]] = set()
        for p in paths:
            with contextlib.suppress(OSError):
                self.inodes.add(inode(p))

    def claim(self, folder: Path, stem: str, suffix: str) -> Path:
        """A fresh ``folder/<stem>[_N]<suffix>``, remembered so no later claim gets it."""
        candidate, n = folder / f"{stem}{suffix}", 2
        while candidate.resolve() in self.avoid or (candidate.exists() and inode(candidate) in self.inodes):
            candidate = folder / f"{stem}_{n}{suffix}"
            n += 1
        self.avoid.add(candidate.resolve())
        return candidate

    def image(self, source: Path, out_dir: Path, has_alpha: bool) -> Path:
        """``<stem>_stylized<suffix>``: the input's suffix if lossless (PNG for alpha or lossy inputs)."""
        suffix = source.suffix.lower()
        suffix = ".png" if has_alpha or suffix not in LOSSLESS_SUFFIXES else suffix
        return self.claim(out_dir, f"{source.stem}_stylized", suffix)

    def video(self, source: Path, out_dir: Path, containers: Iterable[str]) -> Path:
        """``<stem>_stylized<suffix>``: the input's container if fastmmd writes it (``containers``), else ``.mp4``."""
        suffix = source.suffix.lower() if source.suffix.lower() in set(containers) else ".mp4"
        return self.claim(out_dir, f"{source.stem}_stylized", suffix)


def output_path(source: Path, out_dir: Path, has_alpha: bool, avoid: set[Path],
                inodes: set[tuple[int, int]] = frozenset()) -> Path:
    """:meth:`OutputNames.image` for callers holding their own ``avoid``/``inodes`` sets (added to ``avoid``)."""
    names = OutputNames()
    names.avoid, names.inodes = avoid, set(inodes)
    return names.image(source, out_dir, has_alpha)


def inode(path: Path) -> tuple[int, int]:
    """(st_dev, st_ino): the file itself, whatever path or hard link names it."""
    st = path.stat()
    return st.st_dev, st.st_ino


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it replaces ``path`` in one step."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or ".")
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
