"""fastmmd serve: the API through Starlette's TestClient, the command line, and the page in headless Chromium.

The networks are tiny (tests/conftest.py): ``cond.ckpt`` has three styles and a strength input,
``plain.ckpt`` neither; one or two shipped styles join them when the zoo is there. The browser
test drives Debian's ``chromium`` (or Playwright's own) through Playwright against a real uvicorn
server on 127.0.0.1 and records every request the page makes (its scenarios are ``check_*``
functions it runs in turn, so a machine without Chromium reports one skip line); it and the
command-line runs in a subprocess are marked ``slow`` (scripts/test.sh runs them). Set ``FASTMMD_SCREENSHOTS=1`` to write
the page's screenshot to docs/images/serve.png (the README's picture) instead of a temporary folder.
No assertion times anything: waits poll for state.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="fastmmd serve needs FastAPI: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="fastmmd serve needs uvicorn: pip install -e '.[serve]'")

from conftest import synthetic_image, write_tiny_checkpoint  # noqa: E402

from fastmmd.__main__ import main  # noqa: E402
from fastmmd.apps.serve import bind, url_of
from fastmmd.apps.serve.app import Catalog, Limits, create_app, serve_forever  # noqa: E402
from fastmmd.commands.serve import build_parser  # noqa: E402
from fastmmd.core.samples import photo as sample_photo  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ZOO_STYLES = ["starry_night", "wave"]


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def a_photo(seed: int = 3, width: int = 320, height: int = 240) -> Image.Image:
    """A procedural landscape (fastmmd.core.samples), cropped to ``width`` x ``height``."""
    return sample_photo(seed, max(width, height)).crop((0, 0, width, height))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serve_models")
    write_tiny_checkpoint(folder / "cond.ckpt", styles=3, strength_width=4)
    write_tiny_checkpoint(folder / "plain.ckpt", seed=1)
    (folder / "notes.txt").write_text("not a model: ignored")
    return folder


@pytest.fixture(scope="session")
def catalog(models_dir) -> Catalog:
    return Catalog.load(models_dir, zoo_names=ZOO_STYLES)


@pytest.fixture
def client(catalog, tmp_path):
    from starlette.testclient import TestClient

    (tmp_path / "work").mkdir()
    app = create_app(catalog, tmp_path / "work", Limits(upload_bytes=2_000_000, pixels=1_000_000, video_bytes=1_000_000),
                     allowed_hosts=["127.0.0.1"])
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        yield c
    app.state.serve.close()


def write_clip(path: Path, frames: int = 12, width: int = 64, height: int = 48) -> Path:
    """A small moving H.264 clip (the landscape panning by 2 px a frame), no audio."""
    import av
    import numpy as np

    base = np.asarray(a_photo(width=width + 2 * frames, height=height))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, 2 * i:2 * i + width]), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def upload(client, image: Image.Image | bytes, name: str = "photo.jpg"):
    data = image if isinstance(image, bytes) else encode(image)
    return client.post(f"/api/photo?name={name}", content=data)


def wait_job(client, job_id: str) -> dict:
    while True:  # no time limit here: pytest's own timeout (if any) applies
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "error"):
            return job
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------ API
def test_styles_lists_the_models_and_what_each_can_do(client, catalog):
    models = {m["name"]: m for m in client.get("/api/styles").json()["models"]}
    assert {"cond.ckpt", "plain.ckpt"} <= set(models) and "notes.txt" not in models
    assert models["cond.ckpt"]["styles"] == ["tiny0", "tiny1", "tiny2"]
    assert models["cond.ckpt"]["strength"] == {"min": 0.0, "max": 2.0, "default": 1.0}
    assert models["cond.ckpt"]["no_strength"] is None and models["cond.ckpt"]["no_blend"] is None
    assert models["plain.ckpt"]["strength"] is None and "No strength control" in models["plain.ckpt"]["no_strength"]
    assert "learnt one style" in models["plain.ckpt"]["no_blend"]
    assert not any(m["arbitrary"] for m in models.values())
    if (REPO / "checkpoints" / "zoo.json").is_file():
        assert set(ZOO_STYLES) <= set(models) and models["wave"]["source"] == "zoo"


def test_preview_follows_style_strength_and_blend(client):
    photo = upload(client, a_photo(width=500, height=300)).json()
    assert (photo["width"], photo["height"]) == (500, 300) and (photo["preview_width"], photo["preview_height"]) == (384, 230)

    def preview(**params) -> bytes:
        query = "&".join(f"{k}={v}" for k, v in {"photo": photo["id"], "model": "cond.ckpt", **params}.items())
        response = client.get(f"/api/preview?{query}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(response.content)) as img:
            assert img.size == (384, 230)
        return response.content

    base = preview(style="tiny0")
    assert preview(style="tiny0") == base  # the same settings: the same image
    assert preview(style="tiny0", strength=1.6) != base
    assert preview(style="tiny1") != base
    blend = preview(style="tiny0", blend_with="tiny2", blend=0.5)
    assert blend not in (base, preview(style="tiny2"))
    assert preview(style="tiny0", blend_with="tiny2", blend=0) == base


@pytest.mark.parametrize("params, status, words", [
    ("model=plain.ckpt&strength=0.5", 400, "no strength control"),
    ("model=plain.ckpt&style=tiny1", 400, "one style"),
    ("model=cond.ckpt&strength=5", 400, "trained range [0, 2]"),
    ("model=cond.ckpt&style=nope", 400, "no style 'nope'"),
    ("model=cond.ckpt&blend_with=tiny1&blend=1.5", 400, "blend must lie in 0..1"),
    ("model=cond.ckpt&strength=strong", 400, "bad strength"),
    ("model=missing.ckpt", 404, "no style 'missing.ckpt'"),
])
def test_bad_settings_are_one_line_errors(client, params, status, words):
    photo = upload(client, a_photo()).json()["id"]
    response = client.get(f"/api/preview?photo={photo}&{params}")
    assert response.status_code == status and words in response.json()["error"]
    assert "\n" not in response.json()["error"]
    assert client.get(f"/api/preview?photo={photo}&model=plain.ckpt").status_code == 200  # still serving


def test_uploads_checked_and_refused_in_one_line(client):
    assert upload(client, b"not an image at all", "broken.png").json()["error"] == "'broken.png' is not an image Pillow can read"
    assert upload(client, b"", "empty.jpg").json()["error"] == "image 'empty.jpg' is empty (0 bytes)"
    truncated = encode(a_photo())[:600]
    response = upload(client, truncated, "cut.jpg")
    assert response.status_code == 415 and "corrupt or truncated" in response.json()["error"]
    big = upload(client, os.urandom(2_000_001), "huge.jpg")  # over this app's 2 MB
    assert big.status_code == 413 and "up to 2 MB" in big.json()["error"]
    bomb = encode(Image.new("1", (20_000, 20_000)), "PNG")  # 400 Mpx in a small file
    assert len(bomb) < 2_000_000
    response = upload(client, bomb, "bomb.png")
    assert response.status_code == 413 and "decompression bomb" in response.json()["error"]
    response = upload(client, synthetic_image(1200, 900), "big.jpg")
    assert response.status_code == 413 and response.json()["error"] == ("'big.jpg' is 1200x900 = 1.08 Mpx; this server "
                                                                        "takes photos up to 1 Mpx (fastmmd serve --max-megapixels)")
    assert upload(client, a_photo(), "fine.jpg").status_code == 200


def test_full_size_png_with_the_settings(client):
    photo = upload(client, a_photo(width=450, height=410), "holiday photo.jpg").json()
    job = client.post("/api/jobs", json={"photo": photo["id"], "model": "cond.ckpt", "style": "tiny1", "strength": 0.7,
                                         "blend_with": "tiny2", "blend": 0.25}).json()
    job = wait_job(client, job["id"])
    assert job["state"] == "done" and job["error"] is None and job["filename"] == "holiday_photo_cond.png"
    response = client.get(f"/api/jobs/{job['id']}/result?download=1")
    assert response.headers["content-disposition"] == 'attachment; filename="holiday_photo_cond.png"'
    with Image.open(io.BytesIO(response.content)) as img:
        assert img.format == "PNG" and img.size == (450, 410)
        assert img.text["fastmmd:model"] == "cond.ckpt" and img.text["fastmmd:strength"] == "0.7"
        assert img.text["fastmmd:mix"] == "tiny1=0.75,tiny2=0.25" and img.text["fastmmd:source"] == "holiday photo.jpg"
        assert img.text["fastmmd:precision"] == "float32" and img.text["fastmmd:size"] == "450x410"
    bad = client.post("/api/jobs", json={"photo": photo["id"], "model": "plain.ckpt", "strength": 2})
    assert bad.status_code == 400 and "no strength control" in bad.json()["error"]


def test_several_photos_become_one_zip(client, tmp_path):
    import zipfile

    ids = [upload(client, a_photo(seed=k, width=120 + 10 * k, height=90), name).json()["id"]
           for k, name in enumerate(["a.jpg", "b.png", "a.jpg"])]
    job = client.post("/api/jobs", json={"photo": ids[0], "photos": ids, "model": "cond.ckpt", "style": "tiny1",
                                         "strength": 0.4}).json()
    assert job["filename"] == "cond_3_photos.zip" and job["total"] == 4
    job = wait_job(client, job["id"])
    assert job["state"] == "done" and job["done"] == 4 and job["message"] == "done: 3 photos"
    response = client.get(f"/api/jobs/{job['id']}/result?download=1")
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == ["a_cond.png", "b_cond.png", "a_cond_1.png"]
        for k, name in enumerate(archive.namelist()):
            with Image.open(io.BytesIO(archive.read(name))) as img:
                assert img.size == (120 + 10 * k, 90) and img.text["fastmmd:strength"] == "0.4"
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "work").iterdir()) == ["photo"] * 3 + ["result"]
    bad = client.post("/api/jobs", json={"photo": ids[0], "photos": [ids[0], "f" * 32], "model": "cond.ckpt"})
    assert bad.status_code == 404 and "no longer on the server" in bad.json()["error"]
    bad = client.post("/api/jobs", json={"photo": ids[0], "photos": "all", "model": "cond.ckpt"})
    assert bad.status_code == 400 and "list of photo ids" in bad.json()["error"]


def test_full_size_counts_tiles_for_the_progress_bar(catalog, tmp_path):
    """A photo too large for memory is stylized in tiles; the job counts them (the page's progress bar)."""
    import copy
    import dataclasses

    from starlette.testclient import TestClient

    from fastmmd.model.tiling import tile_spans

    cond = next(m for m in catalog.models if m.name == "cond.ckpt")
    stylizer = copy.copy(cond.stylizer)
    stylizer.tile, stylizer.overlap = 64, 32  # as if memory allowed 64 px tiles
    app = create_app(Catalog([dataclasses.replace(cond, stylizer=stylizer)]), tmp_path, allowed_hosts=["127.0.0.1"])
    with TestClient(app, base_url="http://127.0.0.1") as c:
        photo = upload(c, a_photo(width=200, height=150)).json()["id"]
        job = wait_job(c, c.post("/api/jobs", json={"photo": photo, "model": "cond.ckpt", "style": "tiny2"}).json()["id"])
        tiles = len(tile_spans(150, 64, 32)) * len(tile_spans(200, 64, 32))
        assert job["state"] == "done" and tiles > 4 and job["total"] == tiles + 1 and job["done"] == job["total"]
        with Image.open(io.BytesIO(c.get(f"/api/jobs/{job['id']}/result").content)) as img:
            assert img.size == (200, 150)
    assert cond.stylizer.tile is None and "_forward" not in vars(cond.stylizer)  # the shared stylizer is untouched
    app.state.serve.close()


def test_live_camera_frames_stylized_and_not_stored(client, tmp_path):
    frame = encode(a_photo(width=640, height=480))
    response = client.post("/api/live?model=cond.ckpt&style=tiny1&strength=0.5", content=frame)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as img:
        assert img.size == (384, 288)
    other = client.post("/api/live?model=cond.ckpt&style=tiny1&strength=1.5", content=frame).content
    assert other != response.content
    assert client.post("/api/live?model=plain.ckpt&strength=0.5", content=frame).status_code == 400
    assert "not an image" in client.post("/api/live?model=plain.ckpt", content=b"nope").json()["error"]
    assert not list((tmp_path / "work").iterdir())


def test_video_clip_previews_its_first_frame_and_becomes_an_mp4(client, tmp_path):
    import av

    clip = write_clip(tmp_path / "clip.mp4").read_bytes()
    video = upload(client, clip, "../../holiday clip.mp4").json()  # a name is only a name
    assert video["video"] is True and (video["width"], video["height"], video["frames"]) == (64, 48, 12)
    preview = client.get(f"/api/preview?photo={video['id']}&model=cond.ckpt&style=tiny0")
    with Image.open(io.BytesIO(preview.content)) as img:
        assert img.size == (64, 48)
    job = wait_job(client, client.post("/api/jobs", json={"photo": video["id"], "model": "cond.ckpt", "style": "tiny2",
                                                          "strength": 1.5}).json()["id"])
    assert job["state"] == "done" and job["done"] == job["total"] == 13 and job["filename"] == "holiday_clip_cond.mp4"
    response = client.get(f"/api/jobs/{job['id']}/result?download=1")
    assert response.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(response.content)
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert "fastmmd:strength=1.5" in container.metadata.get("comment", "")
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
    broken = upload(client, b"\x00\x00\x00\x18ftypmp42 but nothing else", "broken.mp4")
    assert broken.status_code == 415 and "broken.mp4" in broken.json()["error"]
    assert str(tmp_path) not in broken.json()["error"]
    big = upload(client, os.urandom(1_000_001), "long.mkv")
    assert big.status_code == 413 and "clips up to 1 MB" in big.json()["error"]
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "work").iterdir()) == ["result", "video"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4", "work"]
    assert not list(tmp_path.parent.glob("holiday*"))


def test_requests_name_nothing_on_disk(client, models_dir, tmp_path):
    """Models by catalogue name only, uploads and results by random token only; all files in the work folder."""
    photo = upload(client, a_photo()).json()["id"]
    secret = tmp_path / "secret.ckpt"
    shutil.copy(models_dir / "cond.ckpt", secret)
    for model in (str(secret), str(models_dir / "cond.ckpt"), "../cond.ckpt", "cond.ckpt/", "starry_night:pt2"):
        response = client.get("/api/preview", params={"photo": photo, "model": model})
        assert response.status_code == 404 and "no style" in response.json()["error"]
    for token in ("../../etc/passwd", str(models_dir / "cond.ckpt"), "0" * 32):
        assert client.get("/api/preview", params={"photo": token, "model": "cond.ckpt"}).status_code == 404
        assert client.get(f"/api/jobs/{token}/result").status_code == 404
    assert client.get("/static/../app.py").status_code == 404 and client.get("/static/app.js").status_code == 200
    job = client.post("/api/jobs", json={"photo": photo, "model": "cond.ckpt"}).json()
    assert wait_job(client, job["id"])["state"] == "done"
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "work").iterdir()) == ["photo", "result"]
    assert sorted(p.name for p in models_dir.iterdir()) == ["cond.ckpt", "notes.txt", "plain.ckpt"]


