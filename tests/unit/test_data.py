"""Data sources, corrupt-file skipping, image modes, the validation split and exact-resume sampling
(under a Lightning Trainer: tests/integration/test_data.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from conftest import synthetic_image, write_images
from PIL import Image

from fastmmd.base.errors import UserError
from fastmmd.train.data import (
    FileSource,
    ImageDataset,
    SkippedImageWarning,
    StyleDataModule,
    list_images,
    read_file_list,
)
from fastmmd.train.sampling import EpochKeys, ResumableLoader, ResumableSampler

S = 16  # image_size used throughout: tiny, so tests stay fast


def batches(loader) -> list[torch.Tensor]:
    return [b for b in loader]


# ---------------------------------------------------------------- sources
def test_folder_listing_is_recursive_case_insensitive_and_sorted(tmp_path: Path) -> None:
    img = synthetic_image(20, 16)
    for rel in ["a/b/deep.JPG", "a/x.jpeg", "y.png", "c/z.webp", "c/w.bmp", "c/UPPER.PNG"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(tmp_path / rel, format={"JPG": "JPEG", "JPEG": "JPEG"}.get(rel.rsplit(".", 1)[1].upper(), None))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "c" / ".hidden.jpg").write_bytes(b"")
    found = list_images(tmp_path)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in found] == sorted(
        ["a/b/deep.JPG", "a/x.jpeg", "y.png", "c/z.webp", "c/w.bmp", "c/UPPER.PNG"])
    dm = StyleDataModule(root=str(tmp_path), image_size=S, batch_size=2, num_workers=0, val_size=2)
    dm.setup("fit")
    got = batches(dm.train_dataloader())  # 6 images, 2 held out
    assert [b.shape for b in got] == [(2, 3, S, S)] * 2 and got[0].dtype == torch.float32


def test_folder_links_are_followed_but_each_folder_is_read_once(tmp_path: Path) -> None:
    """``ln -s . a; ln -s . b`` used to make the walk loop forever (issue 8)."""
    write_images(tmp_path / "photos", 2)
    (tmp_path / "photos" / "a").symlink_to(".")
    (tmp_path / "photos" / "b").symlink_to(".")
    (tmp_path / "photos" / "up").symlink_to("..")
    (tmp_path / "elsewhere").mkdir()
    write_images(tmp_path / "elsewhere", 1, start=5)
    (tmp_path / "photos" / "linked").symlink_to(tmp_path / "elsewhere")  # a link to a new folder is followed
    found = [Path(p).name for p in list_images(tmp_path / "photos")]
    assert sorted(found) == ["img_000.png", "img_001.png", "img_005.png"]


def test_unreadable_split_counts_every_file_looked_at(tmp_path: Path) -> None:
    make_bad_files(tmp_path)  # 4 unreadable files
    source = FileSource(list_images(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        with pytest.raises(UserError, match="none of the 4 images can be read"):
            ImageDataset(source, [0, 1], S, "val")[0]
        write_images(tmp_path, 1)
        source = FileSource(list_images(tmp_path))
        with pytest.raises(UserError, match="none of the 2 validation images can be read.*others can"):
            ImageDataset(source, [1, 2], S, "val")[0]  # img_000.png sorts first and reads


def test_file_list_resolves_relative_paths_and_skips_comments(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 5)
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text(f"# training images\n../imgs/{paths[0].name}\n\n{paths[1]}  # absolute\n../imgs/{paths[2].name}\n"
                       f"../imgs/{paths[3].name}\n../imgs/{paths[4].name}\n")
    assert [Path(p).resolve() for p in read_file_list(listing)] == [p.resolve() for p in paths]
    dm = StyleDataModule(file_list=str(listing), image_size=S, batch_size=2, num_workers=0, val_size=1)
    dm.setup("fit")
    assert [b.shape for b in dm.train_dataloader()] == [(2, 3, S, S)] * 2


@pytest.fixture
def offline_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local imagefolder, with the datasets cache in tmp and the hub switched off."""
    import datasets  # a core dependency: never skipped
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    folder = tmp_path / "hf"
    write_images(folder, 6)
    return folder


