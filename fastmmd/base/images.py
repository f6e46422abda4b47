"""Reading and writing images safely; RGB float tensors in [0, 1] everywhere else in fastmmd.

Reading honours EXIF orientation, converts every mode (L, LA, P, RGBA, CMYK, I;16, I, F, 1) to
RGB (keeping alpha apart for callers that want it back), refuses decompression bombs and reports
missing, non-image and truncated files as one-line :class:`~fastmmd.base.errors.ImageError`. Writing is
atomic (a temporary file in the target folder, then ``os.replace``) and PNG files carry the
settings as text metadata, so an interrupted run never leaves a half-written image.

Why the tensor conversions are not torchvision's ``transforms.v2.functional`` (which
:mod:`fastmmd.train.data` uses): this module is on ``fastmmd stylize``'s start-up path, and
importing torchvision about doubles that start-up, while the conversions themselves run at the same
speed (measured: docs/benchmarks.md, "images.py vs torchvision"). torchvision's
one-step scalings are also not the numbers fastmmd writes: ``to_dtype(uint8 -> float, scale=True)``
multiplies by 1/255 (126 of 256 levels differ by 1 ulp from x / 255) and ``to_pil_image(float)``
and ``to_dtype(float -> uint8)`` truncate instead of rounding (a quarter of random pixels one
level off). :func:`resize` is torch's own antialiased bilinear ``interpolate``, the kernel
torchvision's ``resize`` calls (bit-identical).
"""

from __future__ import annotations

import glob
import io
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, PngImagePlugin

from fastmmd.base.errors import ImageError, UserError
from fastmmd.base.inputs import is_regular_file
from fastmmd.base.outputs import atomic_path, check_output_file

if TYPE_CHECKING:  # torch is imported by the tensor functions only: reading, writing and checking
    from torch import Tensor  # images stays torch-free (fastmmd.fast_stylize runs without torch)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
#: Suffixes :func:`save_image` writes (its message lists the same ones).
WRITABLE_SUFFIXES = IMAGE_SUFFIXES
#: Refuse images above this many pixels (Pillow's own bomb limit is 89 Mpx and only warns).
MAX_PIXELS = 178_956_970
MIN_SIDE = 8


