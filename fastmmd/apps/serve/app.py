"""The server behind ``fastmmd serve``: a FastAPI app, one worker thread, uploads in a temporary folder.

Contracts:

* **Models** are loaded once (:meth:`Catalog.load`: every shipped style of :mod:`fastmmd.infer.zoo`
  and the ``.pt``/``.pt2``/``.ckpt`` files of ``--models``, through :func:`fastmmd.infer.stylize.load_stylizer`)
  and shared by every request. The page names a model by its catalogue name only (a shipped
  style's name, a ``--models`` file's name); nothing a request sends becomes a path.
* **Work is queued**: all decoding and stylization runs on one worker thread (:class:`Worker`),
  interactive previews first, so concurrent requests (two tabs) each get their images and never
  run two networks at once on the CPU.
* **Uploads** are checked (``--max-upload-mb`` while streaming, ``--max-megapixels`` from the
  header before decoding, then :func:`fastmmd.base.images.decode_image` with its decompression-bomb
  limit) and stored under random names in the temporary folder the command removes on exit;
  results are written there too. Only the newest photos and results are kept.
* **Errors** come back as ``{"error": "one line"}`` with a 4xx status (5xx for a bug, logged); the
  server keeps serving.
* **Same origin only**: every response carries a Content-Security-Policy that allows the page to
  load and connect to its own origin only, and on a loopback address requests must name a
  loopback host (no DNS rebinding).

API (JSON unless stated): ``GET /api/styles``; ``POST /api/photo?name=`` (the file as the body; a name
with a video suffix uploads a clip, whose first frame the previews show and whose job writes an MP4);
``GET /api/preview?photo=&model=[&style=&blend_with=&blend=&strength=&painting=]`` (JPEG, <= 384 px);
``POST /api/live?model=...`` (a camera frame as the body -> JPEG, nothing stored);
``POST /api/jobs`` (the same settings as JSON; ``photos``: several ids for a ZIP) -> ``{"id"}``; ``GET /api/jobs/{id}[?wait=S]`` (state
and progress; ``wait``: long-poll until they change); ``GET /api/jobs/{id}/result`` (the full-size PNG).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import io
import itertools
import math
import queue
import re
import secrets
import sys
import threading
import time
import traceback
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from PIL import Image

from fastmmd.base.errors import ImageError, UserError, one_line
from fastmmd.base.images import decode_image, fit_size, pil_to_tensor, resize, save_image, tensor_to_pil
from fastmmd.infer.conditions import ConditionSpace
from fastmmd.infer.video import VIDEO_SUFFIXES, is_video
from fastmmd.model.conditioning import DEFAULT_STRENGTH
from fastmmd.model.files import NETWORK_SUFFIXES

#: Previews and contact-sheet thumbnails: the photo's longer side scaled down to this.
PREVIEW_SIZE = 384
#: Photos, results and previews kept (oldest dropped first).
MAX_PHOTOS, MAX_JOBS, MAX_PREVIEWS = 64, 16, 512
#: Priorities of the worker queue: lower runs first.
INTERACTIVE, SHEET, FULL = 0, 1, 2
_TOKEN = re.compile(r"[0-9a-f]{32}")
STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _preview(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> the same scaled to a long edge of at most PREVIEW_SIZE (what previews and the sheet show)."""
    return resize(rgb, fit_size(rgb.shape[1], rgb.shape[2], PREVIEW_SIZE)) if max(rgb.shape[1:]) > PREVIEW_SIZE else rgb


class PageError(Exception):
    """A request the page must explain in one line; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one upload may be: ``upload_bytes`` of image file (``video_bytes`` of video), ``pixels`` decoded
    (per frame for a video)."""

    upload_bytes: int = 50_000_000
    pixels: int = 50_000_000
    video_bytes: int = 500_000_000


