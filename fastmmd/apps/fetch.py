"""``fastmmd data NAME DIR``: training photos as a folder of JPEG files, from any Hugging Face image dataset.

``fastmmd data coco photos/ --limit 5000`` streams the first 5,000 photos of COCO's train split
(:data:`COCO`) from the Hugging Face Hub into ``photos/000000000.jpg``, ``photos/000000001.jpg``, ...;
then ``fastmmd fit --data.root photos/ ...`` trains on them. ``NAME`` is ``coco``, any Hub dataset
with an image column (``--split``, ``--column``, ``--subset``), or a local folder read with the
``imagefolder`` builder. Contracts:

* **resumable**: file ``i`` holds the ``i``-th image of the split; a rerun (after an interruption, or
  with a larger ``--limit``) skips the images already on disk, and every file is written whole
  (a temporary name, then a rename), so a file that exists is complete;
* JPEG bytes are written as they come; any other format is converted to RGB JPEG (``--quality``);
* a row Pillow cannot open is skipped with a count at the end, never written (a JPEG's pixels are
  not decoded here: a file truncated mid-image is skipped by training's reader with a warning);
* ``coco`` always means the Hub's COCO; any other ``NAME`` that is a folder is read from disk;
* offline (or the Hub unreachable), one line and exit 2 saying what to download and where to put it.

Nothing here imports torch; ``datasets`` is imported when the command runs.
"""

from __future__ import annotations

import io
import logging
import os
import socket
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from fastmmd.base.errors import UserError, one_line

#: The Hugging Face dataset ``fastmmd data coco`` reads: COCO 2017 (train 118k photos, val 5k) with an ``image`` column.
COCO = "detection-datasets/coco"
SUFFIX = ".jpg"
_DIGITS = 9
_JPEG_MAGIC = b"\xff\xd8\xff"
#: Exception names (anywhere in the cause chain) that mean "the Hub could not be reached".
_OFFLINE = ("ConnectionError", "Timeout", "OfflineModeIsEnabled", "NameResolutionError", "MaxRetryError",
            "ConnectTimeout", "ReadTimeout", "LocalEntryNotFoundError", "gaierror")


def image_name(index: int) -> str:
    """The file name of the ``index``-th image of the split: ``000000042.jpg``."""
    return f"{index:0{_DIGITS}d}{SUFFIX}"


def _done_prefix(folder: Path, limit: int | None) -> int:
    """How many images from the start of the split are already in ``folder`` (file 0, 1, ... all present)."""
    count = 0
    while (limit is None or count < limit) and (folder / image_name(count)).is_file():
        count += 1
    return count


def offline_error(name: str, folder: Path, err: BaseException) -> UserError | None:
    """The one-line error for a Hub that cannot be reached, or ``None`` if ``err`` is something else."""
    chain, seen = [], err
    while seen is not None and len(chain) < 20:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    names = " ".join(type(e).__name__ + " " + str(e)[:200] for e in chain)
    if not any(word in names for word in _OFFLINE) and not os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return None
    return offline_message(name, folder)


def offline_message(name: str, folder: Path) -> UserError:
    """What to download and where to put it, in one line, for ``fastmmd data NAME FOLDER`` without the Hub."""
    dataset = COCO if name == "coco" else name
    return UserError(f"cannot reach the Hugging Face Hub for {dataset!r} (offline?): run `fastmmd data {name} "
                     f"{folder}` on a machine with internet and copy {str(folder)!r} here, or put any folder of "
                     f"photos (JPEG/PNG, a few hundred or more; COCO's train2017.zip from cocodataset.org unzipped "
                     f"will do) at {str(folder)!r} and train with --data.root {folder}")