def test_hf_imagefolder_offline(offline_hf: Path) -> None:
    dm = StyleDataModule(hf_dataset=str(offline_hf), image_size=S, batch_size=2, num_workers=0, val_size=2)
    dm.setup("fit")
    assert [b.shape for b in dm.train_dataloader()] == [(2, 3, S, S)] * 2
    assert [b.shape for b in dm.val_dataloader()] == [(2, 3, S, S)]
    images, names = zip(*dm.predict_dataloader())
    assert len(images) == 6 and list(names[0]) == ["image[0]"]
    # the same pixels as reading the files directly (imagefolder keeps file order)
    direct = ImageDataset(FileSource(sorted(offline_hf.iterdir())), range(6), S, "predict")
    assert torch.equal(images[3][0], direct[3][0])


def test_hf_streaming_local_folder(offline_hf: Path) -> None:
    dm = StyleDataModule(hf_dataset=str(offline_hf), streaming=True, image_size=S, batch_size=2, num_workers=0, val_size=2)
    dm.setup("fit")
    assert [b.shape for b in dm.train_dataloader()] == [(2, 3, S, S)] * 2
    assert sum(len(b) for b in dm.val_dataloader()) == 2


def test_hf_missing_column_is_user_error(offline_hf: Path) -> None:
    dm = StyleDataModule(hf_dataset=str(offline_hf), hf_image_column="picture", num_workers=0)
    with pytest.raises(UserError, match="no column 'picture'"):
        dm.setup("fit")


