"""``fastmmd data paintings [STYLE ...] [DIR]``: the shipped styles' paintings, downloaded and checked.

The paintings are not in the repository (:mod:`fastmmd.base.paintings`); ``zoo.json`` records for
each a URL (the raw file of the public repository it came from, pinned to a commit), its SHA-256
and its size. This module fetches them with the standard library (``urllib``; proxies from the
usual environment variables) into :func:`~fastmmd.base.paintings.paintings_dir` (or ``DIR``),
where every style-image argument finds them by name. Contracts:

* **idempotent**: a painting already there with the recorded SHA-256 is kept, not fetched again;
  one that differs is fetched again and replaced;
* **resumable**: bytes arrive in ``.<file>.part`` beside the painting; an interrupted download
  resumes from there (an HTTP range request; a server that ignores it sends the whole file, which
  then replaces the part), and the painting appears under its name only once whole and checked;
* **verified**: a download without the recorded SHA-256 is deleted: one line, exit 2;
* **size-bounded**: never more than the recorded size is read (a larger answer is refused and deleted);
* **offline** (or any network error): one line naming the URL to fetch and where to put the file,
  and that any painting file works in its place; exit 2. Paintings fetched before it stay.

Nothing here imports torch.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastmmd.base.errors import UserError, did_you_mean, one_line
from fastmmd.base.manifest import file_sha256
from fastmmd.base.outputs import check_output_dir
from fastmmd.base.paintings import Painting, painting_problem, paintings_dir, shipped_paintings

#: Seconds a connection may stay silent before the download counts as failed.
TIMEOUT_S = 30.0
_BLOCK = 1 << 16
#: What ``urllib`` and ``http.client`` raise when the network fails (``URLError`` and ``HTTPError`` are OSErrors).
_NETWORK_ERRORS = (OSError, http.client.HTTPException, ValueError)

#: The function that opens a request: ``urllib.request.urlopen`` (tests put a fake one here).
urlopen: Callable[..., Any] = urllib.request.urlopen


def select_paintings(names: Sequence[str], folder: str | os.PathLike | None = None) -> list[Painting]:
    """The paintings ``names`` ask for (all of them for none, or ``all``), in the manifest's order.

    Raises:
        UserError: a name that is no shipped style's painting (with a "did you mean"); no zoo.
    """
    paintings = shipped_paintings(folder)
    if not paintings:
        raise UserError("the style zoo's manifest records no painting to download")
    wanted = [n.lower() for n in names]
    if not wanted or "all" in wanted:
        return list(paintings.values())
    for name in wanted:
        if name not in paintings:
            raise UserError(
                f"no shipped style's painting is called {name!r}{did_you_mean(name, paintings)} "
                f"(the paintings: {', '.join(paintings)})"
            )
    return [paintings[n] for n in dict.fromkeys(wanted)]


def offline_message(painting: Painting, path: Path, why: str) -> UserError:
    """The one line for a painting that cannot be downloaded: which URL, where the file goes, what else works."""
    return UserError(
        f"cannot download the painting {painting.name!r} ({why}): fetch {painting.url} on a machine "
        f"with internet and put it at {str(path)!r}, or pass any painting file instead of the name "
        "(--style FILE, --style-image FILE, --model.style_images '[FILE]')"
    )


def _fetch(painting: Painting, path: Path, on_bytes: Callable[[int], None]) -> None:
    """Downloads one painting to ``path`` through its ``.part`` file, checked (module docstring)."""
    part = path.with_name(f".{path.name}.part")
    start = part.stat().st_size if part.is_file() else 0
    # a whole (or over-long) part from an earlier run: kept if it checks, else started over
    if start > painting.bytes or (start == painting.bytes and file_sha256(part) != painting.sha256):
        part.unlink()
        start = 0
    if start < painting.bytes:
        start = _transfer(painting, path, part, start, on_bytes)
    if start < painting.bytes:
        raise offline_message(
            painting,
            path,
            f"the connection closed after {start} of {painting.bytes} bytes; run the command again to resume",
        )
    if file_sha256(part) != painting.sha256:
        part.unlink()
        raise UserError(
            f"the download of painting {painting.name!r} from {painting.url} does not have the SHA-256 "
            f"zoo.json records; deleted it. Run the command again, or fetch the file yourself and put "
            f"it at {str(path)!r}"
        )
    os.replace(part, path)


def _transfer(painting: Painting, path: Path, part: Path, start: int, on_bytes: Callable[[int], None]) -> int:
    """Appends the painting's bytes from ``start`` to ``part``; returns how many ``part`` holds. Reads at
    most the recorded size (one byte more tells a larger file, which is refused and deleted)."""
    from fastmmd import __version__

    headers = {"User-Agent": f"fastmmd/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(painting.url, headers=headers)
    try:
        response = urlopen(request, timeout=TIMEOUT_S)
    except _NETWORK_ERRORS as err:
        raise offline_message(painting, path, _reason(err)) from None
    with response:
        if start and getattr(response, "status", 200) != 206:  # the server sends the whole file
            start = 0
        elif start:
            on_bytes(start)
        declared = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
        if declared and declared.isdigit() and start + int(declared) > painting.bytes:
            part.unlink(missing_ok=True)
            raise UserError(
                f"the server sends {start + int(declared)} bytes for painting {painting.name!r}, more "
                f"than the {painting.bytes} zoo.json records; nothing kept ({painting.url})"
            )
        held = start
        try:
            with open(part, "ab" if start else "wb") as out:
                while held <= painting.bytes:
                    try:
                        block = response.read(min(_BLOCK, painting.bytes + 1 - held))
                    except _NETWORK_ERRORS as err:
                        raise offline_message(
                            painting,
                            path,
                            f"{_reason(err)} after {held} of {painting.bytes} bytes; run the command again to resume",
                        ) from None
                    if not block:
                        break
                    out.write(block)
                    held += len(block)
                    on_bytes(len(block))
        except OSError as err:  # writing: a full disk, a folder taken away
            raise UserError(f"cannot write {str(part)!r}: {err.strerror or err}") from None
    if held > painting.bytes:
        part.unlink()
        raise UserError(
            f"the download of painting {painting.name!r} is larger than the {painting.bytes} bytes "
            f"zoo.json records; deleted it ({painting.url})"
        )
    return held


def _reason(err: BaseException) -> str:
    """A short reason for a network error: ``HTTP 404``, ``Name or service not known``, ``timed out``."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code}"
    reason = getattr(err, "reason", None) or err
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return one_line(text)[:120] or type(err).__name__


