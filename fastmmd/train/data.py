"""Content images for feed-forward training: folders, file lists and Hugging Face datasets.

Johnson et al. (2016) train on COCO crops of 256 px; any folder of photos works the same way. Setup
only lists file names (never pixels, so COCO's 118k list quickly), images are decoded in the workers with
:func:`fastmmd.base.images.open_image` (EXIF rotation, every mode to RGB, bomb limit) and an unreadable
file never stops a run: it is skipped with one :class:`SkippedImageWarning` and the next readable
image takes its place, so every batch stays full.

Resume is exact. :class:`~fastmmd.train.sampling.ResumableSampler` draws epoch ``e``'s order from
``torch.randperm`` seeded with ``seed + e``, shards it by rank like ``DistributedSampler`` and starts
mid-epoch; the training loader is stateful (:class:`~fastmmd.train.sampling.ResumableLoader`), so Lightning
saves its position (epoch, batches done) in every checkpoint and hands it back on resume, and random
crops and flips are drawn from a generator seeded by (seed, epoch, position), so a run restored from
a mid-epoch checkpoint sees the same pixels as an uninterrupted one. The sampler shards itself and is
a ``DistributedSampler``, which Lightning never wraps again, so ``use_distributed_sampler`` may be
either value (fastmmd's CLI sets it to False). Under DDP every rank runs the whole (small)
validation set.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torchvision.transforms.v2 import functional as TF

from fastmmd.base.errors import ImageError, UserError, one_line
from fastmmd.base.images import IMAGE_SUFFIXES, decode_image, open_image, pil_to_tensor
from fastmmd.train.sampling import EpochKeys, ResumableLoader, ResumableSampler, StreamLoader

#: Suffixes listed from folders (matched case-insensitively).
_MIX = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D)  # odd constants that spread (seed, epoch, index) over 63 bits


_SPLITS = {"train": "training", "val": "validation", "predict": "prediction"}


class SkippedImageWarning(UserWarning):
    """An unreadable training image was skipped (the message names the file and the reason)."""


def list_images(root: str | os.PathLike) -> list[str]:
    """All images under ``root`` (recursive, sorted, suffixes in :data:`IMAGE_SUFFIXES`, any case).

    Only names are read, never pixels, and paths stay strings (cheaper than ``Path`` objects when a
    folder holds COCO's 118k photos).

    Raises:
        UserError: ``root`` is missing, not a folder, or holds no image.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise UserError(f"image folder {str(folder)!r} does not exist or is not a folder; check --data.root")
    paths = [os.path.join(d, f) for d, files in _walk_once(folder) for f in files
             if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")]
    if not paths:
        raise UserError(f"no images in {str(folder)!r}: searched its sub-folders for {', '.join(IMAGE_SUFFIXES)} (any case)")
    return sorted(paths)


def _walk_once(root: Path) -> Iterator[tuple[str, list[str]]]:
    """``os.walk(followlinks=True)`` that enters each real folder once: a symlink back to a folder
    already seen (``ln -s . loop``) is skipped, so links are followed but can never loop."""
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []  # os.walk descends into what is left in ``dirs``
            continue
        seen.add((st.st_dev, st.st_ino))
        yield folder, files


def read_file_list(path: str | os.PathLike) -> list[str]:
    """Paths listed in a text file, one per line; relative ones are taken from the list's folder.

    Blank lines and ``#`` comments are ignored. Listed files are not opened here: a missing one is
    skipped with a warning when it is first loaded.

    Raises:
        UserError: the list is missing or names no file.
    """
    listing = Path(path).expanduser()
    if not listing.is_file():
        raise UserError(f"file list {str(listing)!r} does not exist; check --data.file_list")
    lines = (line.split("#", 1)[0].strip() for line in listing.read_text(encoding="utf-8").splitlines())
    paths = [str(p if p.is_absolute() else listing.parent / p) for p in (Path(s).expanduser() for s in lines if s)]
    if not paths:
        raise UserError(f"file list {str(listing)!r} names no image (one path per line, '#' starts a comment)")
    return paths


class FileSource:
    """Images that are files on disk."""

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.paths = [os.fspath(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        return open_image(self.paths[index])[0]

    def name(self, index: int) -> str:
        return self.paths[index]


class HFSource:
    """Images in one column of a map-style Hugging Face dataset, decoded here rather than by ``datasets``."""

    def __init__(self, dataset: Any, column: str) -> None:
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int) -> Image.Image:
        return _decode_hf(self.dataset[index][self.column], self.name(index))

    def name(self, index: int) -> str:
        return f"{self.column}[{index}]"


def _decode_hf(item: dict, name: str) -> Image.Image:
    """A ``datasets.Image(decode=False)`` value ({"path", "bytes"}) -> RGB Pillow image."""
    if item.get("bytes"):
        return decode_image(item["bytes"], item.get("path") or name)[0]
    if item.get("path"):
        return open_image(item["path"])[0]
    raise ImageError(f"{name!r} holds neither image bytes nor a path")


def load_hf(name: str, split: str, column: str, streaming: bool) -> Any:
    """Loads a Hugging Face dataset (or a local folder through ``imagefolder``) with undecoded images.

    Raises:
        UserError: the dataset, split or column cannot be found.
    """
    import datasets  # heavy; only this source needs it

    local = Path(name).expanduser()
    try:
        if local.is_dir():
            ds = datasets.load_dataset("imagefolder", data_dir=str(local), split=split, streaming=streaming)
        else:
            ds = datasets.load_dataset(name, split=split, streaming=streaming)
    except Exception as err:  # datasets raises many types (hub, file, split errors); all mean "cannot load"
        raise UserError(f"cannot load Hugging Face dataset {name!r} split {split!r}: {one_line(err)[:300]}") from None
    columns = list(ds.features or {})
    if column not in columns:
        raise UserError(f"Hugging Face dataset {name!r} has no column {column!r}; --data.hf_image_column must be one of {columns}")
    return ds.select_columns([column]).cast_column(column, datasets.Image(decode=False))


def _augment_seed(seed: int, epoch: int, index: int) -> int:
    return (seed * _MIX[0] + (epoch + 1) * _MIX[1] + (index + 1) * _MIX[2]) % (2**63 - 1)


def transform(img: Image.Image, size: int, mode: str, flip: bool = False, generator: torch.Generator | None = None,
              zoom: float = 1.0) -> Tensor:
    """Resizes the shorter side to ``size``, then crops ``size``² -> float (3, size, size) in [0, 1].

    ``mode="train"`` first resizes the shorter side to ``size · u``, u ~ U(1, ``zoom``), so that a
    crop's top and bottom rows are seldom the photo's own (see ``StyleDataModule``'s ``zoom``);
    then crops at random (and flips half the images if ``flip``), drawing from
    ``generator``; ``"val"`` crops the centre; ``"predict"`` keeps the whole resized image.
    """
    if mode == "train" and zoom > 1.0:
        scale = 1.0 + (zoom - 1.0) * float(torch.rand((), generator=generator))
        img = TF.resize(img, [round(size * scale)], antialias=True)
    else:
        img = TF.resize(img, [size], antialias=True)
    if mode == "train":
        w, h = img.size
        top = int(torch.randint(h - size + 1, (1,), generator=generator))
        left = int(torch.randint(w - size + 1, (1,), generator=generator))
        img = TF.crop(img, top, left, size, size)
        if flip and float(torch.rand((), generator=generator)) < 0.5:
            img = TF.horizontal_flip(img)
    elif mode == "val":
        img = TF.center_crop(img, [size, size])
    return pil_to_tensor(img)


def _read_or_skip(load: Callable[[], Image.Image], skipped: Callable[[], str], dataset: Any, epoch: int,
                  position: int) -> Tensor | None:
    """The one read-or-skip rule of both datasets: ``load()`` the image and ``transform`` it with
    crops seeded by (seed, epoch, position); an unreadable image gives None and one
    :class:`SkippedImageWarning` (``skipped()`` records it and says how many so far)."""
    try:
        img = load()
    except (ImageError, OSError) as err:
        warnings.warn(f"skipped unreadable image ({skipped()}): {one_line(err)}", SkippedImageWarning, stacklevel=3)
        return None
    seed = _augment_seed(dataset.seed, epoch, position)
    gen = torch.Generator().manual_seed(seed) if dataset.mode == "train" else None
    return transform(img, dataset.image_size, dataset.mode, dataset.flip, gen, dataset.zoom)


class ImageDataset(Dataset):
    """Map-style dataset over ``indices`` of a source; unreadable items are replaced by the next readable one.

    Items: a tensor (train/val) or ``(tensor, name)`` (predict). A train key may be ``(position,
    epoch)`` so the crop is a function of (seed, epoch, position) and survives a resume.

    ``skipped`` counts distinct unreadable files. The flags live in shared memory, so the count
    includes what DataLoader workers found (on this rank: DDP ranks count separately) and a file
    found bad once is not decoded again.
    """

    def __init__(self, source: FileSource | HFSource, indices: Sequence[int], image_size: int, mode: str = "train",
                 flip: bool = True, seed: int = 0, zoom: float = 1.0) -> None:
        self.source, self.indices = source, list(indices)
        self.image_size, self.mode, self.flip, self.seed, self.zoom = image_size, mode, flip, seed, zoom
        self.bad = torch.zeros(len(self.indices), dtype=torch.uint8).share_memory_()

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def skipped(self) -> int:
        return int(self.bad.sum())

    def __getitem__(self, key: int | tuple[int, int]) -> Tensor | tuple[Tensor, str]:
        position, epoch = key if isinstance(key, tuple) else (key, 0)
        n = len(self.indices)
        for step in range(n):
            j = (position + step) % n
            if self.bad[j]:
                continue
            index = self.indices[j]

            def skipped() -> str:
                self.bad[j] = 1
                return f"{self.skipped} so far"

            image = _read_or_skip(lambda: self.source.load(index), skipped, self, epoch, position)
            if image is None:
                continue
            return (image, self.source.name(index)) if self.mode == "predict" else image
        raise UserError(self._unreadable_message())

    def _unreadable_message(self) -> str:
        """Every item of this split is unreadable: count the rest of the source too, so the message
        gives the number of files really looked at (stops at the first readable one)."""
        n, first = len(self.indices), self.source.name(self.indices[0])
        mine = set(self.indices)
        for index in range(len(self.source)):
            if index in mine:
                continue
            try:
                self.source.load(index)
            except (ImageError, OSError):
                continue
            return (f"none of the {n} {_SPLITS.get(self.mode, self.mode)} images can be read (first: {first!r}), "
                    f"though others can; replace them or change --data.val_size/--data.seed")
        return f"none of the {len(self.source)} images can be read (first: {first!r})"


class PairedDataset(Dataset):
    """Photos paired with paintings, for an arbitrary-style network (:mod:`fastmmd.model.arbitrary`).

    Item ``(position, epoch)`` is ``(photo, painting)``: the photo is ``photos``' item, the painting
    is drawn uniformly from ``paintings`` with a generator seeded by (seed, epoch, position), and
    cropped with that seed too, so a resumed run sees the same pairs as an uninterrupted one (the
    photo order's rules, :class:`ImageDataset`). In ``val`` mode photo j is paired with painting
    j mod K, centre-cropped: fixed pairs for comparable validations.
    """

    def __init__(self, photos: ImageDataset, paintings: ImageDataset, seed: int = 0) -> None:
        self.photos, self.paintings, self.seed = photos, paintings, seed

    def __len__(self) -> int:
        return len(self.photos)

    @property
    def skipped(self) -> int:
        return self.photos.skipped + self.paintings.skipped

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        position, epoch = key if isinstance(key, tuple) else (key, 0)
        photo = self.photos[(position, epoch)]
        if self.photos.mode != "train":
            return photo, self.paintings[position % len(self.paintings)]
        draw = torch.Generator().manual_seed(_augment_seed(self.seed + 1, epoch, position))
        index = int(torch.randint(len(self.paintings), (1,), generator=draw))
        # the painting's crop is seeded by (its index, a count unique to this photo and epoch)
        return photo, self.paintings[(index, epoch * len(self.photos) + position)]


class StreamDataset(IterableDataset):
    """A streamed Hugging Face dataset, decoded and transformed; unreadable examples are dropped with a warning.

    The epoch lives in shared memory so persistent workers reshuffle (``datasets`` mixes it into the
    shuffle seed). ``skipped`` is per process here: workers count their own.
    """

    def __init__(self, stream: Any, column: str, image_size: int, mode: str, flip: bool, seed: int,
                 zoom: float = 1.0) -> None:
        self.stream, self.column, self.image_size, self.mode, self.flip, self.seed = stream, column, image_size, mode, flip, seed
        self.zoom = zoom
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.skipped = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(epoch)

    def __iter__(self) -> Iterator[Tensor | tuple[Tensor, str]]:
        epoch = int(self.epoch)
        self.stream.set_epoch(epoch)
        for i, example in enumerate(self.stream):
            name = f"{self.column}[{i}]"

            def skipped() -> str:
                self.skipped += 1
                return f"{self.skipped} so far in this process"

            image = _read_or_skip(lambda: _decode_hf(example[self.column], name), skipped, self, epoch, i)
            if image is None:
                continue
            yield (image, name) if self.mode == "predict" else image


class StyleDataModule(pl.LightningDataModule):
    """Content images for ``fastmmd fit``: one source, a held-out validation set, exact resume.

    Give exactly one of ``root``, ``file_list`` or ``hf_dataset``. Validation images are the first
    ``val_size`` of a shuffle seeded by ``seed`` and are taken out of the training set (or come from
    ``val_root``). The training sampler shards by rank itself (Lightning leaves it in place whatever
    ``use_distributed_sampler`` says). ``skipped`` counts unreadable files found so far on this rank.

    Args:
        root: Folder of images, searched recursively (.jpg .jpeg .png .webp .bmp .tif .tiff, any case); a COCO
            ``train2014``/``train2017`` folder works as it is.
        file_list: Text file with one image path per line (relative to the list's folder, ``#`` comments).
        hf_dataset: Hugging Face dataset name, or a local folder read with the ``imagefolder`` builder
            (works offline).
        hf_split: Split of ``hf_dataset``.
        hf_image_column: Column of ``hf_dataset`` holding the images.
        streaming: Stream ``hf_dataset`` instead of downloading it. The order is then a shuffle
            buffer of 1000 (reshuffled each epoch) and ranks and workers split the stream's shards;
            resuming mid-epoch restarts that epoch from its beginning (not exact), and an epoch has
            no known length, so set ``trainer.max_steps``.
        image_size: Training crops are ``image_size``² after resizing the shorter side to it.
        batch_size: Images per batch and rank.
        num_workers: DataLoader worker processes (0 decodes in the main process).
        val_size: Held-out validation images (0: no validation).
        val_root: Folder of validation images instead of holding some out.
        flip: Flip half the training crops horizontally.
        zoom: Resize each training photo's shorter side to ``image_size`` times a random factor in
            [1, zoom] before cropping. With ``1`` the crop of a landscape photo always spans its full
            height, so the crop's top row is always the photo's top (mostly sky) and its bottom row
            the photo's bottom; 1.25 decouples the crop's borders from the photo's at a small change
            of scale. Measured alone it thinned but did not remove the top-edge band, whose cause
            was the style's scale (docs/benchmarks.md, "Edge band and lattice").
        pin_memory: Pin batches for faster copies to the GPU (only used when CUDA is available).
        persistent_workers: Keep workers between epochs (only when ``num_workers > 0``).
        seed: Seeds the validation split, every epoch's order and the crops.
        painting_root: Folder of paintings (searched like ``root``) to pair with the photos, for an
            arbitrary-style network (``model.conditioning: [arbitrary]``): each training photo
            draws one (:class:`PairedDataset`); the first ``painting_val_size`` of a seeded shuffle
            are held out for validation unless ``painting_val_root`` is given.
        painting_hf_dataset: A Hugging Face dataset of paintings instead of ``painting_root`` (e.g. a
            WikiArt dataset; its ``painting_hf_split`` and ``painting_hf_image_column``).
        painting_val_root: Folder of validation paintings (e.g. held-out paintings never trained on).
        painting_val_size: Validation paintings (photo j of the validation set is paired with painting
            j mod ``painting_val_size``).
        painting_size: Paintings are cropped to ``painting_size``² after resizing their shorter side to
            ``painting_size`` times a random factor in [1, ``painting_zoom``] (training) or to
            ``painting_size`` (validation).
        painting_zoom: See ``painting_size``: larger zooms show the network finer brush strokes.
    """

    def __init__(self, root: str | None = None, file_list: str | None = None, hf_dataset: str | None = None,
                 hf_split: str = "train", hf_image_column: str = "image", streaming: bool = False,
                 image_size: int = 256, batch_size: int = 4, num_workers: int = 2, val_size: int = 8,
                 val_root: str | None = None, flip: bool = True, zoom: float = 1.25, pin_memory: bool = True,
                 persistent_workers: bool = True, seed: int = 0, painting_root: str | None = None,
                 painting_hf_dataset: str | None = None, painting_hf_split: str = "train",
                 painting_hf_image_column: str = "image", painting_val_root: str | None = None, painting_val_size: int = 4,
                 painting_size: int = 256, painting_zoom: float = 1.5) -> None:
        super().__init__()
        if painting_root and painting_hf_dataset:
            raise UserError("give one of --data.painting_root or --data.painting_hf_dataset, not both")
        if (painting_root or painting_hf_dataset) and streaming:
            raise UserError("--data.streaming cannot pair photos with paintings; use a map-style dataset")
        if not 1.0 <= painting_zoom <= 4.0:
            raise UserError(f"--data.painting_zoom must be between 1 and 4, not {painting_zoom}")
        for flag, value, low in (("painting_size", painting_size, 8), ("painting_val_size", painting_val_size, 1)):
            if value < low:
                raise UserError(f"--data.{flag} must be at least {low}, not {value}")
        for flag, value in (("painting_root", painting_root), ("painting_val_root", painting_val_root)):
            if value and not Path(value).expanduser().is_dir():
                raise UserError(f"--data.{flag} {value!r} does not exist or is not a folder")
        self.painting_root, self.painting_hf_dataset, self.painting_val_root = painting_root, painting_hf_dataset, painting_val_root
        self.painting_hf_split, self.painting_hf_image_column = painting_hf_split, painting_hf_image_column
        self.painting_val_size, self.painting_size, self.painting_zoom = painting_val_size, painting_size, painting_zoom
        given = [f"--data.{k}" for k, v in (("root", root), ("file_list", file_list), ("hf_dataset", hf_dataset)) if v]
        if len(given) != 1:
            raise UserError(f"give exactly one of --data.root, --data.file_list or --data.hf_dataset (got {', '.join(given) or 'none'})")
        if streaming and not hf_dataset:
            raise UserError("--data.streaming only applies to --data.hf_dataset")
        if not 1.0 <= zoom <= 4.0:
            raise UserError(f"--data.zoom must be between 1 and 4, not {zoom}")
        for flag, value, low in (("image_size", image_size, 8), ("batch_size", batch_size, 1), ("num_workers", num_workers, 0), ("val_size", val_size, 0)):
            if value < low:
                raise UserError(f"--data.{flag} must be at least {low}, not {value}")
        for flag, value in (("root", root), ("val_root", val_root)):
            if value and not Path(value).expanduser().is_dir():
                raise UserError(f"--data.{flag} {value!r} does not exist or is not a folder")
        if file_list and not Path(file_list).expanduser().is_file():
            raise UserError(f"--data.file_list {file_list!r} does not exist")
        self.save_hyperparameters()
        self.root, self.file_list, self.hf_dataset, self.hf_split, self.hf_image_column = root, file_list, hf_dataset, hf_split, hf_image_column
        self.streaming, self.image_size, self.batch_size, self.num_workers = streaming, image_size, batch_size, num_workers
        self.val_size, self.val_root, self.flip, self.seed = val_size, val_root, flip, seed
        self.zoom = zoom
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        self.train_set: ImageDataset | StreamDataset | None = None
        self.val_set: ImageDataset | StreamDataset | None = None
        self.predict_set: ImageDataset | StreamDataset | None = None

    # ---------------------------------------------------------------- sources
    def setup(self, stage: str | None = None) -> None:
        """Lists the source (names only) and splits off the validation set; runs once."""
        if self.predict_set is not None:
            return
        size, flip, seed = self.image_size, self.flip, self.seed
        if self.streaming:
            stream = load_hf(self.hf_dataset, self.hf_split, self.hf_image_column, streaming=True)
            col, held = self.hf_image_column, (0 if self.val_root else self.val_size)
            train = stream.skip(held).shuffle(seed=seed, buffer_size=1000)
            if self._world_size > 1:
                from datasets.distributed import split_dataset_by_node
                train = split_dataset_by_node(train, rank=self._rank, world_size=self._world_size)
            self.train_set = StreamDataset(train, col, size, "train", flip, seed, self.zoom)
            self.val_set = StreamDataset(stream.take(held), col, size, "val", False, seed) if held else None
            self.predict_set = StreamDataset(stream, col, size, "predict", False, seed)
        else:
            if self.hf_dataset:
                source: FileSource | HFSource = HFSource(load_hf(self.hf_dataset, self.hf_split, self.hf_image_column, False), self.hf_image_column)
            else:
                source = FileSource(list_images(self.root) if self.root else read_file_list(self.file_list))
            everything = list(range(len(source)))
            held = [] if self.val_root else self._held_out(len(source))
            train = sorted(set(everything) - set(held))
            self.train_set = ImageDataset(source, train, size, "train", flip, seed, self.zoom)
            self.val_set = ImageDataset(source, held, size, "val", seed=seed) if held else None
            self.predict_set = ImageDataset(source, everything, size, "predict", seed=seed)
        if self.val_root and self.val_size:
            val_source = FileSource(list_images(self.val_root))
            self.val_set = ImageDataset(val_source, sorted(self._held_out(len(val_source))), size, "val", seed=seed)
        if self.painting_root or self.painting_hf_dataset:
            self._pair_with_paintings()

    def _pair_with_paintings(self) -> None:
        """Wraps the training and validation photos in :class:`PairedDataset` (``painting_root``)."""
        if self.painting_hf_dataset:
            source: FileSource | HFSource = HFSource(load_hf(self.painting_hf_dataset, self.painting_hf_split,
                                                             self.painting_hf_image_column, False),
                                                     self.painting_hf_image_column)
        else:
            source = FileSource(list_images(self.painting_root))
        order = torch.randperm(len(source), generator=torch.Generator().manual_seed(self.seed + 1)).tolist()
        if self.painting_val_root:
            val_source: FileSource | HFSource = FileSource(list_images(self.painting_val_root))
            val, train = list(range(len(val_source)))[: self.painting_val_size], list(range(len(source)))
        else:
            val_source, val, train = source, sorted(order[: self.painting_val_size]), sorted(order[self.painting_val_size:])
            if not train:
                raise UserError(f"only {len(source)} paintings in data.painting_root and {self.painting_val_size} held out "
                                "for validation; add paintings, lower --data.painting_val_size or give --data.painting_val_root")
        paintings = ImageDataset(source, train, self.painting_size, "train", True, self.seed + 1, self.painting_zoom)
        self.train_set = PairedDataset(self.train_set, paintings, self.seed)
        if self.val_set is not None:
            val_paintings = ImageDataset(val_source, val, self.painting_size, "val", seed=self.seed)
            self.val_set = PairedDataset(self.val_set, val_paintings, self.seed)

    def _held_out(self, n: int) -> list[int]:
        """The first ``val_size`` indices of a permutation seeded by ``seed`` (sorted)."""
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        return sorted(order[: min(self.val_size, n)])

    @property
    def skipped(self) -> int:
        """Unreadable files skipped so far on this rank (workers included, except when streaming)."""
        return sum(getattr(d, "skipped", 0) for d in {id(d): d for d in (self.train_set, self.val_set, self.predict_set) if d is not None}.values())

    # ---------------------------------------------------------------- trainer (public properties only)
    @property
    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    @property
    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.num_workers
        return {"num_workers": workers, "pin_memory": self.pin_memory and torch.cuda.is_available(),
                "persistent_workers": self.persistent_workers and workers > 0}

    # ---------------------------------------------------------------- loaders
    def train_dataloader(self) -> DataLoader:
        """Shuffled, rank-sharded, full batches; resumes mid-epoch exactly (not when streaming)."""
        self.setup("fit")
        if isinstance(self.train_set, StreamDataset):
            loader = StreamLoader(self.train_set, batch_size=self.batch_size, drop_last=True, **self._loader_kwargs())
            loader.epoch_of = lambda: self.trainer.current_epoch if self.trainer is not None else 0
            return loader
        if len(self.train_set) < self.batch_size * self._world_size:
            raise UserError(f"only {len(self.train_set)} training images ({len(self.predict_set)} found, {len(self.predict_set) - len(self.train_set)} "
                            f"held out for validation); need at least batch_size x devices = {self.batch_size * self._world_size}: "
                            "add images or lower --data.val_size or --data.batch_size")
        sampler = ResumableSampler(len(self.train_set), self.seed, self._rank, self._world_size, drop_last=True,
                                   batch_size=self.batch_size)
        return ResumableLoader(self.train_set, batch_size=self.batch_size, sampler=EpochKeys(sampler), drop_last=True,
                               **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader | list:
        """The held-out images in a fixed order, centre-cropped; ``[]`` when ``val_size`` is 0."""
        self.setup("validate")
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=max(1, min(self.val_size, self.batch_size)), shuffle=False,
                          **self._loader_kwargs())

    def test_dataloader(self) -> DataLoader | list:
        """Same as :meth:`val_dataloader`."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """Every image of the source in order as ``(image (1, 3, H, W), [name])`` batches of one.

        Images keep their aspect ratio (shorter side resized to ``image_size``, the scale the network
        was trained at), so batches hold one image. Names are file paths, or ``column[index]`` for
        Hugging Face datasets. Under DDP rank ``r`` predicts images ``r, r + world_size, ...``.
        """
        self.setup("predict")
        kwargs = self._loader_kwargs() | {"persistent_workers": False}
        if isinstance(self.predict_set, StreamDataset):
            return DataLoader(self.predict_set, batch_size=1, **kwargs)
        order = list(range(len(self.predict_set)))[self._rank::self._world_size]
        return DataLoader(self.predict_set, batch_size=1, sampler=order, **kwargs)
