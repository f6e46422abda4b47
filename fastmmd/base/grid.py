"""Labelled image grids drawn with Pillow (``fastmmd compare``'s grid.png and reconstruction grids).

Layout, top to bottom: a header strip with the reference images (content, style), each labelled
below; a row of column labels; then one row per method with its label on the left and one tile per
column, each tile optionally captioned (time, distances). Missing tiles (cells still to run) are
drawn grey with "pending". The size depends only on the counts and the tile size
(:func:`grid_size`), so a partial grid has the size of the finished one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

PAD = 8
LABEL_WIDTH = 150
TEXT = 16  # font size in px
LINE = TEXT + 6


@dataclass(frozen=True)
class Layout:
    """Pixel geometry of a grid with ``rows`` x ``cols`` tiles of ``tile`` = (width, height)."""

    rows: int
    cols: int
    tile: tuple[int, int]
    captions: int = 1  # caption lines under each tile

    @property
    def header_height(self) -> int:
        return PAD + self.tile[1] + 2 * LINE + PAD  # reference images with two label lines

    @property
    def row_height(self) -> int:
        return self.tile[1] + self.captions * LINE + PAD

    def size(self) -> tuple[int, int]:
        width = LABEL_WIDTH + self.cols * (self.tile[0] + PAD) + PAD
        height = self.header_height + LINE + self.rows * self.row_height + PAD
        return width, height

    def origin(self, row: int, col: int) -> tuple[int, int]:
        """Top-left pixel of tile (row, col)."""
        return LABEL_WIDTH + col * (self.tile[0] + PAD), self.header_height + LINE + row * self.row_height


def grid_size(rows: int, cols: int, tile: tuple[int, int], captions: int = 1) -> tuple[int, int]:
    """(width, height) in px: LABEL_WIDTH + cols (w + PAD) + PAD by header + label line + rows (h + captions lines + PAD) + PAD."""
    return Layout(rows, cols, tile, captions).size()


def tile_size(height: int, width: int, long_edge: int = 256) -> tuple[int, int]:
    """(width, height) of a tile showing an (H, W) image scaled to a long edge of ``long_edge``."""
    scale = long_edge / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _font(size: int = TEXT) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except TypeError:  # pragma: no cover - old Pillow
        return ImageFont.load_default()


def _fit(img: Image.Image, box: tuple[int, int]) -> Image.Image:
    """``img`` scaled (aspect kept) to fit ``box`` = (w, h), centred on white."""
    scale = min(box[0] / img.width, box[1] / img.height)
    resized = img.convert("RGB").resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                                        Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", box, "white")
    canvas.paste(resized, ((box[0] - resized.width) // 2, (box[1] - resized.height) // 2))
    return canvas


def _text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, width: int, font, fill: str = "black") -> None:
    """Draws ``text`` at ``xy``, shortened with an ellipsis to fit ``width`` px."""
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    draw.text(xy, text, fill=fill, font=font)


def _wrap(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> list[str]:
    """Greedy word wrap of ``text`` into lines of at most ``width`` px."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def draw_grid(
    rows: Sequence[str],
    cols: Sequence[str],
    tiles: Mapping[tuple[int, int], Image.Image | None],
    tile: tuple[int, int],
    header: Sequence[tuple[str, Image.Image]] = (),
    captions: Mapping[tuple[int, int], str] | None = None,
    title: str = "",
    blank: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset(),
    caption_lines: int = 1,
) -> Image.Image:
    """Draws the grid.

    Args:
        rows, cols: row labels (methods) and column labels (weights, layer sets).
        tiles: ``{(row, col): image}``; a missing key or ``None`` is drawn as "pending".
        tile: (width, height) of every tile; images are fitted into it, aspect kept.
        header: labelled reference images shown above the grid (e.g. ("content\\nx.jpg", img); two lines).
        captions: optional text under tiles, lines separated by newlines (at most ``caption_lines``).
        title: text right of the header images.
        blank: tiles left white (no image expected there, e.g. a model row's other columns).
    """
    layout = Layout(len(rows), len(cols), tile, caption_lines)
    canvas = Image.new("RGB", layout.size(), "white")
    draw = ImageDraw.Draw(canvas)
    font, small = _font(), _font(TEXT - 3)
    x = PAD
    for label, img in header:
        canvas.paste(_fit(img, tile), (x, PAD))
        for i, line in enumerate(label.split("\n")[:2]):
            _text(draw, (x, PAD + tile[1] + 2 + i * LINE), line, tile[0], font)
        x += tile[0] + PAD
    if title:
        room = max(0, canvas.width - x - 2 * PAD)
        for i, line in enumerate(_wrap(draw, title, room, small)[: max(1, (tile[1] + 2 * LINE) // LINE)]):
            _text(draw, (x + PAD, PAD + i * LINE), line, room, small)
    top = layout.header_height
    for c, label in enumerate(cols):
        _text(draw, (layout.origin(0, c)[0], top), label, tile[0], font)
    for r, label in enumerate(rows):
        y = layout.origin(r, 0)[1]
        _text(draw, (PAD, y + tile[1] // 2 - TEXT // 2), label, LABEL_WIDTH - 2 * PAD, font)
        for c in range(len(cols)):
            if (r, c) in blank:
                continue
            ox, oy = layout.origin(r, c)
            img = tiles.get((r, c))
            if img is None:
                draw.rectangle([ox, oy, ox + tile[0] - 1, oy + tile[1] - 1], fill=(225, 225, 225))
                _text(draw, (ox + 4, oy + 4), "pending", tile[0] - 8, small, fill="gray")
            else:
                canvas.paste(_fit(img, tile), (ox, oy))
            for i, line in enumerate((captions or {}).get((r, c), "").split("\n")[:caption_lines]):
                _text(draw, (ox, oy + tile[1] + 2 + i * LINE), line, tile[0], small, fill=(60, 60, 60))
    return canvas
