"""Times ``fastmmd serve`` from the browser: the contact sheet, a preview and the full-size result.

Starts the server in this process (uvicorn in a thread, every shipped style, on 127.0.0.1 and a
free port), opens the page in headless Chromium through Playwright and measures what a user
waits for, from the page's side: dropping a photo until every thumbnail is shown (the contact
sheet), clicking a style until its <= 384 px preview is shown (the server's preview cache emptied
first, so each preview is computed), and "Full size" until the full-size PNG is shown. Prints a
Markdown table with the CPU (lscpu's model name, torch's CPU capability) and the thread count.

Usage: python scripts/bench_serve.py [--photo photo.jpg] [--size 1024] [--repeats 5] [--threads N] [--precision auto|32|bf16]
[--screenshot page.png] (the page with the shipped styles on the photo, starry_night chosen at the end:
the README's picture, docs/images/serve_zoo.jpg; the format follows the suffix)
(default photo: a procedural landscape from fastmmd.core.samples, 1024 x 768). Needs the serve extra,
Playwright and Chromium (Debian's ``chromium``, or $FASTMMD_CHROMIUM).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                 "--no-first-run"]


def cpu_name() -> str:
    """lscpu's "Model name" (or the platform's processor string)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    import platform

    return platform.processor() or "unknown CPU"


def seconds(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, default=None, help="photo to use (default: a procedural landscape)")
    parser.add_argument("--size", type=int, default=1024, help="longer side of the default photo (px)")
    parser.add_argument("--repeats", type=int, default=5, help="previews and full-size results timed")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto",
                        help="as fastmmd serve --precision (auto: bf16 where it is fast)")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="at the end, choose starry_night and save the page as this PNG")
    args = parser.parse_args()

    import torch
    from playwright.sync_api import sync_playwright

    from fastmmd.apps.serve import bind, url_of
    from fastmmd.apps.serve.app import Catalog, create_app, serve_forever
    from fastmmd.base.precision import resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    bf16 = resolve_precision(args.precision, torch.device("cpu")) == "bf16"
    catalog = Catalog.load(None, zoo=True, bf16=bf16, warn=lambda line: print(line, file=sys.stderr))
    names = [m.name for m in catalog.models]
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        photo = args.photo
        if photo is None:
            from fastmmd.core.samples import photo as sample_photo

            photo = Path(tmp) / "landscape.jpg"
            sample_photo(7, args.size).crop((0, 0, args.size, args.size * 3 // 4)).save(photo, quality=92)
        from PIL import Image

        with Image.open(photo) as img:
            width, height = img.size
        work = Path(tmp) / "work"
        work.mkdir()
        app = create_app(catalog, work, allowed_hosts=["127.0.0.1"])
        state = app.state.serve
        sock = bind("127.0.0.1", 0)
        box: list = []
        thread = threading.Thread(target=serve_forever, args=(app, sock), kwargs={"server_box": box}, daemon=True)
        thread.start()
        while not (box and box[0].started):
            time.sleep(0.02)
        origin = url_of(sock).rstrip("/")
        executable = os.environ.get("FASTMMD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
        computed: list[float] = []  # the server's own time per preview (the worker's stylize + JPEG)
        preview = state.preview

        def timed(settings):
            clock = time.perf_counter()
            try:
                return preview(settings)
            finally:
                computed.append(time.perf_counter() - clock)

        state.preview = timed
        sheet: list[float] = []
        previews: list[float] = []
        full: list[float] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
            # bypass_csp: lets Playwright's wait_for_function poll on every animation frame
            page = browser.new_page(viewport={"width": 1200, "height": 900}, bypass_csp=True)
            page.set_default_timeout(int(os.environ.get("BENCH_SERVE_TIMEOUT_MS", "600000")))
            page.goto(origin + "/")
            page.wait_for_selector("body[data-ready=true]")

            def wait_preview(prefix: str, model: str) -> None:
                page.wait_for_function(
                    "([prefix, model]) => { const p = document.getElementById('preview'); const k = p.dataset.key || '';"
                    " return p.dataset.state === 'done' && k.startsWith(prefix) && k.split('&').includes('model=' + model)"
                    " && p.complete && p.naturalWidth > 0; }", arg=[prefix, model], polling="raf")

            for _ in range(2):  # a new upload each time: nothing cached
                shown = page.evaluate("document.body.dataset.photo || ''")
                start = time.perf_counter()
                page.set_input_files("#file", photo)
                page.wait_for_function("previous => { const photo = document.body.dataset.photo; return !!photo && "
                                       "photo !== previous && document.getElementById('sheet').dataset.photo === photo; }",
                                       arg=shown, polling="raf")
                sheet.append(time.perf_counter() - start)
            server_previews, steps = [], []
            for k in range(args.repeats):
                model = names[(k + 1) % len(names)]
                with state.lock:
                    state.previews.clear()  # so the click computes its preview
                computed.clear()
                start = time.perf_counter()
                page.click(f'.style[data-model="{model}"]')
                wait_preview("photo=", model)
                previews.append(time.perf_counter() - start)
                server_previews.extend(computed)
                start = time.perf_counter()
                page.click("#full")
                wait_preview("full:", model)
                full.append(time.perf_counter() - start)
                steps.append(next(reversed(state.jobs.values())).timings)
            if args.screenshot:
                page.set_viewport_size({"width": 1100, "height": 760})
                chosen = "starry_night" if "starry_night" in names else names[-1]
                page.click(f'.style[data-model="{chosen}"]')
                wait_preview("photo=", chosen)
                page.screenshot(path=str(args.screenshot), full_page=True)
            browser.close()
        box[0].should_exit = True
        thread.join(timeout=30)
        state.close()
        sock.close()

    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; torch {torch.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread(s), "
          f"{'bfloat16' if bf16 else 'float32'} (--precision {args.precision})")
    print(f"photo: {width}x{height}; {len(names)} shipped styles; Chromium through Playwright, headless\n")
    print("| what the page waits for | seconds: median (min, max) | runs | goal |")
    print("|---|---|---|---|")
    print(f"| contact sheet: drop the photo -> all {len(names)} thumbnails shown (upload, decode, "
          f"{len(names)} previews) | {seconds(sheet)} | {len(sheet)} | <= 2 |")
    print(f"| preview: click a style -> its <= 384 px preview shown (computed, not cached) | {seconds(previews)} | "
          f"{len(previews)} | <= 0.3 |")
    print(f"| full size: click \"Full size\" -> the {width}x{height} PNG shown (decode, stylize, write PNG, load) | "
          f"{seconds(full)} | {len(full)} | <= 1.5 |")
    print(f"\nin the server: a preview {seconds(server_previews)} s (stylize at <= 384 px + JPEG); a full-size result: "
          + ", ".join(f"{key} {statistics.median(t[key] for t in steps):.3f}" for key in ("queued", "decode", "stylize", "write"))
          + " s (medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
