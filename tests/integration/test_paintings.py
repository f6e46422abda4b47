"""The shipped styles' paintings by name: ``fastmmd data paintings`` (fastmmd.apps.download) and the one
resolver (fastmmd.base.paintings) in optimize, compare, evaluate, fit and ``--style-image``.

No network: a zoo of two styles is written here, its paintings served by a fake ``urlopen`` (ranges,
a server that ignores them, wrong bytes, too many bytes, no connection); the real zoo's download
records are checked for form and against their ``source`` only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import urllib.error
from pathlib import Path

import pytest
from conftest import fails_with_one_line, synthetic_image, with_styles, write_tiny_checkpoint
from PIL import Image

from fastmmd.__main__ import main
from fastmmd.apps import download
from fastmmd.base.manifest import ENV_VAR as ZOO_VAR
from fastmmd.base.manifest import MANIFEST, file_sha256, read_manifest
from fastmmd.base.paintings import ENV_VAR, paintings_dir, resolve_painting
from fastmmd.model.files import read_checkpoint

REAL_ZOO = Path(__file__).resolve().parents[2] / "checkpoints"
URL = "https://paintings.example/{}.png"


def _png(seed: int, size: tuple[int, int] = (40, 32)) -> bytes:
    out = io.BytesIO()
    synthetic_image(*size, seed=seed).save(out, "PNG")
    return out.getvalue()


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, status: int = 200, length: bool = True) -> None:
        super().__init__(data)
        self.status = status
        self.headers = {"Content-Length": str(len(data))} if length else {}


class FakeServer:
    """``urlopen`` for the tests: serves ``files`` by URL, honours ``Range`` unless told not to, records requests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = dict(files), []
        self.fail: BaseException | None = None
        self.ranges, self.length = True, True

    def __call__(self, request, timeout: float) -> FakeResponse:
        self.requests.append((request.full_url, request.get_header("Range")))
        if self.fail is not None:
            raise self.fail
        data, wanted = self.files[request.full_url], request.get_header("Range")
        if wanted and self.ranges:
            return FakeResponse(data[int(wanted.removeprefix("bytes=").rstrip("-")) :], 206, self.length)
        return FakeResponse(data, length=self.length)


@pytest.fixture
def paintings(tmp_path, monkeypatch) -> dict:
    """A zoo of two styles (``tiny``, ``other``) whose paintings the fake server holds; the paintings
    folder ``tmp_path/cache`` (``$FASTMMD_PAINTINGS``); the current folder ``tmp_path/work``."""
    files = {"tiny": _png(1), "other": _png(2, (30, 36))}
    entry = {
        "title": "Tiny",
        "painter": "A. Tester",
        "year": "2024",
        "source": "generated",
        "license": "public domain",
        "files": {"torchscript": "x.pt"},
    }
    styles = {
        name: {
            **entry,
            "style_image": f"{name}.png",
            "download": {"url": URL.format(name), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
        }
        for name, data in files.items()
    }
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / MANIFEST).write_text(json.dumps({"format_version": 1, "styles": styles}))
    server = FakeServer({URL.format(name): data for name, data in files.items()})
    monkeypatch.setattr(download, "urlopen", server)
    monkeypatch.setenv(ZOO_VAR, str(zoo))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return {"files": files, "server": server, "cache": tmp_path / "cache", "zoo": zoo, "work": work}


def _data(argv: list[str], capsys) -> str:
    assert main(["data", "paintings", *argv, "-q"]) == 0
    return capsys.readouterr().out


# ----------------------------------------------------------------------------- fastmmd data paintings
def test_downloads_every_painting_once_and_fetches_a_changed_one_again(paintings, capsys):
    cache, server, files = paintings["cache"], paintings["server"], paintings["files"]
    out = _data([], capsys)
    assert "2 paintings downloaded, 0 already there" in out and "--style tiny" in out, out
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == {"tiny.png": files["tiny"], "other.png": files["other"]}
    assert len(server.requests) == 2
    out = _data(["tiny", "other"], capsys)  # idempotent: nothing is fetched again
    assert "0 paintings downloaded, 2 already there" in out and len(server.requests) == 2, out
    (cache / "tiny.png").write_bytes(files["other"])  # changed (or damaged): fetched again, replaced
    out = _data(["all"], capsys)
    assert "1 paintings downloaded, 1 already there" in out and server.requests[-1] == (URL.format("tiny"), None)
    assert (cache / "tiny.png").read_bytes() == files["tiny"]


@pytest.mark.parametrize("server_ranges", [True, False])
def test_an_interrupted_download_resumes_from_its_part_file(server_ranges, paintings, capsys):
    cache, server, data = paintings["cache"], paintings["server"], paintings["files"]["tiny"]
    cache.mkdir()
    (cache / ".tiny.png.part").write_bytes(data[:100])
    server.ranges = server_ranges  # a server that ignores the range sends the whole file, which replaces the part
    _data(["tiny"], capsys)
    assert server.requests == [(URL.format("tiny"), "bytes=100-")]
    assert (cache / "tiny.png").read_bytes() == data and not (cache / ".tiny.png.part").exists()


def test_a_connection_closed_early_keeps_the_part_for_the_next_run(paintings, capsys):
    cache, server, data = paintings["cache"], paintings["server"], paintings["files"]["tiny"]
    server.files[URL.format("tiny")] = data[:150]
    server.length = False
    fails_with_one_line(["data", "paintings", "tiny", "-q"], capsys, "after 150 of", "run the command again to resume")
    assert (cache / ".tiny.png.part").read_bytes() == data[:150] and not (cache / "tiny.png").exists()
    server.files[URL.format("tiny")] = data
    _data(["tiny"], capsys)
    assert (cache / "tiny.png").read_bytes() == data and server.requests[-1][1] == "bytes=150-"


def test_a_download_with_another_sha256_is_deleted(paintings, capsys):
    cache, server, data = paintings["cache"], paintings["server"], paintings["files"]["tiny"]
    server.files[URL.format("tiny")] = bytes(reversed(data))  # the recorded size, other bytes
    fails_with_one_line(["data", "paintings", "tiny", "-q"], capsys, "does not have the SHA-256", "deleted it")
    assert not cache.exists()  # nothing kept, and the folder this run created is gone again


@pytest.mark.parametrize("declared", [True, False])
def test_no_more_than_the_recorded_size_is_read(declared, paintings, capsys, monkeypatch):
    cache, server, data = paintings["cache"], paintings["server"], paintings["files"]["tiny"]
    server.files[URL.format("tiny")] = data + b"\0" * (1 << 20)
    server.length = declared  # refused from its Content-Length, or after one byte past the recorded size
    reads = []
    original = FakeResponse.read
    monkeypatch.setattr(FakeResponse, "read", lambda self, n=-1: reads.append(n) or original(self, n))
    fails_with_one_line(["data", "paintings", "tiny", "-q"], capsys, "zoo.json records")
    assert not cache.exists() and sum(reads) <= len(data) + 1 and -1 not in reads


@pytest.mark.parametrize(
    "error",
    [
        urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
        urllib.error.HTTPError(URL.format("tiny"), 404, "Not Found", {}, None),
        TimeoutError("timed out"),
    ],
)
def test_offline_is_one_line_naming_the_url_and_where_the_file_goes(error, paintings, capsys):
    paintings["server"].fail = error
    line = fails_with_one_line(["data", "paintings", "-q"], capsys, URL.format("tiny"), "--style-image FILE")
    assert str(paintings["cache"] / "tiny.png") in line  # the first painting the zoo lists
    assert not paintings["cache"].exists()  # a failed command leaves no empty folder behind


def test_a_folder_of_ones_own_and_unknown_names(paintings, capsys, tmp_path):
    out = _data(["tiny", "./mine"], capsys)
    assert (paintings["work"] / "mine" / "tiny.png").read_bytes() == paintings["files"]["tiny"]
    assert f"set {ENV_VAR}=./mine" in out, out
    fails_with_one_line(["data", "paintings", "tinny", "-q"], capsys, "did you mean 'tiny'", "./tinny")
    fails_with_one_line(["data", "paintings", "./a", "./b"], capsys, "two folders")
    fails_with_one_line(["data", "coco"], capsys, "give one DIR")
    fails_with_one_line(["data", "paintings", "--limit", "3"], capsys, "--limit is for datasets of photos")


# ----------------------------------------------------------------------------- the resolver, everywhere
def test_a_name_resolves_to_the_checked_painting_and_a_file_of_that_name_wins(paintings, capsys):
    with pytest.raises(
        Exception,
        match=re.escape("painting 'tiny' is not downloaded: run `fastmmd data paintings tiny` (or pass a file)"),
    ):
        resolve_painting("tiny")
    assert resolve_painting("nothing_shipped") == "nothing_shipped"  # not a style: the reader reports it
    assert resolve_painting("arbitrary.png") == "arbitrary.png"
    _data(["tiny"], capsys)
    assert resolve_painting("tiny") == resolve_painting("Tiny") == paintings_dir() / "tiny.png"
    (paintings["work"] / "tiny").write_bytes(paintings["files"]["other"])  # a real file named like the style
    assert resolve_painting("tiny") == "tiny"
    (paintings["work"] / "tiny").unlink()
    (paintings["cache"] / "tiny.png").write_bytes(paintings["files"]["tiny"][:-1] + b"\1")
    with pytest.raises(Exception, match="does not have the recorded SHA-256: run `fastmmd data paintings tiny`"):
        resolve_painting("tiny")


