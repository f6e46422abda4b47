"""Video: ``fastmmd stylize MODEL clip.mp4 --output out.mp4``, streamed, with flicker reduction.

Frames are decoded, stylized in batches and encoded as they come (PyAV, whose wheels bundle
FFmpeg), so memory does not grow with the clip's length: at most ``batch_size`` frames plus the
encoder's look-ahead are held (and, for ``clip`` statistics, their :data:`CLIP_SAMPLES` sample
frames). What the output keeps from the source:

* every frame's timestamp (so the frame rate, variable rates included) and the frame size, odd
  sizes too (4:2:0 chroma needs even sides, so odd-sized frames are encoded 4:4:4);
* the rotation of the display matrix (phone videos): frames are turned upright for the network
  (which was trained on upright photos), turned back, and the output carries the same rotation;
* the audio streams, copied packet by packet, not re-encoded (a container that cannot hold the
  codec, such as Vorbis in MP4, is refused before any work: write ``.mkv`` or pass ``--no-audio``).

What a clip may cost: each frame at most the images' pixel limit, and the clip at most
:data:`MAX_FRAME_RATE` frames and :data:`MAX_PIXEL_RATE` pixels per second of its timeline, as its
header declares (:func:`check_declared_rates`, before decoding) and as its frames carry
(:class:`DecodeBudget`, every frame before it is converted): a crafted stream stops within a
second's worth of work.

The output is written under a temporary name beside the target and renamed when complete
(:func:`fastmmd.base.outputs.atomic_path`): an interrupted or failed run leaves no half-written file.
A folder of frames works as input (``--fps`` sets the rate) and as output (PNG frames).

Flicker: ``norm_stats`` chooses the instance-norm statistics (:mod:`fastmmd.core.norm_stats`):
``frame`` (each frame its own, as for images; the default), ``running`` (a moving average over the
frames so far) or ``clip`` (one set for the whole clip, pooled over up to :data:`CLIP_SAMPLES`
frames spread over it, read in a first pass). On clips with known camera motion, shared statistics
did not lower the temporal error measurably and cost speed: what flickers is where the strokes
fall, not the brightness. Networks trained with ``model.stability_weight`` flicker less, at some
cost in style strength (measured: docs/benchmarks.md, "Video flicker").
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fastmmd.base.errors import ImageError, UserError
from fastmmd.base.images import IMAGE_SUFFIXES, MAX_PIXELS, fit_size, open_image, pil_to_tensor, save_image
from fastmmd.base.inputs import regular_file
from fastmmd.base.outputs import OutputNames, atomic_path
from fastmmd.core.norm_stats import fixed_norm_statistics, pooled_norm_statistics, running_norm_statistics

#: Container (FFmpeg muxer) by suffix; the default video codec of each.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
DEFAULT_CODECS = {"mp4": "libx264", "mov": "libx264", "matroska": "libx264", "webm": "libvpx-vp9", "avi": "libx264"}
#: Input-only suffixes besides the containers (decoded by FFmpeg).
INPUT_ONLY_SUFFIXES = (".gif", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")
VIDEO_SUFFIXES = tuple(CONTAINERS) + INPUT_ONLY_SUFFIXES
#: Constant-rate-factor defaults: visually near-lossless for H.264/H.265, the usual good quality for VP9/AV1.
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 30, "libsvtav1": 30, "libaom-av1": 30}
NORM_STATS = ("frame", "running", "clip")
#: The frame rates ``--fps`` takes (the rate is kept as a fraction of denominator <= 1001).
MIN_FPS, MAX_FPS = 0.001, 10000.0
#: Share of a clip's declared frames or duration that may be missing before it counts as truncated.
TRUNCATION_TOLERANCE = 0.02
CLIP_SAMPLES = 16
#: Most decoded pixels per second of a clip's timeline: 8K (7680 x 4320) at 30 fps or 4K at 120 fps,
#: twice 4K at 60 fps (0.50 Gpx/s). A few bytes of GIF or H.264 can declare any number of large frames
#: (one 1x1 change per frame on a large screen); this ties the work to the length of the clip.
MAX_PIXEL_RATE = 1_000_000_000
#: Most frames per second of a clip's timeline: phones film slow motion at 240 fps (960 fps in short
#: bursts); a stream whose timestamps are a microsecond apart (or all equal) is refused.
MAX_FRAME_RATE = 1000
#: Timeline always granted on top of the observed one: a clip's first second (a clip shorter than a
#: second, the burst of frames at its start).
RATE_GRACE_SECONDS = 1.0


def is_video(path: str | Path) -> bool:
    """True for a file whose suffix names a video container fastmmd reads."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency
        raise UserError("video needs PyAV: pip install av") from None
    return av