# ------------------------------------------------------------------------------------------ models
@dataclasses.dataclass
class Model:
    """One network the page can name: ``name`` (what the page sends), a label, where it came from."""

    name: str
    label: str
    source: str  # "zoo" or "models"
    stylizer: Any  # fastmmd.infer.stylize.Stylizer, shared by every request
    bf16: bool = False  # runs in bfloat16

    @property
    def space(self) -> ConditionSpace:
        return self.stylizer.space

    @property
    def arbitrary(self) -> bool:
        """A network that takes any painting (feature-detected: ``ConditionSpace.arbitrary``)."""
        return bool(getattr(self.space, "arbitrary", False)) and hasattr(self.stylizer, "with_paintings")

    def describe(self) -> dict[str, Any]:
        """What the page shows: name, label, sub-styles, strength range, and why a control is off."""
        space = self.space
        strength = None
        if space.strength_range is not None:
            lo, hi = space.strength_range
            strength = {"min": lo, "max": hi, "default": DEFAULT_STRENGTH}
        return {
            "name": self.name, "label": self.label, "source": self.source, "styles": list(space.styles),
            "strength": strength, "arbitrary": self.arbitrary,
            "no_strength": None if strength else "No strength control: this network was trained without a strength "
                                                 "input (model.conditioning: [strength] trains one).",
            "no_blend": None if len(space.styles) > 1 else "No blend: this network learnt one style (blends need a "
                                                           "network trained on several).",
        }


def _zoo_label(row: dict[str, Any]) -> str:
    title = row.get("title") or row["name"].replace("_", " ")
    return f"{title} ({row['painter']})" if row.get("painter") else str(title)


class Catalog:
    """The models the server offers, loaded once; look one up by name with :meth:`get`."""

    def __init__(self, models: list[Model]) -> None:
        self.models = models
        self._by_name = {m.name: m for m in models}

    @classmethod
    def load(cls, models_dir: Path | None = None, device: str = "cpu", zoo: bool = True,
             zoo_names: list[str] | None = None, warn: Callable[[str], None] = lambda line: None,
             bf16: bool = False) -> "Catalog":
        """The shipped styles (all, or ``zoo_names``) and the model files in ``models_dir``, on
        ``device`` (in bfloat16 with ``bf16``, as ``fastmmd stylize --bf16``).

        A file that cannot be loaded is skipped with a ``warn`` line; no model at all is a
        :class:`UserError`.
        """
        from fastmmd.infer.stylize import load_stylizer
        from fastmmd.infer.zoo import NoZoo, describe_styles

        models: list[Model] = []
        if zoo:
            try:
                rows = describe_styles()
            except NoZoo as err:
                warn(f"{err}")
                rows = []
            for row in rows:
                if zoo_names is not None and row["name"] not in zoo_names:
                    continue
                try:
                    stylizer = load_stylizer(row["name"], device=device, bf16=bf16)
                except UserError as err:
                    warn(f"skipped shipped style {row['name']!r}: {one_line(err)}")
                    continue
                models.append(Model(row["name"], _zoo_label(row), "zoo", stylizer, bf16))
        if models_dir is not None:
            for path in sorted(Path(models_dir).iterdir()):
                if not (path.is_file() and path.suffix.lower() in NETWORK_SUFFIXES):
                    continue
                try:
                    stylizer = load_stylizer(path, device=device, bf16=bf16)
                except (UserError, OSError, RuntimeError, ValueError) as err:
                    warn(f"skipped {path.name!r}: {one_line(err)}")
                    continue
                styles = ", ".join(Path(s).stem for s in stylizer.metadata.get("style_images") or [])
                label = f"{path.stem} ({styles})" if styles and not stylizer.space.conditioned else path.stem
                models.append(Model(path.name, label, "models", stylizer, bf16))
        if not models:
            raise UserError("no styles to serve: no shipped styles were found and --models gave no loadable "
                            ".pt/.pt2/.ckpt file")
        return cls(models)

    def get(self, name: str) -> Model:
        """The model called ``name``, or a :class:`PageError` (404)."""
        model = self._by_name.get(name)
        if model is None:
            raise PageError(f"there is no style {name[:60]!r} on this server", 404)
        return model


# ------------------------------------------------------------------------------------------ worker
class Worker:
    """One thread that runs every piece of model work, lowest priority number first (FIFO within one)."""

    def __init__(self) -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._loop, name="fastmmd-serve-worker", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], Any], priority: int = INTERACTIVE) -> concurrent.futures.Future:
        """Queues ``fn``; the future holds its result or exception."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((priority, next(self._order), fn, future))
        return future

    async def run(self, fn: Callable[[], Any], priority: int = INTERACTIVE) -> Any:
        """Queues ``fn`` and awaits it without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(fn, priority))

    def waiting(self) -> int:
        """Pieces of work queued and not started."""
        return self._queue.qsize()

    def close(self) -> None:
        """Stops the thread after the work already queued."""
        self._queue.put((math.inf, next(self._order), None, None))
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            _, _, fn, future = self._queue.get()
            if fn is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as err:  # noqa: BLE001 - handed to the request that asked
                future.set_exception(err)


# ------------------------------------------------------------------------------------------ state
@dataclasses.dataclass
class Photo:
    """An upload: its file in the work folder, its name (for messages and downloads), the preview."""

    path: Path
    name: str
    width: int
    height: int
    preview: torch.Tensor  # (3, h, w) in [0, 1], longer side <= PREVIEW_SIZE
    frames: int | None = None  # a video clip: its frame count (if the container tells); previews show its first frame
    video: bool = False

    def decode(self, with_alpha: bool = False) -> tuple[Image.Image, Image.Image | None]:
        """The full-size image again (RGB, alpha); a 404 if its file was dropped meanwhile."""
        try:
            data = self.path.read_bytes()
        except OSError:
            raise PageError(f"{self.name!r} is no longer on the server; drop it again", 404) from None
        return decode_image(data, self.name, with_alpha=with_alpha)


@dataclasses.dataclass
class Job:
    """A full-size result being computed: state ``queued``/``running``/``done``/``error``, progress."""

    id: str
    state: str = "queued"
    done: int = 0
    total: int = 1
    message: str = "waiting for the worker"
    error: str | None = None
    path: Path | None = None
    filename: str = "stylized.png"
    started: float = dataclasses.field(default_factory=time.monotonic)
    finished: float | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds per step, in the worker

    def describe(self) -> dict[str, Any]:
        seconds = (self.finished or time.monotonic()) - self.started
        return {"id": self.id, "state": self.state, "done": self.done, "total": self.total, "message": self.message,
                "error": self.error, "seconds": round(seconds, 2), "filename": self.filename,
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the page asks for: a photo, a model, and (for conditioned networks) style, blend, strength."""

    photo: str
    model: str
    style: str | None = None
    blend_with: str | None = None
    blend: float = 0.0
    strength: float | None = None
    painting: str | None = None


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_")[:60]
    return stem or "photo"


class ServeState:
    """Everything a request touches: catalog, worker, uploads, previews and jobs, all in ``workdir``."""

    def __init__(self, catalog: Catalog, workdir: Path, limits: Limits) -> None:
        self.catalog = catalog
        self.workdir = Path(workdir)
        self.limits = limits
        self.worker = Worker()
        self.lock = threading.Lock()
        self.photos: collections.OrderedDict[str, Photo] = collections.OrderedDict()
        self.previews: collections.OrderedDict[tuple, bytes] = collections.OrderedDict()
        self.jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()

    def close(self) -> None:
        """Stops the worker (the command removes the work folder)."""
        self.worker.close()

    # ---- uploads
    def add_photo(self, data: bytes, name: str) -> tuple[str, Photo]:
        """Decodes and checks an upload (worker thread), stores it, returns (token, photo)."""
        most = f"this server takes photos up to {self.limits.pixels / 1e6:g} Mpx (fastmmd serve --max-megapixels)"
        try:
            with Image.open(io.BytesIO(data)) as probe:  # the header only: refuse huge images before decoding
                w, h = probe.size
        except Image.DecompressionBombError:
            raise PageError(f"{name!r} has far too many pixels (a decompression bomb?); {most}", 413) from None
        except Exception:  # noqa: BLE001 - decode_image below says what is wrong, in its words
            w = h = 0
        if w * h > self.limits.pixels:
            raise PageError(f"{name!r} is {w}x{h} = {w * h / 1e6:.3g} Mpx; {most}", 413)
        rgb, _ = decode_image(data, name)
        t = pil_to_tensor(rgb)
        token = secrets.token_hex(16)
        path = self.workdir / f"photo-{token}"
        path.write_bytes(data)
        return token, self._keep(token, Photo(path, name, rgb.size[0], rgb.size[1], _preview(t)))

    def _keep(self, token: str, photo: Photo) -> Photo:
        """Stores an upload under ``token``; the oldest beyond MAX_PHOTOS are dropped with their files."""
        with self.lock:
            self.photos[token] = photo
            while len(self.photos) > MAX_PHOTOS:
                _, old = self.photos.popitem(last=False)
                old.path.unlink(missing_ok=True)
        return photo

    def add_video(self, path: Path, name: str, token: str) -> tuple[str, Photo]:
        """Checks an uploaded clip already written to ``path`` (worker thread): its first frame becomes
        the picture the previews and the contact sheet show. Returns (token, photo)."""
        from fastmmd.infer.video import VideoSource, _rotation, _upright

        try:
            source = VideoSource(path)
        except UserError as err:
            raise PageError(one_line(err).replace(str(path), name).replace(str(self.workdir), "the server's folder"),
                            415) from None
        try:
            width, height = source.size
            if width * height > self.limits.pixels:
                raise PageError(f"{name!r} has frames of {width}x{height}; this server takes up to "
                                f"{self.limits.pixels / 1e6:g} Mpx (fastmmd serve --max-megapixels)", 413)
            first = next(iter(source.frames()), None)
            if first is None:
                raise PageError(f"{name!r} holds no video frames", 415)
            rgb = _upright(first.rgb, _rotation(source.rotation))
            count = source.count
        except PageError:
            path.unlink(missing_ok=True)
            raise
        finally:
            source.close()
        return token, self._keep(token, Photo(path, name, rgb.shape[2], rgb.shape[1], _preview(rgb), count, True))

    def photo(self, token: str | None, what: str = "photo") -> Photo:
        """The upload called ``token``, or a one-line 404 (it may have been dropped as old)."""
        with self.lock:
            photo = self.photos.get(token) if token and _TOKEN.fullmatch(token) else None
        if photo is None:
            raise PageError(f"that {what} is no longer on the server; drop it again", 404)
        return photo

    # ---- settings -> a stylizer
    def stylizer_for(self, s: Settings) -> tuple[Any, Model, dict[str, str]]:
        """(stylizer asked for ``s``, its model, the settings as PNG text); one-line errors."""
        model = self.catalog.get(s.model)
        space = model.space
        if s.strength is not None and space.strength_range is None:
            raise PageError(f"{model.label} has no strength control: it was trained without a strength input")
        if (s.style is not None or s.blend_with is not None) and len(space.styles) < 2:
            raise PageError(f"{model.label} was trained on one style; it has no styles to choose or blend")
        if not (math.isfinite(s.blend) and 0.0 <= s.blend <= 1.0):
            raise PageError(f"the blend must lie in 0..1, not {s.blend}")
        try:
            condition = space.resolve(style=s.style, strength=s.strength)
            if s.blend_with is not None and s.blend > 0:
                weights = [0.0] * len(space.styles)
                weights[space.index(s.style or space.styles[0], "style")] += 1.0 - s.blend
                weights[space.index(s.blend_with, "blend")] += s.blend
                condition = dataclasses.replace(condition, mix=tuple(weights))
        except UserError as err:  # the CLI's words, with the page's names for its controls
            raise PageError(re.sub(r"--(strength|style|mix)\b", r"\1", one_line(err))) from None
        stylizer = model.stylizer.conditioned(condition) if space.conditioned else model.stylizer
        settings = {"fastmmd:model": model.name, "fastmmd:style": model.label,
                    "fastmmd:precision": "bfloat16" if model.bf16 else "float32"}
        if space.conditioned:
            settings["fastmmd:condition"] = space.label(condition)
        if condition.mix is not None:
            settings["fastmmd:mix"] = ",".join(f"{n}={w:.4g}" for n, w in zip(space.styles, condition.mix) if w > 0)
        if space.strength_range is not None:
            settings["fastmmd:strength"] = f"{DEFAULT_STRENGTH if s.strength is None else s.strength:g}"
        if model.arbitrary:
            painting = self.photo(s.painting, "painting") if s.painting else None
            if painting is None:
                raise PageError(f"{model.label} takes any painting: drop a painting first")
            stylizer = stylizer.with_paintings([painting.decode()[0]])
            settings["fastmmd:painting"] = painting.name
        return stylizer, model, settings

    # ---- previews
    def preview(self, s: Settings) -> bytes:
        """The JPEG preview of ``s`` (worker thread; cached)."""
        key = dataclasses.astuple(s)
        with self.lock:
            if key in self.previews:
                self.previews.move_to_end(key)
                return self.previews[key]
        photo = self.photo(s.photo)
        stylizer, _, _ = self.stylizer_for(s)
        out = tensor_to_pil(stylizer.stylize_image(photo.preview))
        buffer = io.BytesIO()
        out.save(buffer, format="JPEG", quality=90)
        data = buffer.getvalue()
        with self.lock:
            self.previews[key] = data
            while len(self.previews) > MAX_PREVIEWS:
                self.previews.popitem(last=False)
        return data

    def live(self, frame: bytes, s: Settings) -> bytes:
        """A camera frame stylized at preview size, as JPEG (worker thread; nothing is stored)."""
        rgb, _ = decode_image(frame, "camera frame")
        if rgb.size[0] * rgb.size[1] > self.limits.pixels:
            raise PageError(f"a camera frame of {rgb.size[0]}x{rgb.size[1]} is over the server's limit", 413)
        t = pil_to_tensor(rgb)
        if max(t.shape[1:]) > PREVIEW_SIZE:
            t = resize(t, fit_size(t.shape[1], t.shape[2], PREVIEW_SIZE))
        stylizer, _, _ = self.stylizer_for(s)
        buffer = io.BytesIO()
        tensor_to_pil(stylizer.stylize_image(t)).save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()

    def cached_preview(self, s: Settings) -> bytes | None:
        with self.lock:
            return self.previews.get(dataclasses.astuple(s))

    # ---- full-size jobs
    def new_job(self, s: Settings, batch: list[str] | None = None) -> Job:
        """Checks ``s`` now (so the page hears of a bad setting at once) and queues the full-size result:
        a PNG, an MP4 for a clip, or a ZIP of PNGs for a ``batch`` of several photos (``s.photo`` first)."""
        photo = self.photo(s.photo)
        if not self.catalog.get(s.model).arbitrary:  # an arbitrary-style model decodes its painting in the worker
            self.stylizer_for(s)
        job = Job(secrets.token_hex(16))
        job.filename = f"{_safe_stem(photo.name)}_{_safe_stem(s.model)}.{'mp4' if photo.video else 'png'}"
        photos = [self.photo(token) for token in batch or []]
        if len(photos) > 1:
            if len(photos) > MAX_PHOTOS // 2:
                raise PageError(f"at most {MAX_PHOTOS // 2} photos at once, not {len(photos)}")
            if any(p.video for p in photos):
                raise PageError("clips are stylized one at a time; drop a clip alone")
            job.filename = f"{_safe_stem(s.model)}_{len(photos)}_photos.zip"
            job.total = len(photos) + 1
            self._add_job(job)
            self.worker.submit(lambda: self._batch(job, s, list(batch or [])), FULL)
            return job
        self._add_job(job)
        self.worker.submit(lambda: (self._video if photo.video else self._full)(job, s), FULL)
        return job

    def _add_job(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.id] = job
            while len(self.jobs) > MAX_JOBS:
                _, old = self.jobs.popitem(last=False)
                if old.path is not None:
                    old.path.unlink(missing_ok=True)

    def _batch(self, job: Job, s: Settings, tokens: list[str]) -> None:
        """Full-size PNGs of several photos in one ZIP in the work folder (worker thread), photos counted."""
        import zipfile

        path = self.workdir / f"result-{job.id}.zip"
        try:
            job.state = "running"
            names: set[str] = set()
            with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
                for token in tokens:
                    photo = self.photo(token)
                    job.message = f"stylizing photo {job.done + 1} of {len(tokens)}: {photo.name}"
                    stylizer, _, settings = self.stylizer_for(dataclasses.replace(s, photo=token))
                    rgb, alpha = photo.decode(with_alpha=True)
                    out = stylizer.stylize_image(pil_to_tensor(rgb))
                    stem = f"{_safe_stem(photo.name)}_{_safe_stem(s.model)}"
                    name, k = f"{stem}.png", 1
                    while name in names:  # two photos of the same name
                        name, k = f"{stem}_{k}.png", k + 1
                    names.add(name)
                    png = self.workdir / f"part-{job.id}.png"
                    save_image(out, png, metadata={"Software": "fastmmd serve", **settings, "fastmmd:source": photo.name,
                                                   "fastmmd:size": f"{rgb.size[0]}x{rgb.size[1]}"}, alpha=alpha)
                    archive.write(png, name)
                    png.unlink()
                    job.done += 1
            job.path, job.done, job.state = path, job.total, "done"
            job.message = f"done: {len(tokens)} photos"
        except (UserError, PageError) as err:
            path.unlink(missing_ok=True)
            job.state, job.error, job.message = "error", one_line(err), "failed"
        except Exception as err:  # noqa: BLE001 - the server keeps serving; the trace goes to the log
            traceback.print_exc(file=sys.stderr)
            path.unlink(missing_ok=True)
            job.state, job.error, job.message = "error", f"internal error: {type(err).__name__}: {one_line(err)}", "failed"
        job.finished = time.monotonic()

    def job(self, token: str) -> Job:
        with self.lock:
            job = self.jobs.get(token) if _TOKEN.fullmatch(token) else None
        if job is None:
            raise PageError("that result is no longer on the server; ask for it again", 404)
        return job

    def _video(self, job: Job, s: Settings) -> None:
        """Stylizes a clip into an MP4 in the work folder (worker thread), counting frames for the progress bar."""
        from fastmmd.infer.video import stylize_video

        try:
            job.state, job.message = "running", "reading the clip"
            photo = self.photo(s.photo)
            stylizer, model, settings = self.stylizer_for(s)
            twin = stylizer.conditioned(stylizer.condition)  # counts frames; the shared stylizer stays untouched
            job.total = (photo.frames or 0) + 1
            batch_of = twin.stylize_batch

            def counted(batch: torch.Tensor) -> torch.Tensor:
                out = batch_of(batch)
                job.done += len(batch)
                job.total = max(job.total, job.done + 1)
                job.message = f"stylizing frame {job.done}" + (f" of {photo.frames}" if photo.frames else "")
                return out

            twin.stylize_batch = counted
            job.message = "stylizing the first frames"
            clock = time.perf_counter()
            path = self.workdir / f"result-{job.id}.mp4"
            comment = "; ".join(f"{k}={v}" for k, v in {**settings, "fastmmd:source": photo.name}.items())
            result = stylize_video(twin, photo.path, path, batch_size=4, progress=False,
                                   metadata={"comment": f"fastmmd serve: {comment}"})
            job.timings["stylize"] = time.perf_counter() - clock
            job.path, job.done, job.total = path, result.frames + 1, result.frames + 1
            job.state, job.message = "done", f"done: {result.frames} frames, {photo.width}x{photo.height}"
            job.finished = time.monotonic()
        except (UserError, PageError) as err:  # the page sees names, not the server's folders
            message = one_line(err).replace(str(self.workdir), "the server's folder")
            job.state, job.error, job.message, job.finished = "error", message, "failed", time.monotonic()
        except Exception as err:  # noqa: BLE001 - the server keeps serving; the trace goes to the log
            traceback.print_exc(file=sys.stderr)
            job.state, job.error, job.message = "error", f"internal error: {type(err).__name__}: {one_line(err)}", "failed"
            job.finished = time.monotonic()

    def _full(self, job: Job, s: Settings) -> None:
        """Computes a full-size result into the work folder (worker thread); errors go into the job."""
        from fastmmd.model.tiling import tile_spans

        try:
            job.state, job.message = "running", "reading the photo"
            photo = self.photo(s.photo)
            stylizer, model, settings = self.stylizer_for(s)
            clock = time.perf_counter()
            job.timings["queued"] = time.monotonic() - job.started
            rgb, alpha = photo.decode(with_alpha=True)
            x = pil_to_tensor(rgb)
            job.timings["decode"] = time.perf_counter() - clock
            height, width = x.shape[1:]
            tile = stylizer.auto_tile(1, height, width)
            if tile is not None:  # count tiles for the progress bar
                overlap = stylizer.overlap if stylizer.overlap is not None else max(32, tile // 4)
                overlap = min(overlap, tile // 2, tile - 1)
                job.total = len(tile_spans(height, tile, overlap)) * len(tile_spans(width, tile, overlap)) + 1
                forward = stylizer._forward

                def counted(batch: torch.Tensor, net: Any = None) -> torch.Tensor:
                    out = forward(batch, net)
                    job.done += 1
                    job.message = f"stylizing tile {job.done} of {job.total - 1}"
                    return out

                stylizer = stylizer.conditioned(stylizer.condition)  # a twin, so the shared one stays untouched
                stylizer._forward = counted
            else:
                job.total = 2
            job.message = f"stylizing {width}x{height}" if tile is None else f"stylizing in {job.total - 1} tiles"
            clock = time.perf_counter()
            out = stylizer.stylize_image(x)
            job.timings["stylize"] = time.perf_counter() - clock
            job.done = job.total - 1
            job.message = "writing the PNG"
            clock = time.perf_counter()
            path = self.workdir / f"result-{job.id}.png"
            save_image(out, path, metadata={"Software": "fastmmd serve", **settings, "fastmmd:source": photo.name,
                                            "fastmmd:size": f"{width}x{height}"}, alpha=alpha)
            job.timings["write"] = time.perf_counter() - clock
            job.path, job.done, job.state, job.message = path, job.total, "done", f"done: {width}x{height}"
            job.finished = time.monotonic()
        except (UserError, PageError) as err:
            job.state, job.error, job.message, job.finished = "error", one_line(err), "failed", time.monotonic()
        except Exception as err:  # noqa: BLE001 - the server keeps serving; the trace goes to the log
            traceback.print_exc(file=sys.stderr)
            job.state, job.error, job.message = "error", f"internal error: {type(err).__name__}: {one_line(err)}", "failed"
            job.finished = time.monotonic()


# ------------------------------------------------------------------------------------------ app
def _static(name: str) -> bytes:
    return resources.files("fastmmd.apps.serve").joinpath("static", name).read_bytes()


def create_app(catalog: Catalog, workdir: Path, limits: Limits = Limits(),
               allowed_hosts: list[str] | None = None) -> FastAPI:
    """The FastAPI app serving the page and its API; uploads and results go into ``workdir``.

    Args:
        catalog: the models (loaded once, shared).
        workdir: an existing private folder the caller removes afterwards.
        limits: upload limits.
        allowed_hosts: host names requests may address (None: any); on a loopback address, the
            loopback names, so a web page elsewhere cannot reach the server by DNS rebinding.
    """
    state = ServeState(catalog, workdir, limits)
    app = FastAPI(title="fastmmd serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state
    hosts = None if allowed_hosts is None else {h.strip("[]").lower() for h in allowed_hosts}

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if hosts is not None and (request.url.hostname or "").strip("[]").lower() not in hosts:
            return JSONResponse({"error": "this server answers only requests addressed to this machine"}, 421)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(PageError)
    async def page_error(request: Request, err: PageError):
        return JSONResponse({"error": one_line(err)}, err.status)

    @app.exception_handler(UserError)
    async def user_error(request: Request, err: UserError):
        return JSONResponse({"error": one_line(err)}, 415 if isinstance(err, ImageError) else 400)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"bad {where}: {first.get('msg', 'invalid')}"}, 400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception):
        traceback.print_exception(err, file=sys.stderr)
        return JSONResponse({"error": f"internal error: {type(err).__name__}: {one_line(err)}"}, 500)

    @app.get("/")
    async def index() -> Response:
        return Response(_static("index.html"), media_type=STATIC_FILES["index.html"],
                        headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise PageError("not found", 404)
        return Response(_static(name), media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    @app.get("/api/styles")
    async def styles() -> dict[str, Any]:
        return {"models": [m.describe() for m in catalog.models], "preview_size": PREVIEW_SIZE,
                "max_upload_mb": limits.upload_bytes / 1e6, "max_megapixels": limits.pixels / 1e6,
                "max_video_mb": limits.video_bytes / 1e6, "video_suffixes": list(VIDEO_SUFFIXES)}

    @app.post("/api/photo")
    async def photo(request: Request, name: str = "photo") -> dict[str, Any]:
        name = one_line(name)[:120] or "photo"
        if is_video(name):
            return await video(request, name)
        declared = request.headers.get("content-length", "")
        too_large = PageError(f"{name!r} is too large: this server takes files up to {limits.upload_bytes / 1e6:g} MB "
                              "(fastmmd serve --max-upload-mb)", 413)
        if declared.isdigit() and int(declared) > limits.upload_bytes:
            raise too_large
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limits.upload_bytes:
                raise too_large
        token, p = await state.worker.run(lambda: state.add_photo(bytes(data), name), INTERACTIVE)
        return described(token, p)

    def described(token: str, p: Photo) -> dict[str, Any]:
        return {"id": token, "name": p.name, "width": p.width, "height": p.height, "video": p.video,
                "frames": p.frames, "preview_width": p.preview.shape[2], "preview_height": p.preview.shape[1]}

    async def video(request: Request, name: str) -> dict[str, Any]:
        """A clip, streamed to the work folder (under a random name, with its container's suffix)."""
        too_large = PageError(f"{name!r} is too large: this server takes clips up to {limits.video_bytes / 1e6:g} MB",
                              413)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.video_bytes:
            raise too_large
        token = secrets.token_hex(16)
        path = state.workdir / f"video-{token}{Path(name).suffix.lower()}"
        size = 0
        try:
            with open(path, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.video_bytes:
                        raise too_large
                    f.write(chunk)
            if size == 0:
                raise PageError(f"clip {name!r} is empty (0 bytes)", 415)
            token, p = await state.worker.run(lambda: state.add_video(path, name, token), INTERACTIVE)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return described(token, p)

    @app.get("/api/preview")
    async def preview(photo: str, model: str, style: str | None = None, blend_with: str | None = None,
                      blend: float = 0.0, strength: float | None = None, painting: str | None = None,
                      sheet: bool = False) -> Response:
        s = Settings(photo, model, style or None, blend_with or None, blend, strength, painting or None)
        data = state.cached_preview(s)
        if data is None:
            state.photo(s.photo)  # a missing photo is a quick 404, not a wait in the queue
            data = await state.worker.run(lambda: state.preview(s), SHEET if sheet else INTERACTIVE)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.post("/api/live")
    async def live(request: Request, model: str, style: str | None = None, blend_with: str | None = None,
                   blend: float = 0.0, strength: float | None = None, painting: str | None = None) -> Response:
        """A camera frame (the body) stylized at preview size; the page sends the next when this one is back."""
        s = Settings("", model, style or None, blend_with or None, blend, strength, painting or None)
        frame = bytearray()
        async for chunk in request.stream():
            frame += chunk
            if len(frame) > limits.upload_bytes:
                raise PageError("a camera frame is larger than the server takes", 413)
        data = await state.worker.run(lambda: state.live(bytes(frame), s), INTERACTIVE)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.post("/api/jobs")
    async def new_job(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise PageError("the request is not JSON") from None
        if not isinstance(body, dict):
            raise PageError("the request is not a JSON object")
        try:
            s = Settings(photo=str(body["photo"]), model=str(body["model"]),
                         style=str(body["style"]) if body.get("style") else None,
                         blend_with=str(body["blend_with"]) if body.get("blend_with") else None,
                         blend=float(body.get("blend") or 0.0),
                         strength=None if body.get("strength") is None else float(body["strength"]),
                         painting=str(body["painting"]) if body.get("painting") else None)
            batch = body.get("photos")
            if batch is not None and not (isinstance(batch, list) and all(isinstance(t, str) for t in batch)):
                raise TypeError("photos must be a list of photo ids")
        except (KeyError, TypeError, ValueError) as err:
            raise PageError(f"bad settings: {type(err).__name__} {one_line(err)}") from None
        return state.new_job(s, batch).describe()

    @app.get("/api/jobs/{token}")
    async def job(token: str, wait: float = 0.0) -> dict[str, Any]:
        """The job's state; with ``wait`` (<= 2 s), answers once its state or progress moves, or after ``wait``."""
        j = state.job(token)
        seen, deadline = (j.state, j.done, j.message), time.monotonic() + min(max(wait, 0.0), 2.0)
        while j.state in ("queued", "running") and (j.state, j.done, j.message) == seen and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return {**j.describe(), "waiting": state.worker.waiting() if j.state == "queued" else 0}

    @app.get("/api/jobs/{token}/result")
    async def result(token: str, download: bool = False) -> Response:
        j = state.job(token)
        if j.state != "done" or j.path is None:
            raise PageError("that result is not ready yet", 409)
        kind = {".mp4": "video/mp4", ".zip": "application/zip"}.get(j.path.suffix, "image/png")
        return FileResponse(j.path, media_type=kind, filename=j.filename if download else None,
                            content_disposition_type="attachment" if download else "inline")

    return app


def serve_forever(app: Any, sock: Any, log_level: str = "warning", server_box: list | None = None) -> None:
    """Runs ``app`` with uvicorn on the listening socket ``sock`` until Ctrl+C (or ``should_exit``).

    ``server_box``, when given, receives the ``uvicorn.Server`` (a caller in another thread stops it
    with ``should_exit = True`` and sees it accepting connections once ``started`` is true).
    """
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    if server_box is not None:
        server_box.append(server)
    server.run(sockets=[sock])