# ---------------------------------------------------------------- unreadable files and image modes
def make_bad_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.png").write_text("this is not a PNG")
    (folder / "noise.webp").write_bytes(torch.randint(0, 256, (500,), generator=torch.Generator().manual_seed(0)).to(torch.uint8).numpy().tobytes())
    synthetic_image(64, 48).save(folder / "full.jpg", quality=95)
    data = (folder / "full.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "full.jpg").unlink()
    return [folder / n for n in ("noise.webp", "text.png", "truncated.jpg", "zero.jpg")]


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_files_are_skipped_with_one_warning_each_and_full_batches(tmp_path: Path, workers: int) -> None:
    write_images(tmp_path / "data", 6)
    bad = make_bad_files(tmp_path / "data")
    dm = StyleDataModule(root=str(tmp_path / "data"), image_size=S, batch_size=5, num_workers=workers, val_size=0,
                         persistent_workers=False)  # 2 batches of 5 = every file each epoch
    dm.setup("fit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two epochs: bad files are remembered, not re-decoded or re-warned
            got = batches(dm.train_dataloader())
            assert [b.shape for b in got] == [(5, 3, S, S)] * 2
            assert all(torch.isfinite(b).all() and 0 <= b.min() and b.max() <= 1 for b in got)
    assert dm.skipped == len(bad) == 4
    if workers == 0:  # worker warnings go to the workers' stderr
        messages = [str(w.message) for w in caught if issubclass(w.category, SkippedImageWarning)]
        assert len(messages) == 4
        for path in bad:
            assert sum(path.name in m for m in messages) == 1


def test_all_files_unreadable_is_user_error(tmp_path: Path) -> None:
    make_bad_files(tmp_path)
    dm = StyleDataModule(root=str(tmp_path), image_size=S, batch_size=2, num_workers=0, val_size=0)
    dm.setup("fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        with pytest.raises(UserError, match="none of the 4 images can be read"):
            next(iter(dm.train_dataloader()))


def _sixteen_bit(path: Path) -> Path:
    img = Image.new("I;16", (30, 20))
    img.putdata([(x * 2000 + y * 300) % 65536 for y in range(20) for x in range(30)])
    img.save(path)
    return path


def _exif_rotated(path: Path) -> Path:
    """Stored 40x20 with the left half red and the right half blue; orientation 6 = show rotated 90° clockwise."""
    img = Image.new("RGB", (40, 20), (230, 20, 20))
    img.paste((20, 20, 230), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16", "exif"])
def test_every_mode_comes_out_rgb_in_unit_range(tmp_path: Path, mode: str) -> None:
    if mode == "I;16":
        path = _sixteen_bit(tmp_path / "deep.png")
    elif mode == "exif":
        path = _exif_rotated(tmp_path / "rotated.jpg")
    else:
        path = tmp_path / ("cmyk.jpg" if mode == "CMYK" else f"{mode}.png")
        synthetic_image(30, 22, mode=mode).save(path)
    for split in ("train", "val"):
        t = ImageDataset(FileSource([path]), [0], S, split)[0]
        assert t.shape == (3, S, S) and t.dtype == torch.float32
        assert 0 <= float(t.min()) and float(t.max()) <= 1 and float(t.std()) > 0.01


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    t, _ = ImageDataset(FileSource([_exif_rotated(tmp_path / "r.jpg")]), [0], S, "predict")[0]
    assert t.shape == (3, 2 * S, S)  # portrait after rotation
    top, bottom = t[:, :S], t[:, S:]
    assert top[0].mean() > 0.7 and top[2].mean() < 0.3  # left (red) half went to the top
    assert bottom[2].mean() > 0.7 and bottom[0].mean() < 0.3


# ---------------------------------------------------------------- transforms and splits
def test_train_crops_depend_on_seed_epoch_and_position_only(tmp_path: Path) -> None:
    ds = ImageDataset(FileSource(write_images(tmp_path, 1, size=(64, 40))), [0], S, "train", flip=True, seed=3)
    assert torch.equal(ds[(0, 2)], ds[(0, 2)])
    assert any(not torch.equal(ds[(0, 0)], ds[(0, e)]) for e in range(1, 6))
    val = ImageDataset(ds.source, [0], S, "val")
    assert torch.equal(val[0], val[0])


def test_validation_is_held_out_deterministic_and_disjoint(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", 20)

    def split(seed: int) -> tuple[list[int], list[int]]:
        dm = StyleDataModule(root=str(tmp_path / "imgs"), image_size=S, batch_size=4, num_workers=0, val_size=5, seed=seed)
        dm.setup("fit")
        assert [b.shape[0] for b in dm.val_dataloader()] == [4, 1]
        return dm.train_set.indices, dm.val_set.indices

    train, val = split(0)
    assert len(val) == 5 and len(train) == 15 and not set(train) & set(val) and set(train) | set(val) == set(range(20))
    assert split(0) == (train, val)
    assert split(1)[1] != val


def test_val_root_keeps_all_training_images(tmp_path: Path) -> None:
    write_images(tmp_path / "train", 6)
    write_images(tmp_path / "val", 3, start=50)
    dm = StyleDataModule(root=str(tmp_path / "train"), val_root=str(tmp_path / "val"), image_size=S, batch_size=2,
                         num_workers=0, val_size=8)
    dm.setup("fit")
    assert len(dm.train_set) == 6 and len(dm.val_set) == 3
    assert all("val" in n for n in map(dm.val_set.source.name, dm.val_set.indices))


def test_predict_yields_every_image_in_order_with_its_path(tmp_path: Path) -> None:
    paths = write_images(tmp_path, 5, size=(32, 20))
    dm = StyleDataModule(root=str(tmp_path), image_size=S, batch_size=4, num_workers=0, val_size=2)
    out = list(dm.predict_dataloader())
    assert [names[0] for _, names in out] == [str(p) for p in paths]
    assert all(img.shape == (1, 3, S, 25) for img, _ in out)  # shorter side to S, aspect kept (32 * 16 // 20)


def test_no_validation_when_val_size_is_zero(tmp_path: Path) -> None:
    write_images(tmp_path, 4)
    dm = StyleDataModule(root=str(tmp_path), image_size=S, batch_size=2, num_workers=0, val_size=0)
    assert dm.val_dataloader() == [] and len(dm.train_set) == 4


# ---------------------------------------------------------------- sampler
def test_sampler_is_a_function_of_seed_and_epoch() -> None:
    a, b = ResumableSampler(50, seed=7), ResumableSampler(50, seed=7)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    a.set_epoch(1)
    assert list(a) != list(b) and sorted(a) == list(range(50))
    assert list(ResumableSampler(50, seed=8)) != list(b)


def test_sampler_resumes_mid_epoch_at_the_uninterrupted_tail() -> None:
    full = ResumableSampler(30, seed=1, batch_size=4)
    full.set_epoch(2)
    order = list(full)
    resumed = ResumableSampler(30, seed=1, batch_size=4)
    resumed.set_epoch(2)
    resumed.start_batch = 3
    assert list(resumed) == order[12:] and len(resumed) == 30
    assert list(resumed) == order  # the offset applies once


class _Keys(torch.utils.data.Dataset):
    """Items are the (index, epoch) keys themselves."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int]:
        return key


def _loader(n: int = 30, batch_size: int = 4) -> ResumableLoader:
    sampler = ResumableSampler(n, seed=1, batch_size=batch_size)
    return ResumableLoader(_Keys(n), batch_size=batch_size, sampler=EpochKeys(sampler), drop_last=True, collate_fn=list)


def test_loader_state_is_its_position_and_resumes_there() -> None:
    """The position travels through the public stateful-loader protocol: state_dict() after k batches,
    load_state_dict() into a fresh loader, and its next iteration of the same epoch yields the rest."""
    full = _loader()
    full.batch_sampler.sampler.set_epoch(2)  # what Lightning's set_epoch reaches
    order = list(full)
    assert len(order) == 7 and full.state_dict()["batches"] == 7 and full.state_dict()["epoch"] == 2
    running = _loader()
    running.batch_sampler.sampler.set_epoch(2)
    batches = iter(running)
    head = [next(batches) for _ in range(3)]
    state = running.state_dict()
    assert (state["epoch"], state["batches"]) == (2, 3)
    resumed = _loader()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state  # a checkpoint written before the first batch keeps the position
    resumed.batch_sampler.sampler.set_epoch(2)
    assert head + list(resumed) == order
    assert list(resumed) == order  # the offset applies once
    ended = _loader()  # saved after the epoch's last batch: Lightning's set_epoch moves on, the order starts anew
    ended.load_state_dict(full.state_dict())
    ended.batch_sampler.sampler.set_epoch(3)
    fresh = _loader()
    fresh.batch_sampler.sampler.set_epoch(3)
    assert list(ended) == list(fresh) != order


def test_loader_warns_when_the_data_settings_changed() -> None:
    state = _loader().state_dict()
    with pytest.warns(UserWarning, match="different data settings"):
        _loader(n=31).load_state_dict(state)
    with pytest.warns(UserWarning, match="does not record the position"):
        _loader().load_state_dict({k: v for k, v in state.items() if k not in ("epoch", "batches")})


@pytest.mark.parametrize("n, world, drop_last", [(23, 4, True), (23, 4, False), (24, 3, True), (3, 5, False)])
def test_sampler_rank_shards_are_disjoint_and_cover_the_epoch(n: int, world: int, drop_last: bool) -> None:
    shards = [list(ResumableSampler(n, seed=0, rank=r, world_size=world, drop_last=drop_last)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1 and all(len(s) == len(ResumableSampler(n, 0, r, world, drop_last)) for r, s in enumerate(shards))
    flat = [i for s in shards for i in s]
    if drop_last:
        assert len(flat) == len(set(flat)) == n // world * world
    else:  # padded by repetition, every index present
        assert set(flat) == set(range(n)) and len(flat) == -(-n // world) * world
    if drop_last:  # rank r takes every world-th index of the single-process order, as DistributedSampler does
        single = list(ResumableSampler(n, seed=0))[: n // world * world]
        assert all(shards[r] == single[r::world] for r in range(world))


# ---------------------------------------------------------------- configuration errors
@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of"),
    ({"root": "A", "file_list": "B"}, "exactly one of"),
    ({"root": "/nonexistent/folder"}, "does not exist"),
    ({"file_list": "/nonexistent/list.txt"}, "does not exist"),
    ({"root": ".", "streaming": True}, "streaming only applies"),
    ({"root": ".", "image_size": 4}, "image_size must be at least 8"),
    ({"root": ".", "batch_size": 0}, "batch_size must be at least 1"),
])
def test_bad_configuration_is_one_line_user_error(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        StyleDataModule(**kwargs)
    assert "\n" not in str(err.value)


def test_empty_folder_names_path_and_suffixes(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    dm = StyleDataModule(root=str(tmp_path))
    with pytest.raises(UserError, match=r"no images in .*\.jpg, \.jpeg, \.png, \.webp, \.bmp") as err:
        dm.setup("fit")
    assert str(tmp_path) in str(err.value)


def test_too_few_training_images_is_user_error(tmp_path: Path) -> None:
    write_images(tmp_path, 5)
    dm = StyleDataModule(root=str(tmp_path), batch_size=4, val_size=2, num_workers=0)
    dm.setup("fit")
    assert len(list(dm.predict_dataloader())) == 5  # predicting needs no training batch
    with pytest.raises(UserError, match="only 3 training images"):
        dm.train_dataloader()


def test_empty_file_list_is_user_error(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("# nothing\n\n")
    with pytest.raises(UserError, match="names no image"):
        StyleDataModule(file_list=str(tmp_path / "list.txt")).setup("fit")
