"""fastmmd serve: the API through Starlette's TestClient and the command line in process.

The networks are tiny (conftest.models_dir): ``cond.ckpt`` has three styles and a strength input,
``plain.ckpt`` neither; one or two shipped styles join them when the zoo is there. A real server
(the console script stopped by Ctrl+C and SIGTERM, concurrent requests over HTTP) and the page in
headless Chromium: tests/e2e/test_serve_live.py. No assertion times anything: waits poll for state.
"""

from __future__ import annotations

import io
import os
import shutil

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="fastmmd serve needs FastAPI: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="fastmmd serve needs uvicorn: pip install -e '.[serve]'")

from conftest import REPO, ZOO_STYLES, synthetic_image, write_tiny_checkpoint  # noqa: E402
from serving import a_photo, encode, upload, wait_job, write_clip  # noqa: E402

from fastmmd.__main__ import main  # noqa: E402
from fastmmd.apps.serve import bind  # noqa: E402
from fastmmd.apps.serve.app import Catalog, Limits, create_app  # noqa: E402
from fastmmd.commands.serve import build_parser  # noqa: E402


@pytest.fixture
def client(catalog, tmp_path):
    from starlette.testclient import TestClient

    (tmp_path / "work").mkdir()
    app = create_app(catalog, tmp_path / "work", Limits(upload_bytes=2_000_000, pixels=1_000_000, video_bytes=1_000_000),
                     allowed_hosts=["127.0.0.1"])
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        yield c
    app.state.serve.close()


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


def test_a_job_behind_other_work_says_it_is_queued_and_how_much_is_ahead(client):
    """The one worker thread runs one piece of work at a time: a full-size job posted while it is busy
    is ``queued`` and its state counts the work waiting (the page shows it); it runs once the worker is free."""
    import threading

    photo = upload(client, a_photo()).json()["id"]
    worker = client.app.state.serve.worker
    started, release = threading.Event(), threading.Event()
    busy = worker.submit(lambda: (started.set(), release.wait(120)))
    assert started.wait(120)  # the worker holds the blocker: what comes next waits in the queue
    try:
        job = client.post("/api/jobs", json={"photo": photo, "model": "cond.ckpt", "style": "tiny1"}).json()
        queued = client.get(f"/api/jobs/{job['id']}").json()
        assert queued["state"] == "queued" and queued["waiting"] >= 1, queued
    finally:
        release.set()
    busy.result(timeout=120)
    assert wait_job(client, job["id"])["state"] == "done"


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


