"""Fast inference: stylize images with an exported model (.pt, .pt2, .onnx) or a training checkpoint.

The path is kept light (torch, Pillow and tqdm only; never Lightning or ``datasets``) so that
``fastmmd stylize`` starts quickly. Images of any size come out at their own size (the network
pads to a multiple of 4 and crops back); images whose activations would not fit in memory are
stylized in overlapping, blended tiles (:mod:`fastmmd.model.tiling`). Alpha channels, EXIF rotation,
grayscale and 16-bit inputs are handled by :func:`fastmmd.base.images.open_image`. ``preserve_color``
implements Gatys et al.'s luminance-only transfer ("Controlling Perceptual Factors in Neural Style
Transfer", 2017) as a post-filter: the output keeps the stylized luma Y and the content's chroma
Cb, Cr (full-range BT.601 YCbCr).

Python API: ``fastmmd.load_stylizer(path)(pil_image) -> pil_image``. Wherever a model file is
taken, a shipped style's name is too (``starry_night``, ``starry_night:onnx``; :mod:`fastmmd.infer.zoo`).
A network trained on several styles or with a strength input (:mod:`fastmmd.model.conditioning`) takes
``style``/``mix``/``strength`` (``--style``, ``--mix``, ``--strength``; ``--grid`` draws them,
:mod:`fastmmd.infer.condition_grid`).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image, ImageOps
from torch import Tensor

from fastmmd.base.devices import available_memory
from fastmmd.base.errors import UserError
from fastmmd.base.images import MIN_SIDE, fit_size, pil_to_tensor, resize, tensor_to_pil, to_rgb
from fastmmd.base.paintings import resolve_paintings
from fastmmd.core.color import preserve_color
from fastmmd.core.norm_stats import fixed_norm_statistics
from fastmmd.infer.conditions import Condition, ConditionSpace
from fastmmd.infer.zoo import resolve_model
from fastmmd.model.files import MODEL_SUFFIXES, open_onnx, read_network
from fastmmd.model.runtime import ExportedStylizer
from fastmmd.model.tiling import global_norm_statistics, stylize_tiled

#: Peak activation memory of TransformerNet inference that tiling plans for: (8 w + 64) values per
#: pixel for width w, each of the file's dtype size (the measurement behind it: docs/benchmarks.md,
#: "Stylize / export").
_VALUES_PER_PIXEL_PER_WIDTH, _VALUES_PER_PIXEL = 8, 64
_MEMORY_FRACTION = {"cpu": 0.5, "cuda": 0.7}
_MIN_TILE = 64




def load_model(path: str | os.PathLike, device: torch.device, dtype: torch.dtype | None,
               channels_last: bool, threads: int | None = None) -> tuple[Callable[[Tensor], Tensor], dict[str, Any]]:
    """Loads a model as a float-0-1-in, float-0-1-out callable on ``device`` (+ its metadata).

    Nothing in the file runs: from a ``.ckpt``, ``.pt`` or ``.pt2`` only the weights and the
    description are read (:func:`fastmmd.model.files.read_network`) and fastmmd's own network runs
    them (``fastmmd export`` verified that the file's program computes the same); an ``.onnx``
    graph runs in onnxruntime.

    Args:
        path: exported ``.pt``/``.pt2``/``.onnx``, training ``.ckpt``, or a shipped style's name.
        device: where to run.
        dtype: float16/bfloat16 to run in, or None for the file's own precision (fp32 on CPU).
        channels_last: convert the weights to channels-last memory format.
        threads: onnxruntime's intra-op threads for an ``.onnx`` file (None: its default).
    """
    p = resolve_model(path)
    if not p.exists():
        raise UserError(f"model {str(p)!r} does not exist; give an exported .pt/.pt2 file or a training .ckpt")
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise UserError(f"{str(p)!r} is not a model file; give an exported .pt/.pt2/.onnx (fastmmd export) or a training .ckpt")
    if p.suffix.lower() == ".onnx":
        if device.type != "cpu" or dtype is not None:
            raise UserError(f"{str(p)!r} is an ONNX model; fastmmd runs it on the CPU in its stored precision "
                            "(drop --device cuda/--half/--bf16, or export to .pt/.pt2)")
        module, meta = open_onnx(p, threads)
        return module, {"format": "onnx", **meta}
    net, meta = read_network(p)
    meta = {"format": "checkpoint", "dtype": "float32", **meta}
    stored = getattr(torch, str(meta["dtype"]), torch.float32)
    module = ExportedStylizer(net.requires_grad_(False)).eval().to(device)
    if dtype is None and device.type != "cpu" and stored.is_floating_point and stored != torch.float32:
        dtype = stored  # the file's precision on GPUs (fp16 convolutions are very slow on CPU)
    if dtype is not None:
        module = module.to(dtype)
        if net.style_embedding:  # the painting's standardisation and MLP stay float32 (a few k MACs)
            net.style_predictor.float()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module, meta


class Stylizer:
    """Stylizes PIL images or tensor batches with a loaded model; see :func:`load_stylizer`."""

    def __init__(self, model: Callable[..., Tensor], metadata: dict[str, Any], device: torch.device,
                 channels_last: bool = False, tile: int | None = None, overlap: int | None = None,
                 max_size: int | None = None, preserve_color: bool = False, tile_stats: str = "tile",
                 condition: Condition = Condition(), vgg_bf16: bool | None = None) -> None:
        if tile_stats not in ("global", "tile"):
            raise UserError(f"--tile-stats must be global or tile, not {tile_stats!r}")
        self.model = model
        self.space = ConditionSpace.of(metadata)  # the styles and strength range the model was trained on
        self.condition = condition
        self.tile_stats = tile_stats
        self.metadata = metadata
        self.device = device
        self.channels_last = channels_last
        self.tile = tile
        self.overlap = overlap
        self.max_size = max_size
        self.preserve_color = preserve_color
        self.min_size = int(metadata.get("min_size", 1))
        self.vgg_bf16 = vgg_bf16  # an arbitrary-style network's painting VGG in bf16 (None: where it is fast)
        self._encoder: Any = None  # an arbitrary-style network's PaintingEncoder, built on first use
        itemsize = 2 if str(metadata.get("dtype")) in ("float16", "bfloat16") else 4  # int8 files compute in float32
        width = int((metadata.get("network") or {}).get("width", 32))
        self.bytes_per_pixel = (_VALUES_PER_PIXEL_PER_WIDTH * width + _VALUES_PER_PIXEL) * itemsize

    def conditioned(self, condition: Condition) -> "Stylizer":
        """This stylizer (same model, sharing its weights) asked for another style mix / strength."""
        twin = copy.copy(self)
        twin.condition = condition if condition.style is not None or self.condition.style is None else Condition(
            condition.mix, condition.strength, self.condition.style, self.condition.names)
        return twin

    def painting_encoder(self, flag: str = "--style-image") -> Any:
        """An arbitrary-style network's :class:`~fastmmd.model.arbitrary.PaintingEncoder` (built once;
        its VGG on first use), or a one-line error naming ``flag`` for any other network."""
        if not self.space.arbitrary:
            raise UserError(f"{flag}: this model is trained for its own style(s), not for any painting "
                            "(an arbitrary-style network is; `fastmmd models` lists it)")
        if self._encoder is None:
            from fastmmd.model.arbitrary import PaintingEncoder

            self._encoder = PaintingEncoder(self.metadata, self.device, self.vgg_bf16)
        return self._encoder

    def save_style(self, painting: Any, path: str | os.PathLike) -> Path:
        """Writes the statistics of ``painting`` (a file, PIL image or (3, H, W) tensor) as a style
        file (``.npz``, :mod:`fastmmd.model.style_files`) that :meth:`with_paintings` and
        ``--style-image`` take instead of the painting, for this model or any with the same VGG and
        style size: VGG then runs once per painting, not once per run. Returns the file written."""
        return self.painting_encoder("--save-style").save(painting, path)

    def with_paintings(self, paintings: Sequence[Any], mix: str | None = None,
                       strength: float | None = None) -> "Stylizer":
        """An arbitrary-style network (:mod:`fastmmd.model.arbitrary`) asked for ``paintings`` (image
        files, style files from :meth:`save_style`, PIL images or (3, H, W) tensors; a shipped style's
        name is its downloaded painting, :func:`fastmmd.base.paintings.resolve_painting`): one, or
        several blended by ``mix`` (``"0.7,0.3"`` in their order, or ``"stem=0.7,..."``), at
        ``strength`` (None: this stylizer's). Their statistics are computed here, once (VGG-19 to
        relu5_1 per painting; none for a style file); the twin shares this one's weights.
        """
        encoder = self.painting_encoder()
        paintings = resolve_paintings(paintings)
        if not paintings:
            raise UserError("--style-image needs at least one painting")
        names = [Path(p).stem if isinstance(p, (str, os.PathLike)) else f"painting{i}" for i, p in enumerate(paintings)]
        space = self.space.with_paintings(names)
        if mix is None and len(paintings) > 1:
            mix = ",".join(["1"] * len(paintings))  # several paintings and no weights: an equal blend
        resolved = space.resolve(None, mix, self.condition.strength if strength is None else strength)
        twin = copy.copy(self)
        twin.space = space
        twin.condition = Condition(resolved.mix, resolved.strength, encoder(paintings), tuple(names))
        return twin

    def _forward(self, x: Tensor, model: Callable[..., Tensor] | None = None) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        tensors = self.condition.tensors()
        args = (x,) if all(t is None for t in tensors) else (x, *tensors)
        with torch.inference_mode():
            return (model or self.model)(*args).float().cpu()

    def eager_model(self) -> ExportedStylizer | None:
        """The model as a module whose instance norms can be hooked for global tile statistics; None for ONNX."""
        return self.model if isinstance(self.model, ExportedStylizer) else None

    def _tiled(self, batch: Tensor, tile: int, overlap: int) -> Tensor:
        twin = self.eager_model() if self.tile_stats == "global" else None
        if twin is None:
            return stylize_tiled(self._forward, batch, tile, overlap)

        def run(x: Tensor) -> Tensor:
            return self._forward(x, twin)

        stats = global_norm_statistics(twin.net, run, batch, tile, overlap)
        with fixed_norm_statistics(twin.net, stats):
            return stylize_tiled(run, batch, tile, overlap)

    def auto_tile(self, batch: int, height: int, width: int) -> int | None:
        """The tile side to use for this batch: ``tile`` if set (0 = never), else one that fits in memory."""
        if self.tile is not None:
            return self.tile if self.tile > 0 and max(height, width) > self.tile else None
        budget = _MEMORY_FRACTION.get(self.device.type, 0.5) * available_memory(self.device)
        if batch * height * width * self.bytes_per_pixel <= budget:
            return None
        side = int(math.sqrt(budget / (batch * self.bytes_per_pixel))) // 32 * 32
        return max(_MIN_TILE, side)

    def stylize_tensor(self, batch: Tensor) -> Tensor:
        """(B, 3, H, W) RGB [0, 1] -> stylized (B, 3, H, W) float32 on the CPU, tiled if needed."""
        height, width = batch.shape[-2:]
        if self.space.arbitrary and self.condition.style is None:
            raise UserError("this is an arbitrary-style network: give a painting (--style-image PAINTING, or "
                            "stylizer(photo, style=painting))")
        if min(height, width) < self.min_size:
            raise UserError(f"this model needs images of at least {self.min_size} px per side, not {width}x{height}")
        tile = self.auto_tile(batch.shape[0], height, width)
        while True:
            try:
                if tile is None:
                    return self._forward(batch)
                overlap = self.overlap if self.overlap is not None else max(32, tile // 4)
                return self._tiled(batch, tile, min(overlap, tile // 2))
            except torch.OutOfMemoryError:
                if self.device.type != "cuda" or (tile is not None and tile <= _MIN_TILE):
                    raise
                torch.cuda.empty_cache()
                tile = max(_MIN_TILE, (tile or max(height, width)) // 2)

    def probe(self) -> "Stylizer":
        """Runs the model once on a small grey image, so that a file that cannot run, or returns
        something other than the batch, fails in one line before a command has written anything
        (compare, evaluate). Returns this stylizer."""
        side = max(self.min_size, 16)
        self.stylize_tensor(torch.full((1, 3, side, side), 0.5))
        return self

    def fit(self, rgb: Tensor) -> Tensor:
        """(3, H, W) [0, 1] downscaled to --max-size if it is larger (same-size images batch after this)."""
        if self.max_size and max(rgb.shape[1:]) > self.max_size:
            return resize(rgb, fit_size(rgb.shape[1], rgb.shape[2], self.max_size))
        return rgb

    def stylize_batch(self, batch: Tensor) -> Tensor:
        """(B, 3, H, W) of :meth:`fit` images -> stylized (B, 3, H, W), with --preserve-color."""
        out = self.stylize_tensor(batch)
        return preserve_color(out, batch) if self.preserve_color else out

    def stylize_image(self, rgb: Tensor) -> Tensor:
        """(3, H, W) [0, 1] -> (3, h, w) stylized, after --max-size and with --preserve-color."""
        return self.stylize_batch(self.fit(rgb).unsqueeze(0))[0]

    def __call__(self, image: Image.Image, style: Any = None) -> Image.Image:
        """Stylizes one PIL image (any mode: 16-bit, palette, ...; EXIF orientation applied); alpha is kept.
        ``style``: an arbitrary-style network's painting (a file, a PIL image, or a list to blend
        equally; :meth:`with_paintings` keeps their statistics for reuse)."""
        if style is not None:
            return self.with_paintings(style if isinstance(style, (list, tuple)) else [style])(image)
        rgb, alpha = to_rgb(ImageOps.exif_transpose(image))
        out = tensor_to_pil(self.stylize_image(pil_to_tensor(rgb)))
        if alpha is not None:
            out.putalpha(alpha.resize(out.size))
        return out


def load_stylizer(path: str | os.PathLike, device: str = "auto", half: bool = False, bf16: bool | None = None,
                  channels_last: bool | None = None, tile: int | None = None, overlap: int | None = None,
                  max_size: int | None = None, preserve_color: bool = False, tile_stats: str = "tile",
                  style: str | int | None = None, mix: str | None = None, strength: float | None = None,
                  style_images: Sequence[Any] | None = None, threads: int | None = None) -> Stylizer:
    """Loads an exported model or training checkpoint as ``Stylizer``: ``stylizer(pil_image) -> pil_image``.

    Args:
        path: ``.pt`` (TorchScript), ``.pt2`` (torch.export), ``.onnx``, training ``.ckpt``, or the
            name of a shipped style (``fastmmd models``; ``NAME:onnx`` for its ``.onnx``).
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``.
        half: run in float16 (GPU only: torch's CPU fp16 convolutions are far slower than fp32;
            measured: docs/benchmarks.md, "Stylize / export").
        bf16: run in bfloat16; refused (:class:`UserError`) on a CPU without bf16 instructions, where it
            would be emulated and far slower than fp32 (the rule: :mod:`fastmmd.base.precision`).
            None (the default): float32, except for an arbitrary-style network, which runs in
            bfloat16 where the device runs it fast (the ``auto`` rule of every command), its
            paintings' VGG too; False: float32 throughout. The network's painting MLP always
            computes in float32. An ``.onnx`` network runs in its stored precision either way.
        channels_last: channels-last memory format; None = on for CUDA, off on CPU.
        tile: tile side in px; None = tile only when memory would not suffice; 0 = never.
        overlap: tile overlap in px; None = max(32, tile / 4); at most tile / 2 either way.
        max_size: downscale images whose longer side exceeds this.
        preserve_color: keep the content's colours (luminance-only transfer).
        tile_stats: ``tile`` (default): each tile uses its own instance-norm statistics (one
            tiled pass; no seam at tile edges, but regions differ from the untiled result);
            ``global``: tiles are normalised with the whole image's statistics (matches the untiled
            output; about (L + 2) / 2 extra passes for L norm layers, :mod:`fastmmd.model.tiling`).
            Measured: docs/benchmarks.md, "Tile statistics: which default".
        style, mix, strength: for a network trained on several styles or with a strength input
            (:meth:`fastmmd.infer.conditions.ConditionSpace.resolve`): a style by name or index, a
            blend ``"a=0.7,b=0.3"`` (normalised to sum 1), the strength s (0 = the content, 1 = the
            trained default, up to the trained maximum). None = style 0 at strength 1.
        style_images: an arbitrary-style network's painting(s) (:meth:`Stylizer.with_paintings`;
            ``mix`` then weighs them), image files or style files (``.npz``, :meth:`Stylizer.save_style`);
            or give them later, ``stylizer(photo, style=painting)``.
        threads: CPU threads for an ``.onnx`` file's onnxruntime session (None: its default; torch's
            own threads are the caller's, ``torch.set_num_threads``).
    """
    from fastmmd.base.devices import resolve_device

    dev = resolve_device(device)
    if half and bf16:
        raise UserError("--half and --bf16 exclude each other; pick one")
    if half and dev.type == "cpu":
        raise UserError("--half needs a CUDA GPU (fp16 on a CPU is many times slower than fp32); drop it or use --bf16")
    if bf16 and not half:
        from fastmmd.base.precision import require_fast_bf16

        require_fast_bf16(dev, "--bf16", "drop --bf16 (fp32 is the fast path there)")
    if tile is not None and 0 < tile < _MIN_TILE:
        raise UserError(f"--tile must be 0 (never tile) or at least {_MIN_TILE} px, not {tile}")
    if max_size is not None and max_size < MIN_SIDE:
        raise UserError(f"--max-size must be at least {MIN_SIDE} px, not {max_size}")
    dtype = torch.float16 if half else torch.bfloat16 if bf16 else None
    cl = dev.type == "cuda" if channels_last is None else channels_last
    model, meta = load_model(path, dev, dtype, cl, threads)
    space = ConditionSpace.of(meta)
    vgg_bf16 = bf16
    if bf16 is None and not half and space.arbitrary:
        from fastmmd.base.precision import bf16_is_fast

        vgg_bf16 = bf16_is_fast(dev)  # the auto rule, for the network and its paintings' VGG alike
        if vgg_bf16 and isinstance(model, ExportedStylizer):
            model = model.to(torch.bfloat16)
            model.net.style_predictor.float()  # as load_model keeps it
    condition = space.resolve(None if style is None else str(style), None if style_images else mix, strength)
    stylizer = Stylizer(model, meta, dev, channels_last=cl, tile=tile, overlap=overlap, max_size=max_size,
                        preserve_color=preserve_color, tile_stats=tile_stats, condition=condition, vgg_bf16=vgg_bf16)
    return stylizer.with_paintings(style_images, mix, strength) if style_images else stylizer








