"""``fastmmd data``: training photos from a Hugging Face image dataset, without the network in tests.

The datasets are local ``imagefolder`` folders of generated images; the offline case is simulated by
making ``datasets.load_dataset`` raise what it raises without a connection.
"""

from __future__ import annotations

import io
import socket

import pytest
from conftest import synthetic_image
from PIL import Image

from fastmmd.__main__ import main
from fastmmd.apps.fetch import image_name


@pytest.fixture
def image_folder(tmp_path):
    """Five PNGs and one JPEG (sorted names: the order of the split)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        synthetic_image(24 + i, 20, seed=i).save(src / f"p{i}.png")
    synthetic_image(30, 22, seed=9).save(src / "p5.jpg", quality=80)
    return src


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err.strip()


def test_fetches_jpegs_and_resumes(image_folder, tmp_path, capsys):
    dst = tmp_path / "photos"
    code, out, _ = _run(["data", str(image_folder), str(dst), "--limit", "3", "-q"], capsys)
    assert code == 0 and "3 images written, 0 already there" in out, out
    assert sorted(p.name for p in dst.iterdir()) == [image_name(i) for i in range(3)]
    first = dst / image_name(0)
    with Image.open(first) as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (24, 20)
    stamp = first.stat().st_mtime_ns
    code, out, _ = _run(["data", str(image_folder), str(dst), "-q"], capsys)
    assert code == 0 and "3 images written, 3 already there" in out, out
    assert first.stat().st_mtime_ns == stamp  # what was there is not fetched again
    assert sorted(p.name for p in dst.iterdir()) == [image_name(i) for i in range(6)]
    assert (dst / image_name(5)).read_bytes() == (image_folder / "p5.jpg").read_bytes()  # JPEG kept as it came
    code, out, _ = _run(["data", str(image_folder), str(dst), "--limit", "6", "-q"], capsys)
    assert code == 0 and "0 images written, 6 already there" in out, out


def test_an_unreadable_image_is_skipped_not_written(image_folder, tmp_path, capsys):
    (image_folder / "p2.png").write_bytes(b"not a png")
    (image_folder / "p5.jpg").write_bytes(b"\xff\xd8\xff" + b"not a jpeg" * 10)  # a JPEG's magic, nothing more
    dst = tmp_path / "photos"
    code, out, _ = _run(["data", str(image_folder), str(dst), "-q"], capsys)
    assert code == 0 and "4 images written" in out and "2 unreadable skipped" in out, out
    assert not (dst / image_name(2)).exists() and (dst / image_name(3)).is_file() and not (dst / image_name(5)).exists()
    for path in dst.iterdir():
        Image.open(io.BytesIO(path.read_bytes())).verify()


@pytest.mark.parametrize("where", ["host name", "hub client"])
def test_offline_is_one_line_naming_what_to_download_and_where(where, tmp_path, monkeypatch, capsys):
    """Offline shows either as a host name that does not resolve (answered at once) or as the Hub
    client's ConnectionError (a resolving name but no route); neither touches the network here."""
    import datasets

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    def offline(*args, **kwargs):
        if where == "host name":
            raise AssertionError("the Hub client ran although the host name does not resolve")
        raise ConnectionError("Couldn't reach 'detection-datasets/coco' on the Hub (LocalEntryNotFoundError)")

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns if where == "host name" else lambda *a, **k: [])
    monkeypatch.setattr(datasets, "load_dataset", offline)
    dst = tmp_path / "coco"
    code, out, err = _run(["data", "coco", str(dst), "--limit", "10"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "offline" in err and f"fastmmd data coco {dst}" in err and f"--data.root {dst}" in err, err
    assert not dst.exists()  # a failed command leaves no empty folder behind


def test_the_output_folder_is_not_read_as_the_dataset(image_folder, capsys):
    code, _, err = _run(["data", str(image_folder), str(image_folder)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "is DIR itself" in err, err


@pytest.mark.parametrize("argv, needle", [
    (["--column", "picture"], "--column must be one of"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--split", "nope"], "split 'nope'"),
])
def test_bad_input_is_one_line(argv, needle, image_folder, tmp_path, capsys):
    code, _, err = _run(["data", str(image_folder), str(tmp_path / "photos"), *argv], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