def test_same_origin_only(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    text = page.text + client.get("/static/app.js").text + client.get("/static/style.css").text
    assert "http://" not in text and "https://" not in text and "//cdn" not in text and "@import" not in text
    rebound = client.get("/api/styles", headers={"host": "attacker.example:7860"})
    assert rebound.status_code == 421 and "this machine" in rebound.json()["error"]


def test_an_arbitrary_style_network_paints_the_painting_dropped_on_the_page(tmp_path):
    """A model whose ConditionSpace says ``arbitrary`` (fastmmd.model.arbitrary) takes the painting dropped on the
    page: none is a one-line 400, two paintings give two different previews."""
    from starlette.testclient import TestClient

    folder = tmp_path / "models"
    write_tiny_checkpoint(folder / "any.ckpt", style_embedding=6, strength_width=4, seed=2)
    app = create_app(Catalog.load(folder, zoo=False), tmp_path, allowed_hosts=["127.0.0.1"])
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/api/styles").json()["models"][0]["arbitrary"] is True
        photo = upload(c, a_photo()).json()["id"]
        response = c.get(f"/api/preview?photo={photo}&model=any.ckpt")
        assert response.status_code == 400 and "drop a painting first" in response.json()["error"]
        previews = []
        for seed in (5, 9):
            painting = upload(c, synthetic_image(64, 64, seed=seed), f"painting{seed}.png").json()["id"]
            response = c.get(f"/api/preview?photo={photo}&model=any.ckpt&painting={painting}")
            assert response.status_code == 200
            previews.append(response.content)
        assert previews[0] != previews[1]
    app.state.serve.close()


# ------------------------------------------------------------------------------------------ command line
def test_cli_defaults_and_errors(capsys, tmp_path):
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.models, args.precision) == ("127.0.0.1", 7860, None, "auto")
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--models", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a folder" in err[0]
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--port", str(taken.getsockname()[1])])
        assert exit_info.value.code == 2 and "is in use" in capsys.readouterr().err
    finally:
        taken.close()
    with pytest.raises(SystemExit):
        main(["serve", "--port", "70000"])
    assert "0..65535" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cli_serves_warns_on_all_interfaces_and_cleans_up(models_dir, tmp_path, stop):
    """``fastmmd serve --host 0.0.0.0 --port 0``: warns, prints its address, serves, and removes its
    folder when stopped by Ctrl+C or SIGTERM."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "FASTMMD_ZOO": str(tmp_path / "no_zoo"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "fastmmd", "serve", "--host", "0.0.0.0", "--port", "0",
                                "--models", str(models_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith("fastmmd serve: open http://127.0.0.1:"), (line, process.stderr.read() if not line else "")
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        assert f"from other machines: this machine's address, port {port}" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/styles") as response:
            assert b"cond.ckpt" in response.read()
        assert len(list(tmp_path.glob("fastmmd-serve-*"))) == 1
    finally:
        process.send_signal(stop)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "warning: listening on 0.0.0.0" in err and "stopped" in err
    assert not list(tmp_path.glob("fastmmd-serve-*"))


# ------------------------------------------------------------------------------------------ a real server
@pytest.fixture(scope="module")
def live_server(catalog, tmp_path_factory):
    """uvicorn on 127.0.0.1 and a free port, in a background thread: (origin, app)."""
    app = create_app(catalog, tmp_path_factory.mktemp("serve_work"), allowed_hosts=["127.0.0.1"])
    sock = bind("127.0.0.1", 0)
    box: list = []
    thread = threading.Thread(target=serve_forever, args=(app, sock), kwargs={"server_box": box}, daemon=True)
    thread.start()
    while not (box and box[0].started):
        assert thread.is_alive(), "the server thread stopped"
        time.sleep(0.02)
    yield url_of(sock).rstrip("/"), app
    box[0].should_exit = True
    thread.join(timeout=30)
    app.state.serve.close()
    sock.close()


def test_concurrent_requests_all_answered_one_network_at_a_time(live_server, monkeypatch):
    origin, app = live_server
    state = app.state.serve
    photo = urllib.request.urlopen(urllib.request.Request(f"{origin}/api/photo?name=a.jpg", data=encode(a_photo()),
                                                          method="POST"))
    photo_id = json.loads(photo.read())["id"]
    running, most = [0], [0]
    preview = state.preview

    def counted(settings):
        running[0] += 1
        most[0] = max(most[0], running[0])
        try:
            time.sleep(0.02)  # widen the window in which a second run could overlap
            return preview(settings)
        finally:
            running[0] -= 1

    monkeypatch.setattr(state, "preview", counted)
    results: dict[float, bytes] = {}

    def ask(strength: float) -> None:
        url = f"{origin}/api/preview?photo={photo_id}&model=cond.ckpt&style=tiny0&strength={strength}"
        with urllib.request.urlopen(url) as response:
            results[strength] = response.read()

    threads = [threading.Thread(target=ask, args=(0.2 * k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0.2 * k for k in range(8)] and len(set(results.values())) == 8
    assert most[0] == 1


# ------------------------------------------------------------------------------------------ the page in Chromium
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                 "--no-first-run",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # a test-pattern camera


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright: Debian's ``chromium`` (or $FASTMMD_CHROMIUM), else Playwright's own."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip("browser tests need Playwright: pip install -e '.[test]'")
    executable = os.environ.get("FASTMMD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    manager = sync_playwright().start()
    try:
        instance = manager.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
    except Error as err:
        manager.stop()
        pytest.skip(f"browser tests need Chromium: apt-get install chromium (scripts/test.sh does) or "
                    f"`playwright install chromium` ({str(err).splitlines()[0][:120]})")
    yield instance
    instance.close()
    manager.stop()


@pytest.fixture
def page_on(browser, live_server):
    """Factory: a new page on the live server, every request it makes recorded in ``page.requests``."""
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)  # a busy 2-core CI box: wait for state, never time it
    context = browser.new_context(viewport={"width": 1100, "height": 760}, accept_downloads=True)
    origin, _ = live_server

    def new_page():
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.requests = []
        page.on("request", lambda request: page.requests.append(request.url))
        page.goto(origin + "/")
        page.wait_for_selector("body[data-ready=true]")
        return page

    yield new_page
    context.close()


#: every thumbnail of the page's current photo is in (``previous``: a photo id that no longer counts)
ALL_THUMBNAILS = ("previous => { const photo = document.body.dataset.photo; return !!photo && photo !== previous && "
                  "document.getElementById('sheet').dataset.photo === photo; }")


def wait_until(page, function: str, arg: object = None) -> None:
    """Polls the JavaScript ``function(arg)`` until it is true (page.wait_for_function evaluates
    strings, which the page's Content-Security-Policy forbids; page.evaluate is not affected)."""
    while not page.evaluate(function, arg):
        page.wait_for_timeout(50)


def wait_preview(page, *parts: str, pixels: bool = True) -> bytes | None:
    """Waits until the preview shows settings holding every ``part``; returns what it shows (a screenshot)."""
    wait_until(page, "parts => { const p = document.getElementById('preview'); return p.dataset.state === 'done' && "
                     "!p.hidden && parts.every(x => (p.dataset.key || '').split('&').includes(x)); }", list(parts))
    return page.locator("#preview").screenshot() if pixels else None


def assert_same_origin(page, origin: str) -> None:
    assert page.requests
    for url in page.requests:
        if url.startswith("data:"):
            continue
        base = url[len("blob:"):] if url.startswith("blob:") else url
        parts = urlsplit(base)
        assert f"{parts.scheme}://{parts.netloc}" == origin, url


def check_upload_choose_slide_blend_download(page_on, live_server, tmp_path):
    from playwright.sync_api import expect

    origin, _ = live_server
    page = page_on()
    expect(page.locator("#painting-zone")).to_be_hidden()  # no arbitrary-style network loaded
    a_photo(width=400, height=300).save(tmp_path / "landscape.jpg")
    page.set_input_files("#file", tmp_path / "landscape.jpg")
    wait_until(page, ALL_THUMBNAILS)
    thumbnails = page.locator("#sheet .style")
    assert thumbnails.count() >= 4 and set(thumbnails.evaluate_all("bs => bs.map(b => b.dataset.state)")) == {"done"}
    assert all(w > 0 for w in thumbnails.locator("img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)"))

    page.click('.style[data-model="plain.ckpt"]')  # one style, no strength input: controls off, and why
    wait_preview(page, "model=plain.ckpt")
    expect(page.locator("#strength")).to_be_disabled()
    expect(page.locator("#strength-note")).to_contain_text("No strength control")
    expect(page.locator("#blend-with")).to_be_disabled()

    page.click('.style[data-model="cond.ckpt"][data-style="tiny0"]')
    expect(page.locator("#strength")).to_be_enabled()
    before = wait_preview(page, "model=cond.ckpt", "style=tiny0")
    page.locator("#strength").fill("1.8")
    slid = wait_preview(page, "style=tiny0", "strength=1.8")
    assert slid != before
    page.select_option("#blend-with", "tiny2")
    page.locator("#blend").fill("0.7")
    blended = wait_preview(page, "strength=1.8", "blend_with=tiny2", "blend=0.7")
    assert blended not in (before, slid)

    page.click("#full")
    expect(page.locator("#download")).to_be_visible()
    expect(page.locator("#progress-text")).to_contain_text("done: 400x300")
    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    assert download.suggested_filename == "landscape_cond.png"
    saved = tmp_path / "download.png"
    download.save_as(saved)
    with Image.open(saved) as img:
        assert img.format == "PNG" and img.size == (400, 300)
        assert img.text["fastmmd:strength"] == "1.8" and img.text["fastmmd:mix"] == "tiny0=0.3,tiny2=0.7"
        assert img.text["fastmmd:source"] == "landscape.jpg"

    if page.locator('.style[data-model="wave"]').count():  # the README's picture: a shipped style
        page.click('.style[data-model="wave"]')
        wait_preview(page, "model=wave")
    shot = REPO / "docs" / "images" / "serve.png" if os.environ.get("FASTMMD_SCREENSHOTS") else tmp_path / "serve.png"
    page.screenshot(path=shot, full_page=True)
    with Image.open(shot) as img:
        small = img.convert("RGB").quantize(colors=128)
    small.save(shot, optimize=True)

    page.set_input_files("#file", files=[{"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": b"not a jpeg"}])
    expect(page.locator("#error")).to_have_text("'broken.jpg' is not an image Pillow can read")
    shown = page.evaluate("document.body.dataset.photo")
    page.set_input_files("#file", tmp_path / "landscape.jpg")  # the server kept serving
    wait_until(page, ALL_THUMBNAILS, shown)
    expect(page.locator("#error")).to_be_hidden()
    assert_same_origin(page, origin)


DROP = """([base64, name, how]) => {
  const data = new DataTransfer();
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  data.items.add(new File([bytes], name, {type: 'image/png'}));
  if (how === 'drop') document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
  else document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true}));
}"""


def check_two_pages_at_once_dropped_and_pasted(page_on, live_server, tmp_path):
    origin, _ = live_server
    first, second = page_on(), page_on()
    first.evaluate(DROP, [base64.b64encode(encode(a_photo(seed=7, width=256, height=200), "PNG")).decode(), "dropped.png",
                          "drop"])
    second.evaluate(DROP, [base64.b64encode(encode(a_photo(seed=8, width=200, height=256), "PNG")).decode(), "pasted.png",
                           "paste"])
    for page in (first, second):
        wait_until(page, ALL_THUMBNAILS)
    first.click('.style[data-model="cond.ckpt"][data-style="tiny1"]')
    second.click('.style[data-model="cond.ckpt"][data-style="tiny1"]')
    for page, name, size in ((first, "dropped.png", [256, 200]), (second, "pasted.png", [200, 256])):
        wait_preview(page, "model=cond.ckpt", "style=tiny1", pixels=False)
        assert page.locator("#status").inner_text().startswith(f"{name}: preview")
        assert page.evaluate("[document.getElementById('preview').naturalWidth, "
                             "document.getElementById('preview').naturalHeight]") == size
        assert_same_origin(page, origin)


def check_camera_live_then_snap(page_on, live_server, tmp_path):
    """The (fake) camera: frames come back stylized, follow the chosen style, and one becomes the photo."""
    from playwright.sync_api import expect

    origin, _ = live_server
    page = page_on()
    expect(page.locator("#camera")).to_be_visible()
    page.click('.style[data-model="cond.ckpt"][data-style="tiny2"]')
    page.click("#camera")
    wait_until(page, "() => Number(document.getElementById('preview').dataset.frames || 0) >= 2")
    assert page.evaluate("document.getElementById('preview').dataset.key").startswith("live:")
    wait_preview(page, "live:model=cond.ckpt", "style=tiny2", pixels=False)
    page.click('.style[data-model="cond.ckpt"][data-style="tiny0"]')  # a new style reaches the next frames
    wait_preview(page, "live:model=cond.ckpt", "style=tiny0", pixels=False)
    page.click("#snap")
    wait_until(page, ALL_THUMBNAILS)
    wait_preview(page, "model=cond.ckpt", "style=tiny0", pixels=False)
    assert page.locator("#status").inner_text().startswith("camera.jpg: preview")
    expect(page.locator("#camera")).to_have_text("Camera (live)")
    assert_same_origin(page, origin)


def check_video_clip_to_mp4(page_on, live_server, tmp_path):
    """A clip: the sheet and previews show its first frame, then the whole clip comes back as an MP4."""
    import av
    from playwright.sync_api import expect

    origin, _ = live_server
    page = page_on()
    page.set_input_files("#file", write_clip(tmp_path / "walk.mp4", frames=10))
    wait_until(page, ALL_THUMBNAILS)
    page.click('.style[data-model="cond.ckpt"][data-style="tiny1"]')
    wait_preview(page, "model=cond.ckpt", "style=tiny1", pixels=False)
    assert page.locator("#status").inner_text().startswith("walk.mp4 (its first frame): preview")
    expect(page.locator("#full")).to_have_text("Stylize the clip")
    page.click("#full")
    expect(page.locator("#download")).to_have_text("Download MP4")
    expect(page.locator("#progress-text")).to_contain_text("done: 10 frames")
    with page.expect_download() as download_info:
        page.click("#download")
    assert download_info.value.suggested_filename == "walk_cond.mp4"
    download_info.value.save_as(tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10
    assert_same_origin(page, origin)


def check_several_photos_to_a_zip(page_on, live_server, tmp_path):
    import zipfile

    from playwright.sync_api import expect

    origin, _ = live_server
    page = page_on()
    files = []
    for k in range(3):
        files.append(tmp_path / f"photo{k}.jpg")
        a_photo(seed=k, width=160, height=120).save(files[-1])
    page.set_input_files("#file", files)
    wait_until(page, ALL_THUMBNAILS)
    expect(page.locator("#full")).to_have_text("Stylize all 3 photos")
    page.click('.style[data-model="plain.ckpt"]')
    page.click("#full")
    expect(page.locator("#download")).to_have_text("Download ZIP")
    expect(page.locator("#download")).to_be_visible()
    with page.expect_download() as download_info:
        page.click("#download")
    assert download_info.value.suggested_filename == "plain_3_photos.zip"
    download_info.value.save_as(tmp_path / "photos.zip")
    with zipfile.ZipFile(tmp_path / "photos.zip") as archive:
        assert archive.namelist() == ["photo0_plain.png", "photo1_plain.png", "photo2_plain.png"]
    assert_same_origin(page, origin)


@pytest.mark.slow
def test_page_in_chromium(page_on, live_server, tmp_path):
    """The page in headless Chromium, one scenario after another (one test, so a machine without a
    browser reports one skip line): upload, choose, slide, blend, download, a broken file; two pages
    at once; the camera; a video clip; several photos. Each scenario checks that the page asked
    nothing of any host but its server."""
    for check in (check_upload_choose_slide_blend_download, check_two_pages_at_once_dropped_and_pasted,
                  check_camera_live_then_snap, check_video_clip_to_mp4, check_several_photos_to_a_zip):
        folder = tmp_path / check.__name__
        folder.mkdir()
        check(page_on, live_server, folder)