def test_optimize_compare_and_evaluate_take_a_name(paintings, make_image, capsys, tmp_path):
    content = make_image("content.png", 40, 32, 5)
    tiny = ["--vgg-weights", "random", "--vgg-width-divisor", "8"]
    optimize = [
        "optimize",
        "--content",
        str(content),
        "--style",
        "tiny",
        "--size",
        "32",
        "--iterations",
        "2",
        "--output",
        str(tmp_path / "out.png"),
        "--no-progress",
        *tiny,
    ]
    fails_with_one_line(optimize, capsys, "painting 'tiny' is not downloaded", "fastmmd data paintings tiny")
    fails_with_one_line(
        ["compare", "--content", str(content), "--style", "tiny", "--output-dir", str(tmp_path / "c")],
        capsys,
        "painting 'tiny' is not downloaded",
    )
    assert not (tmp_path / "c").exists()
    fails_with_one_line(
        ["evaluate", str(tmp_path / "m.pt"), "--content", str(content), "--style", "tiny"],
        capsys,
        "painting 'tiny' is not downloaded",
    )
    _data(["tiny"], capsys)
    assert main(optimize) == 0
    assert json.loads(Image.open(tmp_path / "out.png").text["fastmmd"])["styles"] == ["tiny.png"]
    (paintings["work"] / "tiny").write_bytes(paintings["files"]["other"])  # the file in the folder wins
    assert main(optimize) == 0
    assert json.loads(Image.open(tmp_path / "out.png").text["fastmmd"])["styles"] == ["tiny"]


def test_fit_takes_a_name(paintings, fit_args, capsys):
    from fastmmd.train.cli import build_cli

    args = with_styles(fit_args, Path("tiny"))
    fails_with_one_line(["fit", *args, "--trainer.max_steps", "1"], capsys, "painting 'tiny' is not downloaded")
    _data(["tiny"], capsys)
    cli = build_cli(["fit", *args, "--trainer.max_steps", "1", "--run_name", "named"])
    assert cli.model.hparams.style_images == [str(paintings["cache"] / "tiny.png")]
    assert read_checkpoint(Path(cli.trainer.log_dir) / "last.ckpt")["fastmmd"]["style_images"] == ["tiny.png"]


def test_an_arbitrary_network_takes_a_name_for_its_painting(paintings, make_image, capsys, tmp_path):
    ckpt = write_tiny_checkpoint(tmp_path / "arb.ckpt", style_embedding=6)
    photo = make_image("photo.png", 40, 32, 5)
    _data(["tiny"], capsys)
    for name, painting in (("by_name", "tiny"), ("by_file", str(paintings["cache"] / "tiny.png"))):
        assert (
            main(["stylize", str(ckpt), str(photo), "-o", str(tmp_path / name), "-q", "--style-image", painting]) == 0
        )
    by_name, by_file = (Image.open(tmp_path / n / "photo_stylized.png") for n in ("by_name", "by_file"))
    assert by_name.tobytes() == by_file.tobytes() and by_name.text["fastmmd:condition"].startswith("tiny")


# ----------------------------------------------------------------------------- the manifest's records
@pytest.mark.parametrize(
    "change, needle",
    [
        ({"url": "http://paintings.example/tiny.png"}, "not a plain https:// URL"),
        ({"url": "https://user@paintings.example/x.png"}, "not a plain https:// URL"),
        ({"sha256": "ABC"}, "sha256 is not 64"),
        ({"bytes": True}, "bytes is not a size"),
        ({"bytes": 1 << 40}, "bytes is not a size"),
        ({"style_image": os.path.join(os.pardir, "escape.png")}, "not a plain file name"),  # the cache's folder only
    ],
)
def test_a_crafted_download_record_breaks_the_manifest(change, needle, paintings):
    path = paintings["zoo"] / MANIFEST
    manifest = json.loads(path.read_text())
    entry = manifest["styles"]["tiny"]
    if "style_image" in change:
        entry.update(change)
    else:
        entry["download"].update(change)
    path.write_text(json.dumps(manifest))
    with pytest.raises(Exception, match=f"manifest .* is broken: .*{re.escape(needle)}"):
        read_manifest()
    assert resolve_painting("tiny") == "tiny"  # a broken zoo: a name is a path like any other


def test_the_shipped_paintings_are_recorded_pinned_to_their_source(monkeypatch):
    monkeypatch.delenv(ZOO_VAR, raising=False)
    styles = {k: v for k, v in read_manifest(REAL_ZOO).items() if v.get("kind") != "arbitrary"}
    assert len(styles) >= 6
    for name, entry in styles.items():
        record = entry["download"]
        repo, path = entry["source"].split(" ", 1)
        assert re.fullmatch(
            rf"https://raw\.githubusercontent\.com/{re.escape(repo)}/[0-9a-f]{{40}}/{re.escape(path)}", record["url"]
        ), (name, record["url"])
        assert entry["style_image"] == f"{name}.jpg" and 0 < record["bytes"] < 1 << 20, name


def test_file_sha256_is_what_the_records_hold(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert file_sha256(tmp_path / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