@dataclass
class Frame:
    """One decoded frame: RGB (3, H, W) in [0, 1] as stored, its timestamp in ``time_base`` units."""

    rgb: Tensor
    pts: int
    time_base: Fraction
    name: str | None = None  # the file of a frame read from a folder
    rotation: float = 0.0  # counter-clockwise degrees of the display matrix


@dataclass
class VideoResult:
    """What :func:`stylize_video` did: frames written, seconds taken, frames per second."""

    frames: int
    seconds: float
    path: Path

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def _rotation(degrees: float | None) -> int:
    """Quarter turns (counter-clockwise) of a display-matrix rotation, rounded to a multiple of 90."""
    return int(round((degrees or 0) / 90)) % 4


class VideoSource:
    """Frames of a video file (or a folder of images, in name order) with what an output must keep.

    Attributes:
        rate: nominal frame rate; size: (width, height) as stored; rotation: display rotation in
        degrees (counter-clockwise); count: frames, if known; audio: the audio streams (files only).
    """

    def __init__(self, path: Path, fps: float | None = None) -> None:
        self.path = path
        self.folder: list[Path] | None = None
        self.container = None
        if path.is_dir():
            self.folder = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not self.folder:
                raise UserError(f"folder {str(path)!r} holds no frames ({', '.join(IMAGE_SUFFIXES)})")
            self.rate = Fraction(fps or 25).limit_denominator(1001)
            self.count: int | None = len(self.folder)
            first = pil_to_tensor(open_image(self.folder[0])[0])
            self.size = (first.shape[2], first.shape[1])
            self.rotation = 0
            self.audio: list = []
            self.time_base = 1 / self.rate
            return
        if fps is not None:
            raise UserError("--fps sets the rate of a folder of frames; a video keeps its own frame timing")
        regular_file(path, "video")  # a FIFO named clip.mp4 would block av.open forever
        self._used = False
        self._open()
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate or 25
        self.rate = rate if isinstance(rate, Fraction) else Fraction(rate).limit_denominator(1001)
        self.time_base = self.stream.time_base or 1 / self.rate
        self.count = self.stream.frames or None
        if self.count is None and self.stream.duration and self.stream.time_base:
            self.count = int(round(float(self.stream.duration * self.stream.time_base * self.rate))) or None
        self.size = (self.stream.codec_context.width, self.stream.codec_context.height)
        if not self.size[0] or not self.size[1]:
            self.close()
            raise UserError(f"{str(path)!r}: the video stream has no frame size (corrupt file?)")
        try:
            check_frame_size(*self.size, str(path))  # declared by the stream: checked before any frame is decoded
            check_declared_rates(self.stream.average_rate, *self.size, self.stream.frames or 0,
                                 (self.container.duration or 0) / 1e6, str(path))
        except UserError:
            self.close()
            raise
        self.rotation = 0  # the display matrix travels with decoded frames: the first one tells
        first = next(iter(self.frames()), None)
        self.rotation = int(getattr(first, "rotation", 0) or 0)

    def _open(self) -> None:
        av = _av()
        try:
            self.container = av.open(str(self.path), metadata_errors="ignore")
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise UserError(f"cannot read video {str(self.path)!r}: {_reason(err)}") from None
        if not self.container.streams.video:
            self.close()
            raise UserError(f"{str(self.path)!r} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.audio = list(self.container.streams.audio)

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None

    def frames(self, audio_sink: Any = None) -> Iterator[Frame]:
        """Decoded frames in order; audio packets go to ``audio_sink(packet)`` as they are read."""
        if self.folder is not None:
            for i, f in enumerate(self.folder):
                try:
                    rgb = pil_to_tensor(open_image(f)[0])
                except ImageError as err:
                    raise UserError(f"frame {str(f)!r}: {err}") from None
                if (rgb.shape[2], rgb.shape[1]) != self.size:
                    raise UserError(f"frame {f.name!r} is {rgb.shape[2]}x{rgb.shape[1]}, the first frame "
                                    f"{self.size[0]}x{self.size[1]}: a clip's frames must share one size")
                yield Frame(rgb, i, 1 / self.rate, f.stem)
            return
        av = _av()
        if self._used:  # a second pass (after samples()): reopen rather than seek, which not every file allows
            self.close()
            self._open()
        self._used = True
        streams = [self.stream, *self.audio]  # audio demuxed always: its end tells a truncated file (below)
        decoded, end = 0, 0.0
        budget = DecodeBudget(str(self.path))  # frames and pixels against the timeline they cover
        try:
            for packet in self.container.demux(*streams):
                if packet.pts is not None and packet.time_base:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
                if packet.stream.type == "audio":
                    if audio_sink is not None and packet.dts is not None:
                        audio_sink(packet)
                    continue
                for frame in packet.decode():
                    check_frame_size(frame.width, frame.height, str(self.path))  # a frame larger than declared
                    time_base = frame.time_base or self.stream.time_base
                    if frame.pts is None or not time_base:  # no timestamps (some AVI): frame index at the nominal rate
                        pts, time_base = decoded, 1 / self.rate
                    else:
                        pts = frame.pts
                    budget.charge(frame.width, frame.height, float(pts * time_base))  # before converting it
                    rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float().div_(255)
                    out = Frame(rgb, pts, time_base)
                    out.rotation = frame.rotation
                    decoded += 1
                    yield out
        except av.error.FFmpegError as err:
            raise UserError(f"video {str(self.path)!r} is corrupt or truncated after {decoded} frame(s): {_reason(err)}") from None
        if decoded == 0:
            raise UserError(f"video {str(self.path)!r}: no frame could be decoded (corrupt or empty file)")
        self._check_complete(decoded, end)

    def _check_complete(self, decoded: int, end: float) -> None:
        """Refuses a clip that stops before what its header declares (FFmpeg ends a truncated file
        quietly): fewer frames than the stream's frame count, or packets of every stream ending
        before the container's duration (one stream reaches it in a complete file).

        The tolerance is :data:`TRUNCATION_TOLERANCE` of the declared length plus two frames.
        """
        declared = self.stream.frames or 0
        if declared and decoded < declared * (1 - TRUNCATION_TOLERANCE) - 2:
            raise UserError(f"video {str(self.path)!r} is truncated or corrupt: {decoded} of its {declared} frames "
                            "could be decoded; nothing written")
        duration = (self.container.duration or 0) / 1e6 if self.container is not None else 0.0  # AV_TIME_BASE units
        if duration > 0 and end > 0 and end < duration * (1 - TRUNCATION_TOLERANCE) - 2 / float(self.rate):
            raise UserError(f"video {str(self.path)!r} is truncated or corrupt: its data ends at {end:.2f} s of the "
                            f"{duration:.2f} s it declares ({decoded} frame(s) decoded); nothing written")

    def samples(self, count: int) -> list[Tensor]:
        """Up to ``count`` frames spread over the clip (a first pass; every ``n``-th frame kept, ``n``
        doubled whenever ``count`` would be exceeded, so memory stays bounded without a frame count)."""
        step, kept = max(1, (self.count or count) // count), []
        for i, frame in enumerate(self.frames()):
            if i % step:
                continue
            kept.append(frame.rgb)
            if len(kept) > count:
                kept, step = kept[::2], step * 2
        return kept


def check_frame_size(width: int, height: int, name: str) -> None:
    """Refuses a video frame over the images' pixel limit (:data:`fastmmd.base.images.MAX_PIXELS`):
    a few bytes of GIF can declare a 16000 x 16000 screen (3 GB per decoded frame)."""
    if width * height > MAX_PIXELS:
        raise UserError(f"video {name!r} has {width}x{height} = {width * height / 1e6:.0f} Mpx frames, over the "
                        f"{MAX_PIXELS / 1e6:.0f} Mpx limit (decompression bomb?)")


def check_declared_rates(rate: Fraction | None, width: int, height: int, frames: int, seconds: float,
                         name: str) -> None:
    """Refuses, before any frame is decoded, a stream whose header declares more than
    :data:`MAX_FRAME_RATE` frames or :data:`MAX_PIXEL_RATE` pixels per second: its average rate
    (``rate``, from its timestamps), or its frame count over the container's duration (``seconds``).
    What the frames then really carry is counted by :class:`DecodeBudget`."""
    if rate and rate > MAX_FRAME_RATE:
        raise UserError(f"video {name!r} declares {float(rate):.0f} frames per second, over the {MAX_FRAME_RATE} "
                        "fastmmd decodes (crafted timestamps?)")
    if frames and frames > MAX_FRAME_RATE * (max(seconds, 0.0) + RATE_GRACE_SECONDS):
        raise UserError(f"video {name!r} declares {frames} frames in {seconds:.3f} s, over {MAX_FRAME_RATE} frames "
                        "per second (crafted timestamps?)")
    if rate and width * height * rate > MAX_PIXEL_RATE:
        raise UserError(f"video {name!r} declares {width}x{height} frames at {float(rate):.4g} fps = "
                        f"{width * height * float(rate) / 1e9:.2f} Gpx per second, over the {MAX_PIXEL_RATE / 1e9:.1f} "
                        "Gpx/s fastmmd decodes (8K at 30 fps); use a smaller or slower clip")


class DecodeBudget:
    """Frames and pixels decoded from one clip, against the span of timeline they cover.

    :meth:`charge` is called for every decoded frame before it is converted or stylized; it refuses
    the clip (one line; the output is not written) as soon as the frames so far exceed
    :data:`MAX_FRAME_RATE` frames or :data:`MAX_PIXEL_RATE` pixels per second of the span between
    the earliest and the latest timestamp seen, plus :data:`RATE_GRACE_SECONDS`. So a stream that
    declares a modest rate but carries thousands of frames at one timestamp, or screens of 100 Mpx
    a few milliseconds apart, costs at most one second's worth of work beyond what a real clip of
    its length costs.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames = self.pixels = 0
        self.first = self.last = 0.0

    def charge(self, width: int, height: int, seconds: float) -> None:
        """Counts one ``width`` x ``height`` frame shown at ``seconds`` on the clip's timeline.

        Raises:
            UserError: the clip's frames or pixels so far exceed the rates above.
        """
        if self.frames == 0:
            self.first = self.last = seconds
        self.first, self.last = min(self.first, seconds), max(self.last, seconds)
        self.frames += 1
        self.pixels += width * height
        span = self.last - self.first
        allowed = span + RATE_GRACE_SECONDS
        if self.frames > MAX_FRAME_RATE * allowed:
            raise UserError(f"video {self.name!r} holds {self.frames} frames in {span:.3f} s of its timeline, over "
                            f"{MAX_FRAME_RATE} frames per second (crafted timestamps?); nothing written")
        if self.pixels > MAX_PIXEL_RATE * allowed:
            raise UserError(f"video {self.name!r} holds {self.pixels / 1e9:.2f} Gpx in {span:.3f} s of its timeline, "
                            f"over the {MAX_PIXEL_RATE / 1e9:.1f} Gpx per second fastmmd decodes (8K at 30 fps); "
                            "nothing written")


def _reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return " ".join(str(text).split()) or type(err).__name__


class VideoSink:
    """Encodes frames into ``path`` (its suffix picks the container) or writes them as PNGs into a folder."""

    def __init__(self, path: Path, source: VideoSource, codec: str | None, crf: int | None, audio: bool,
                 metadata: dict[str, str]) -> None:
        self.path, self.source, self.metadata = path, source, metadata
        self.folder = path.suffix.lower() not in CONTAINERS
        self.count = 0
        self.audio: list = []
        self.written: list[Path] = []  # frames written by this sink (removed again if the run fails)
        if self.folder:
            self.names = OutputNames(source.folder or [])  # f1.png and f1.jpg: two frames, two files
            return
        av = _av()
        self.format = CONTAINERS[path.suffix.lower()]
        self.codec = codec or DEFAULT_CODECS[self.format]
        try:
            info = av.codec.Codec(self.codec, "w")
        except (av.error.FFmpegError, ValueError, KeyError):
            raise UserError(f"unknown video encoder {self.codec!r}; try libx264, libx265, libvpx-vp9 or mpeg4") from None
        if info.type != "video":
            raise UserError(f"{self.codec!r} is not a video encoder")
        self.formats = [f.name for f in (info.video_formats or [])]
        self.crf = crf if crf is not None else DEFAULT_CRF.get(self.codec)
        if crf is not None and self.codec not in DEFAULT_CRF:
            raise UserError(f"--crf applies to {', '.join(DEFAULT_CRF)}, not {self.codec!r}")
        self.audio = source.audio if audio else []
        self.time_base = None

    @contextlib.contextmanager
    def open(self, width: int, height: int) -> Iterator["VideoSink"]:
        """Opens the output (a temporary file, renamed into place on success) for :meth:`write` of
        frames of ``width`` x ``height`` px (every stream must exist before the first packet)."""
        if self.folder:
            try:
                yield self
            except Exception:  # a failed run leaves no partial set of frames (an interrupt keeps them)
                for frame in self.written:
                    frame.unlink(missing_ok=True)
                raise
            return
        av = _av()
        with atomic_path(self.path) as tmp:
            self.container = av.open(str(tmp), "w", format=self.format)
            done = False
            try:
                for key, value in self.metadata.items():
                    self.container.metadata[key] = value
                self._start(width, height)
                self.audio_out = {}
                for stream in self.audio:
                    try:
                        self.audio_out[stream.index] = self.container.add_stream_from_template(stream)
                    except (av.error.FFmpegError, ValueError) as err:
                        raise UserError(f"cannot copy the audio ({stream.codec_context.name}) into {self.path.suffix}: "
                                        f"{_reason(err)}; write .mkv or pass --no-audio") from None
                yield self
                self._finish()
                done = True
            finally:
                if done:
                    self.container.close()
                else:  # failing or interrupted: the file goes anyway, do not let the trailer's error hide why
                    with contextlib.suppress(Exception):
                        self.container.close()

    def _start(self, width: int, height: int) -> None:
        av = _av()
        even = width % 2 == 0 and height % 2 == 0
        choices = (["yuv420p"] if even else []) + ["yuv444p", "yuv420p"]
        self.pix_fmt = next((f for f in choices if f in self.formats), self.formats[0] if self.formats else "yuv420p")
        if not even and self.pix_fmt in ("yuv420p", "nv12"):
            raise UserError(f"encoder {self.codec!r} cannot store odd frame sizes ({width}x{height}); "
                            "use libx264 (the default) or an even --max-size")
        options = {"crf": str(self.crf)} if self.crf is not None else {}
        if self.codec == "libvpx-vp9":
            options["b"] = "0"  # constant quality
        self.video = self.container.add_stream(self.codec, rate=self.source.rate, options=options)
        self.video.width, self.video.height, self.video.pix_fmt = width, height, self.pix_fmt
        self.video.time_base = self.source.time_base
        if self.source.rotation:
            self.video.set_display_rotation(self.source.rotation)
        try:
            self.video.codec_context.open()
        except av.error.FFmpegError as err:
            raise UserError(f"encoder {self.codec!r} refused {width}x{height} {self.pix_fmt}: {_reason(err)}") from None

    def mux_audio(self, packet: Any) -> None:
        """Copies one audio packet (not re-encoded)."""
        if not self.folder and packet.stream.index in self.audio_out:
            packet.stream = self.audio_out[packet.stream.index]
            self._mux(packet)

    def _mux(self, packet: Any) -> None:
        av = _av()
        try:
            self.container.mux(packet)
        except av.error.FFmpegError as err:
            raise UserError(f"cannot write {str(self.path)!r}: {_reason(err)}"
                            + ("; write .mkv or pass --no-audio" if self.audio else "")) from None

    def write(self, frame: Frame, image: Tensor) -> None:
        """Writes stylized ``image`` (3, H, W) [0, 1], in the source frame's orientation and timing."""
        self.count += 1
        if self.folder:
            dest = self.names.claim(self.path, frame.name or f"frame_{self.count:06d}", ".png")
            self.written.append(save_image(image, dest, self.metadata))
            return
        av = _av()
        array = image.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        out = av.VideoFrame.from_ndarray(array, format="rgb24")
        out.pts, out.time_base = frame.pts, frame.time_base
        for packet in self.video.encode(out):
            self._mux(packet)

    def _finish(self) -> None:
        for packet in self.video.encode():
            self._mux(packet)


def _upright(rgb: Tensor, turns: int) -> Tensor:
    return torch.rot90(rgb, turns, dims=(-2, -1)) if turns else rgb


def stylize_video(stylizer: Any, source_path: str | Path, output: str | Path, batch_size: int = 4,
                  codec: str | None = None, crf: int | None = None, audio: bool = True, fps: float | None = None,
                  norm_stats: str = "frame", momentum: float = 0.9, progress: bool = True,
                  metadata: dict[str, str] | None = None) -> VideoResult:
    """Stylizes a video file (or a folder of frames) into a video file (or a folder of PNG frames).

    Args:
        stylizer: a :class:`fastmmd.infer.stylize.Stylizer` (its --max-size, precision, device and
            --preserve-color apply to every frame).
        source_path: video file or folder of frames; output: video file (.mp4/.mov/.mkv/.webm/.avi)
            or a folder.
        batch_size: frames per forward pass.
        codec, crf: the encoder (default: H.264 for mp4/mov/mkv/avi, VP9 for webm) and its constant
            rate factor (default :data:`DEFAULT_CRF`).
        audio: copy the source's audio streams.
        fps: frame rate of a folder of frames (default 25); refused for a video file, which keeps
            its own frame timing (:class:`UserError`).
        norm_stats: ``frame``, ``running`` or ``clip`` (module docstring); momentum: of ``running``.
        progress: show a progress bar with frames/s.
        metadata: container tags (video) or PNG text (frames) to write.

    Returns:
        :class:`VideoResult`: frames written, seconds taken (``fps`` = their ratio), output path.

    Raises:
        UserError: a bad setting, an unreadable, truncated or oversized source, an encoder or
            container that cannot take the frames or the audio; the output is then not written.
    """
    from tqdm import tqdm

    if norm_stats not in NORM_STATS:
        raise UserError(f"--norm-stats must be one of {', '.join(NORM_STATS)}, not {norm_stats!r}")
    if not 0 <= momentum < 1:
        raise UserError(f"--norm-momentum must be in [0, 1), not {momentum}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    if fps is not None and not (MIN_FPS <= fps <= MAX_FPS):  # 1e-300 would round to a rate of 0
        raise UserError(f"--fps must lie between {MIN_FPS:g} and {MAX_FPS:g} frames per second, not {fps}")
    twin = stylizer.eager_model()
    if norm_stats != "frame" and twin is None:
        raise UserError(f"--norm-stats {norm_stats} needs a .pt/.pt2/.ckpt model (ONNX graphs cannot share "
                        "statistics across frames); use --norm-stats frame")
    source = VideoSource(Path(source_path), fps)
    start = time.perf_counter()
    try:
        sink = VideoSink(Path(output), source, codec, crf, audio, metadata or {})
        context: contextlib.AbstractContextManager = contextlib.nullcontext()
        if norm_stats == "running":
            context = running_norm_statistics(twin.net, momentum)
        elif norm_stats == "clip":
            samples = [stylizer.fit(_upright(rgb, _rotation(source.rotation))).unsqueeze(0)
                       for rgb in source.samples(CLIP_SAMPLES)]
            if stylizer.tile is not None or any(stylizer.auto_tile(1, *s.shape[-2:]) for s in samples):
                raise UserError("--norm-stats clip does not combine with tiling; use --max-size or --norm-stats frame")
            stats = pooled_norm_statistics(twin.net, lambda x: stylizer._forward(x, twin), samples)
            context = fixed_norm_statistics(twin.net, [(m.mean(0, keepdim=True), v.mean(0, keepdim=True))
                                                       for m, v in stats])
        bar = tqdm(total=source.count, unit="frame", file=sys.stderr, disable=None if progress else True,
                   dynamic_ncols=True, desc=Path(source_path).name)
        pending: list[Frame] = []

        def flush() -> None:
            turns = _rotation(source.rotation)
            batch = torch.stack([stylizer.fit(_upright(f.rgb, turns)) for f in pending])
            if norm_stats != "frame" and stylizer.auto_tile(*batch.shape[:1], *batch.shape[-2:]):
                raise UserError(f"frames of {batch.shape[-1]}x{batch.shape[-2]} px need tiling here, which "
                                f"--norm-stats {norm_stats} does not support; use --max-size or --norm-stats frame")
            for frame, image in zip(pending, stylizer.stylize_batch(batch)):
                sink.write(frame, _upright(image, -turns))
            bar.update(len(pending))
            pending.clear()

        width, height = source.size
        if stylizer.max_size and max(width, height) > stylizer.max_size:  # as Stylizer.fit resizes every frame
            height, width = fit_size(height, width, stylizer.max_size)
        with sink.open(width, height), context:
            for frame in source.frames(sink.mux_audio if sink.audio else None):
                pending.append(frame)
                if len(pending) >= batch_size:
                    flush()
            if pending:
                flush()
        bar.close()
    finally:
        source.close()
    return VideoResult(sink.count, time.perf_counter() - start, Path(output))