def hub_reachable() -> bool:
    """False when the Hub's host name does not resolve, or ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` is set:
    a quick answer instead of waiting out the Hub client's retries. True when unsure (a proxy does the lookup)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except (OSError, UnicodeError):
        return False
    return True


def open_stream(name: str, folder: Path, split: str = "train", column: str = "image",
                subset: str | None = None) -> Any:
    """The split as a stream (a ``datasets.IterableDataset``) of ``{column: {"bytes", "path"}}`` rows
    (images undecoded); ``folder`` is named in the offline message.

    Raises:
        UserError: the dataset, split or column does not exist, or the Hub cannot be reached.
    """
    import datasets  # heavy: only this command needs it

    dataset = COCO if name == "coco" else name
    local = Path(name).expanduser()
    if local.is_dir() and name != "coco" and local.resolve() == folder.resolve():
        raise UserError(f"the dataset folder {name!r} is DIR itself; give another DIR")
    if (name == "coco" or not local.is_dir()) and not hub_reachable():
        raise offline_message(name, folder)
    for logger in ("huggingface_hub", "datasets", "fsspec"):  # their retry and progress chatter: one line is the contract
        logging.getLogger(logger).setLevel(logging.ERROR)
    try:
        if local.is_dir() and name != "coco":
            stream = datasets.load_dataset("imagefolder", data_dir=str(local), split=split, streaming=True)
        else:
            stream = datasets.load_dataset(dataset, subset, split=split, streaming=True)
        columns = list(stream.features or {})
    except Exception as err:  # datasets raises many types (hub, file, split errors)
        raise offline_error(name, folder, err) or UserError(
            f"cannot load Hugging Face dataset {dataset!r} split {split!r}: {one_line(err)[:300]}") from None
    if columns and column not in columns:
        raise UserError(f"dataset {dataset!r} has no column {column!r}; --column must be one of {columns}")
    return stream.select_columns([column]).cast_column(column, datasets.Image(decode=False))


def jpeg_bytes(item: Any, quality: int = 90) -> bytes | None:
    """A row's image as JPEG bytes (JPEG input as it is, once Pillow has checked its header), or ``None`` if
    Pillow cannot open it."""
    from PIL import Image, UnidentifiedImageError

    data = item.get("bytes") if isinstance(item, dict) else None
    if data is None and isinstance(item, dict) and item.get("path"):
        try:
            data = Path(item["path"]).read_bytes()
        except OSError:
            return None
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            if data[:3] == _JPEG_MAGIC and img.format == "JPEG":
                img.verify()
                return data
            out = io.BytesIO()
            img.convert("RGB").save(out, "JPEG", quality=quality)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def fetch_images(name: str, folder: str | os.PathLike, split: str = "train", column: str = "image",
                 subset: str | None = None, limit: int | None = None, quality: int = 90,
                 progress: bool = True) -> dict[str, int]:
    """Writes the first ``limit`` images (all without a limit) of a dataset split into ``folder``.

    Returns:
        ``{"written": n, "present": n, "skipped": n}``: new files, files already there, undecodable rows.

    Raises:
        UserError: a bad ``limit``, an unwritable ``folder``, an unknown dataset/split/column, or no Hub.
    """
    from fastmmd.base.outputs import check_output_dir

    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, not {limit}")
    if not 1 <= quality <= 100:
        raise UserError(f"--quality must be 1-100, not {quality}")
    target = check_output_dir(folder, what="DIR")
    present = _done_prefix(target, limit)
    counts = {"written": 0, "present": present, "skipped": 0}
    if limit is not None and present >= limit:
        return counts
    stream = open_stream(name, target, split, column, subset)
    rows: Iterator[dict] = iter(stream.skip(present) if present else stream)
    from tqdm.auto import tqdm

    bar = tqdm(total=limit, initial=present, unit="img", desc=f"{target}", disable=not progress)
    index = present
    try:
        while limit is None or index < limit:
            try:
                row = next(rows)
            except StopIteration:
                break
            except Exception as err:  # a stream fails mid-way on the network
                raise offline_error(name, target, err) or UserError(
                    f"reading {name!r} failed after {index} images: {one_line(err)[:300]}") from None
            path = target / image_name(index)
            index += 1
            if path.is_file():  # written by an earlier run (beyond a gap)
                counts["present"] += 1
                bar.update()
                continue
            data = jpeg_bytes(row.get(column), quality)
            if data is None:
                counts["skipped"] += 1
                bar.update()
                continue
            partial = path.with_name(f".{path.name}.part")
            partial.write_bytes(data)
            os.replace(partial, path)
            counts["written"] += 1
            bar.update()
    finally:
        bar.close()
    return counts




