"""fastmmd serve for real: the console script on all interfaces, stopped by Ctrl+C or SIGTERM; a
uvicorn server on 127.0.0.1 answering concurrent requests; and the page in headless Chromium.

The browser test drives Debian's ``chromium`` (or Playwright's own) through Playwright against the
real server and records every request the page makes (its scenarios are ``check_*`` functions it
runs in turn, so a machine without Chromium reports one skip line); it and the command-line runs are
marked ``slow`` (scripts/test.sh runs them). Set ``FASTMMD_SCREENSHOTS=1`` to write the page's
screenshot to docs/images/serve.png (the README's picture) instead of a temporary folder. The API in
process: tests/integration/test_serve.py. No assertion times anything: waits poll for state.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import urlsplit

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="fastmmd serve needs FastAPI: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="fastmmd serve needs uvicorn: pip install -e '.[serve]'")

from conftest import REPO  # noqa: E402
from serving import a_photo, encode, write_clip  # noqa: E402

from fastmmd.apps.serve import bind, url_of  # noqa: E402
from fastmmd.apps.serve.app import create_app, serve_forever  # noqa: E402


# ------------------------------------------------------------------------------------------ command line
@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.heavy(4)
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
@pytest.mark.heavy(10)
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