def download_paintings(
    names: Sequence[str] = (), folder: str | os.PathLike | None = None, progress: bool = True
) -> dict[str, list[str]]:
    """Downloads the shipped styles' paintings ``names`` (all for none) into ``folder`` (default:
    :func:`~fastmmd.base.paintings.paintings_dir`), as the module docstring says.

    Returns:
        ``{"downloaded": [style names], "present": [style names]}``.

    Raises:
        UserError: an unknown name, an unwritable folder, a network error, a wrong SHA-256 or a
            larger file than recorded: one line. Paintings downloaded before the failure stay.
    """
    chosen = select_paintings(names)
    target = check_output_dir(Path(folder).expanduser() if folder is not None else paintings_dir(), what="DIR")
    done: dict[str, list[str]] = {"downloaded": [], "present": []}
    missing = []
    for painting in chosen:
        if painting_problem(target / painting.file, painting) is None:
            done["present"].append(painting.name)
        else:
            missing.append(painting)
    if not missing:
        return done
    from tqdm.auto import tqdm

    bar = tqdm(
        total=sum(p.bytes for p in missing),
        unit="B",
        unit_scale=True,
        desc="paintings",
        leave=False,
        disable=not progress,
    )
    try:
        for painting in missing:
            bar.set_postfix_str(painting.file, refresh=False)
            path = target / painting.file
            if path.is_symlink() or path.is_dir():
                raise UserError(f"{str(path)!r} is a link or a folder, not a painting file: remove it first")
            _fetch(painting, path, bar.update)
            done["downloaded"].append(painting.name)
    finally:
        bar.close()
    return done
