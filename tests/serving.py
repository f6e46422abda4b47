"""Helpers of the ``fastmmd serve`` tests (tests/integration/test_serve.py, tests/e2e/test_serve_live.py):
photos, clips, uploads and jobs. The served models (``models_dir``, ``catalog``) are conftest fixtures."""

from __future__ import annotations

import io
import time
from pathlib import Path

from PIL import Image

from fastmmd.core.samples import photo as sample_photo


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def a_photo(seed: int = 3, width: int = 320, height: int = 240) -> Image.Image:
    """A procedural landscape (fastmmd.core.samples), cropped to ``width`` x ``height``."""
    return sample_photo(seed, max(width, height)).crop((0, 0, width, height))


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
