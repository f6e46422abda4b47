"""Video clips the tests write with PyAV (:func:`write_clip`) and read back (:func:`probe`)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from conftest import synthetic_image
from fastmmd.base.images import pil_to_tensor


def write_clip(path: Path, frames: int = 10, width: int = 33, height: int = 25, rate: Fraction = Fraction(30000, 1001),
               rotation: int = 0, audio: str | None = "aac", codec: str = "libx264") -> Path:
    """A moving synthetic clip (frame i = the picture rolled by i px) with an optional sine audio track."""
    base = (pil_to_tensor(synthetic_image(width, height)).permute(1, 2, 0) * 255).round().byte().numpy()
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height = width, height
        s.pix_fmt = "yuv444p" if codec == "libx264" else "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)
        a = c.add_stream(audio, rate=48000) if audio else None
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.roll(base, i, axis=1), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            t = np.arange(int(48000 * frames / float(rate))) / 48000
            fmt = "fltp" if audio == "aac" else "s16"
            samples = np.sin(2 * math.pi * 440 * t)[None] * 0.3
            samples = samples.astype(np.float32) if fmt == "fltp" else (samples * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
            af.sample_rate, af.pts = 48000, 0
            for p in a.encode(af):
                c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(v))
        info = {"frames": len(frames), "size": (frames[0].width, frames[0].height), "rotation": frames[0].rotation,
                "rate": v.average_rate, "times": [round(float(f.time), 4) for f in frames]}
    with av.open(str(path)) as c:
        info["audio"] = [bytes(p) for p in c.demux(*c.streams.audio) if p.size] if c.streams.audio else []
        info["audio_codec"] = c.streams.audio[0].codec_context.name if c.streams.audio else None
    return info