def to_rgb(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Any Pillow mode -> (RGB image, alpha channel or None). 16-bit and float are rescaled."""
    alpha = None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        alpha = img.getchannel("A")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np  # float32 arithmetic as torch's was: x / hi, clip, * 255, round half to even

        t = np.frombuffer(img.convert("F").tobytes(), dtype=np.float32)
        hi = np.float32(65535.0 if img.mode.startswith("I;16") or float(t.max()) > 255 else 255.0)
        t = np.round(np.clip(t / hi, 0, 1) * np.float32(255)).astype(np.uint8)
        img = Image.frombytes("L", img.size, t.tobytes())
    if img.mode == "CMYK":
        img = img.convert("RGB")  # Pillow's CMYK->RGB (inverted-Adobe JPEGs are handled by Pillow)
    return img.convert("RGB"), alpha


def open_image(path: str | os.PathLike, with_alpha: bool = False,
               min_side: int | None = None) -> tuple[Image.Image, Image.Image | None]:
    """Opens, fully decodes, EXIF-rotates and converts an image to RGB (plus its alpha channel).

    ``min_side``: the caller will downscale the image to a shorter side of at most ``min_side``
    anyway, so it may be decoded smaller, down to a shorter side of ``min_side``: a JPEG at 1/2, 1/4
    or 1/8 scale in the decoder itself (Pillow's ``Image.draft``, libjpeg's DCT scaling), any image
    then reduced by a whole factor (``Image.reduce``, box averages); None decodes every pixel.
    Callers keep ``min_side`` several times their final size so that their own resize still does
    most of the filtering (:data:`fastmmd.model.style_files.DECODE_MARGIN`).

    Raises:
        ImageError: missing file, a folder, not a regular file (a FIFO), not an image, truncated
            or corrupt, too many pixels, smaller than 8 px on a side.
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image {str(p)!r} does not exist")
    if p.is_dir():
        raise ImageError(f"{str(p)!r} is a folder, not an image")
    if not is_regular_file(p):  # a FIFO would block the reader forever
        raise ImageError(f"image {str(p)!r} is not a regular file (a pipe, socket or device)")
    if p.stat().st_size == 0:
        raise ImageError(f"image {str(p)!r} is empty (0 bytes)")
    return _decode(p, str(p), with_alpha, min_side)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image as :func:`open_image` would return it (EXIF rotation applied),
    read from its header only, so sizes can be planned before any pixel is decoded.

    Raises:
        ImageError: missing, a folder, empty or not an image.
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image {str(p)!r} does not exist")
    if p.is_dir():
        raise ImageError(f"{str(p)!r} is a folder, not an image")
    if not is_regular_file(p):
        raise ImageError(f"image {str(p)!r} is not a regular file (a pipe, socket or device)")
    try:
        with Image.open(p) as img:
            w, h = img.size
            rotated = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation: a quarter turn swaps the sides
    except Image.UnidentifiedImageError:
        raise ImageError(f"{str(p)!r} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"image {str(p)!r} is corrupt or truncated ({err})") from None
    return (w, h) if rotated else (h, w)


def decode_image(data: bytes, name: str = "<bytes>", with_alpha: bool = False) -> tuple[Image.Image, Image.Image | None]:
    """:func:`open_image` for encoded bytes (how Hugging Face datasets store images); ``name`` is for messages.

    Raises:
        ImageError: empty, not an image, truncated or corrupt, too many pixels, too small.
    """
    if not data:
        raise ImageError(f"image {name!r} is empty (0 bytes)")
    return _decode(io.BytesIO(data), name, with_alpha)


def _decode(source: Path | io.BytesIO, name: str, with_alpha: bool,
            min_side: int | None = None) -> tuple[Image.Image, Image.Image | None]:
    """Decodes ``source`` (bomb check, EXIF rotation, RGB conversion; smaller down to ``min_side``, as
    :func:`open_image` says); ``name`` goes in errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageError(f"image {name!r} is {w}x{h} = {w * h / 1e6:.0f} Mpx, over the {MAX_PIXELS / 1e6:.0f} Mpx limit (decompression bomb?)")
                if min_side is not None and min(w, h) > 2 * min_side:
                    scale = min_side / min(w, h)  # draft keeps at least the size asked for (JPEG only; else a no-op)
                    img.draft(img.mode, (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb, alpha = to_rgb(img)
                factor = min(rgb.size) // min_side if min_side is not None else 1
                if factor >= 2:  # after the conversion: every mode reduces as RGB (and alpha as L)
                    rgb, alpha = rgb.reduce(factor), alpha.reduce(factor) if alpha is not None else None
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"image {name!r} is too large ({err})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name!r} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"image {name!r} is corrupt or truncated ({err})") from None
    if min(rgb.size) < MIN_SIDE:
        raise ImageError(f"image {name!r} is only {rgb.size[0]}x{rgb.size[1]} px; at least {MIN_SIDE} px per side is needed")
    return rgb, (alpha if with_alpha else None)


def pil_to_tensor(img: Image.Image) -> Tensor:
    """RGB (or L) Pillow image -> float tensor (C, H, W) in [0, 1]."""
    import torch

    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    channels = len(img.getbands())
    return t.view(img.size[1], img.size[0], channels).permute(2, 0, 1).float().div(255.0)


def tensor_to_pil(t: Tensor) -> Image.Image:
    """Float tensor (3, H, W) or (1, 3, H, W) in [0, 1] -> RGB Pillow image (rounded, clipped)."""
    import torch

    t = t.detach()
    if t.dim() == 4:
        t = t[0]
    arr = t.float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu()
    mode = "RGB" if arr.shape[2] == 3 else "L"
    return Image.frombytes(mode, (arr.shape[1], arr.shape[0]), arr.numpy().tobytes() if mode == "RGB" else arr[..., 0].numpy().tobytes())


def fit_size(height: int, width: int, long_edge: int | None) -> tuple[int, int]:
    """(H, W) scaled so the longer side is ``long_edge`` (aspect kept, at least 1 px)."""
    if long_edge is None:
        return height, width
    if long_edge < MIN_SIDE:
        raise UserError(f"size must be at least {MIN_SIDE} px, not {long_edge}")
    scale = long_edge / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Antialiased bilinear resize of (B, C, H, W) or (C, H, W) to ``size`` = (H, W)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    import torch.nn.functional as F

    batch = image if image.dim() == 4 else image.unsqueeze(0)
    out = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return out if image.dim() == 4 else out[0]


def read_image(path: str | os.PathLike, long_edge: int | None = None) -> Tensor:
    """Reads an image as (3, H, W) RGB in [0, 1], optionally resized to a long edge of ``long_edge``."""
    rgb, _ = open_image(path)
    t = pil_to_tensor(rgb)
    return resize(t, fit_size(t.shape[1], t.shape[2], long_edge))


def check_writable(path: str | os.PathLike) -> Path:
    """Fails early (before any work) if ``path`` cannot be written (see :func:`fastmmd.base.outputs.check_output_file`)."""
    return check_output_file(path)


def check_image_output(path: str | os.PathLike, inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
                       what: str = "output") -> Path:
    """:func:`check_writable` plus a suffix Pillow can write (checked before any work, not after it)."""
    return check_output_file(path, inputs, WRITABLE_SUFFIXES, what)




def save_image(image: Tensor | Image.Image, path: str | os.PathLike, metadata: Mapping[str, object] | None = None,
               alpha: Image.Image | None = None) -> Path:
    """Writes an image atomically; PNG gets ``metadata`` as text chunks, ``alpha`` is re-attached.

    The format follows the suffix (PNG, JPEG at quality 95, WebP, BMP, TIFF).
    """
    p = check_writable(path)
    img = image if isinstance(image, Image.Image) else tensor_to_pil(image)
    if alpha is not None:
        img = img.convert("RGBA")
        img.putalpha(alpha.resize(img.size))
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None:
        raise UserError(f"cannot tell the image format of {str(p)!r}; use .png, .jpg, .webp, .bmp or .tif")
    kwargs: dict[str, object] = {}
    if fmt == "PNG" and metadata:
        info = PngImagePlugin.PngInfo()
        for k, v in metadata.items():
            info.add_text(str(k), str(v))
        kwargs["pnginfo"] = info
    if fmt == "JPEG":
        img = img.convert("RGB")
        kwargs["quality"] = 95
    with atomic_path(p) as tmp:
        img.save(tmp, format=fmt, **kwargs)
    return p


def expand_inputs(specs: list[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (their images, sorted) and globs -> (image paths without duplicates, problems)."""
    files: list[Path] = []
    problems: list[str] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append(f"folder {spec!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif p.exists():
            files.append(p)
        elif glob.has_magic(spec):
            found = sorted(Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file())
            if not found:
                problems.append(f"no file matches {spec!r}")
            files.extend(found)
        else:
            problems.append(f"input {spec!r} does not exist")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems
