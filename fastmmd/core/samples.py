"""Sample data made offline: procedural photo-like scenes and a painting-like style image.

The quickstart must run without downloads, so it trains on images drawn here from a seed: landscapes
and small towns (sky gradients, sun or moon, clouds, layered hills, water, trees, buildings, film
grain) in varied palettes and layouts, and one style image of bold swirling brush strokes on a
blue-and-gold palette, different enough from the photos that the stylization is plain to see. The
same seed gives the same pixels.

Run ``python -m fastmmd.core.samples FOLDER`` to write ``FOLDER/photos/*.jpg`` and ``FOLDER/style.png``.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import torch
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from fastmmd.base.images import pil_to_tensor, tensor_to_pil
from fastmmd.base.outputs import atomic_path

Colour = tuple[int, int, int]

#: (sky top, sky horizon, hills near, ground, water) per time of day.
PALETTES: list[tuple[Colour, Colour, Colour, Colour, Colour]] = [
    ((40, 100, 200), (170, 210, 240), (60, 110, 50), (90, 140, 60), (50, 100, 150)),     # day
    ((60, 40, 110), (250, 150, 80), (70, 50, 60), (110, 80, 60), (120, 80, 110)),        # sunset
    ((15, 20, 50), (60, 70, 120), (25, 35, 45), (35, 45, 40), (30, 40, 70)),             # night
    ((120, 125, 135), (200, 200, 205), (80, 95, 85), (120, 120, 100), (100, 110, 120)),  # overcast
    ((90, 160, 220), (240, 220, 170), (150, 120, 70), (200, 170, 110), (70, 150, 170)),  # desert / coast
    ((30, 70, 140), (230, 120, 140), (40, 70, 70), (70, 90, 60), (60, 80, 130)),         # dusk
]

#: Tree crowns: greens and a few autumn colours.
LEAVES: list[Colour] = [(40, 110, 40), (70, 140, 50), (30, 80, 45), (110, 150, 60), (180, 120, 40), (160, 60, 30)]

#: Style palette: night blues against yellows and orange (a swirling, Van Gogh-like look).
STYLE_PALETTE: list[Colour] = [(18, 32, 92), (32, 70, 160), (70, 120, 200), (130, 180, 225), (240, 210, 70),
                               (250, 160, 30), (235, 235, 200), (20, 90, 90), (200, 60, 40)]


def _jitter(c: Colour, rng: random.Random, amount: int = 25) -> Colour:
    return tuple(max(0, min(255, v + rng.randint(-amount, amount))) for v in c)  # type: ignore[return-value]


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def _vertical_gradient(size: int, top: Colour, bottom: Colour) -> Image.Image:
    t = torch.linspace(0, 1, size).pow(1.3).view(size, 1, 1)
    a, b = torch.tensor(top).float() / 255, torch.tensor(bottom).float() / 255
    rows = a + (b - a) * t  # (H, 1, 3)
    return tensor_to_pil(rows.expand(size, size, 3).permute(2, 0, 1))


def _ridge(size: int, base: float, amplitude: float, rng: random.Random) -> list[tuple[float, float]]:
    """A hill outline: a sum of random sines, as a closed polygon down to the bottom edge."""
    waves = [(rng.uniform(0.5, 4) * 2 * math.pi / size, rng.uniform(0, 6.3), rng.uniform(0.2, 1)) for _ in range(4)]
    norm = sum(w for _, _, w in waves)
    pts = [(x, base - amplitude * sum(w * math.sin(f * x + p) for f, p, w in waves) / norm) for x in range(0, size + 8, 8)]
    return [*pts, (size, size), (0, size)]


def _tree(draw: ImageDraw.ImageDraw, x: float, ground: float, height: float, leaf: Colour, rng: random.Random) -> None:
    trunk = max(2.0, height * 0.08)
    draw.rectangle([x - trunk / 2, ground - height * 0.45, x + trunk / 2, ground], fill=(70, 50, 35))
    for _ in range(rng.randint(4, 8)):  # blobby crown of overlapping ellipses
        cx, cy = x + rng.uniform(-0.25, 0.25) * height, ground - height * rng.uniform(0.5, 0.9)
        r = height * rng.uniform(0.15, 0.28)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_jitter(leaf, rng, 20))


def _building(draw: ImageDraw.ImageDraw, x: float, ground: float, w: float, h: float, night: bool, rng: random.Random) -> None:
    wall = _jitter(rng.choice([(170, 150, 130), (120, 120, 130), (190, 170, 140), (150, 90, 70), (90, 95, 110)]), rng)
    draw.rectangle([x, ground - h, x + w, ground], fill=wall)
    if rng.random() < 0.5:  # pitched roof
        draw.polygon([(x - 2, ground - h), (x + w / 2, ground - h - w * 0.4), (x + w + 2, ground - h)], fill=(110, 50, 40))
    lit, dark = (250, 220, 120), (60, 70, 90)
    step = max(6.0, w / 4)
    for wy in range(int(ground - h + step / 2), int(ground - step / 2), int(step)):
        for wx in range(int(x + step / 3), int(x + w - step / 2), int(step)):
            on = rng.random() < (0.6 if night else 0.15)
            draw.rectangle([wx, wy, wx + step / 3, wy + step / 3], fill=lit if on else dark)


def photo(seed: int, size: int = 256) -> Image.Image:
    """One procedural "photo": sky, sun or moon, clouds, hills, optional water, trees or a town, grain."""
    rng = random.Random(seed)
    sky_top, horizon_c, hill, ground_c, water_c = (_jitter(c, rng) for c in rng.choice(PALETTES))
    night = sum(sky_top) < 120
    img = _vertical_gradient(size, sky_top, horizon_c)
    glow = Image.new("RGB", (size, size))
    sx, sy, sr = rng.uniform(0.1, 0.9) * size, rng.uniform(0.08, 0.4) * size, rng.uniform(0.04, 0.09) * size
    disc = (235, 235, 220) if night else _mix((255, 240, 180), (255, 150, 60), rng.random())
    ImageDraw.Draw(glow).ellipse([sx - 2.5 * sr, sy - 2.5 * sr, sx + 2.5 * sr, sy + 2.5 * sr], fill=_mix((0, 0, 0), disc, 0.5))
    img = ImageChops.screen(img, glow.filter(ImageFilter.GaussianBlur(sr * 1.2)))  # halo brightens the sky
    draw = ImageDraw.Draw(img)
    draw.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=disc)
    if night:
        for _ in range(rng.randint(20, 60)):
            x, y = rng.uniform(0, size), rng.uniform(0, size * 0.45)
            draw.point((x, y), fill=(230, 230, 255))
    clouds = Image.new("L", (size, size))
    c = ImageDraw.Draw(clouds)
    for _ in range(rng.randint(0, 6)):
        cx, cy, w = rng.uniform(0, size), rng.uniform(0.05, 0.35) * size, rng.uniform(0.1, 0.3) * size
        for _ in range(5):
            dx, dy, r = rng.uniform(-w, w) / 2, rng.uniform(-w, w) / 6, rng.uniform(0.3, 0.6) * w / 2
            c.ellipse([cx + dx - r, cy + dy - r * 0.6, cx + dx + r, cy + dy + r * 0.6], fill=rng.randint(120, 220))
    img = Image.composite(Image.new("RGB", (size, size), _mix(horizon_c, (255, 255, 255), 0.6)), img, clouds.filter(ImageFilter.GaussianBlur(size / 40)))
    draw = ImageDraw.Draw(img)
    horizon = rng.uniform(0.45, 0.7) * size
    layers = rng.randint(2, 4)
    for k in range(layers):  # far hills are hazier (closer to the horizon colour)
        haze = 0.7 * (layers - 1 - k) / max(1, layers - 1)
        draw.polygon(_ridge(size, horizon - (layers - k) * size * 0.04, rng.uniform(0.03, 0.15) * size, rng), fill=_mix(_jitter(hill, rng), horizon_c, haze))
    water = rng.random() < 0.35
    if water:
        top = horizon + size * 0.05
        draw.rectangle([0, top, size, size], fill=water_c)
        for _ in range(40):  # ripples
            y = rng.uniform(top, size)
            x = rng.uniform(-20, size)
            draw.line([x, y, x + rng.uniform(10, 50), y], fill=_mix(water_c, horizon_c, rng.uniform(0.2, 0.6)), width=1)
    else:
        draw.polygon(_ridge(size, horizon + size * 0.08, size * 0.03, rng), fill=ground_c)
    ground = size * rng.uniform(0.8, 0.97) if not water else horizon + size * 0.05
    if rng.random() < 0.4:  # a town
        x = rng.uniform(-20, size * 0.3)
        while x < size:
            w, h = rng.uniform(0.08, 0.18) * size, rng.uniform(0.1, 0.35) * size
            _building(draw, x, ground, w, h, night, rng)
            x += w + rng.uniform(0, 0.08) * size
    leaf = _mix(rng.choice(LEAVES), hill, 0.3)
    for _ in range(rng.randint(0 if water else 2, 9)):  # trees, nearer ones bigger and lower
        depth = rng.random()
        _tree(draw, rng.uniform(0, size), ground + depth * size * 0.1, size * (0.12 + 0.25 * depth), leaf, rng)
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    t = pil_to_tensor(img)
    gen = torch.Generator().manual_seed(seed)
    grain = torch.randn(1, size, size, generator=gen) * 0.025 + torch.randn(3, size, size, generator=gen) * 0.01
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    vignette = 1 - 0.25 * (xx**2 + yy**2) / 2
    return tensor_to_pil((t * vignette + grain).clamp(0, 1))


def style(seed: int = 0, size: int = 256) -> Image.Image:
    """A painting-like style: thick strokes following swirls, blues and golds, dark contours."""
    rng = random.Random(seed)
    centres = [(rng.uniform(0, size), rng.uniform(0, size), rng.choice([-1, 1]) * rng.uniform(0.6, 1.0)) for _ in range(5)]

    def angle(x: float, y: float) -> float:
        """Flow direction: swirls around a few centres plus a wave."""
        vx, vy = 1.0, 0.3 * math.sin(y / size * 6.0)
        for cx, cy, spin in centres:
            dx, dy = x - cx, y - cy
            r2 = dx * dx + dy * dy + (size * 0.05) ** 2
            s = spin * size * size * 0.3 / r2
            vx, vy = vx - s * dy / size, vy + s * dx / size
        return math.atan2(vy, vx)

    def colour(x: float, y: float) -> Colour:
        """Gold near swirl centres and the lower band, blues elsewhere; jittered per stroke."""
        near = min(math.hypot(x - cx, y - cy) for cx, cy, _ in centres) / size
        if near < 0.06 or rng.random() < 0.08:
            base = STYLE_PALETTE[rng.choice([4, 5, 6])]
        elif y > size * 0.75 and rng.random() < 0.6:
            base = STYLE_PALETTE[rng.choice([7, 0, 8])]
        else:
            base = STYLE_PALETTE[rng.choice([0, 1, 1, 2, 2, 3])]
        return _jitter(base, rng, 18)

    canvas = Image.new("RGB", (size, size), STYLE_PALETTE[0])
    draw = ImageDraw.Draw(canvas)
    width = max(2, size // 48)
    for layer in range(3):  # coarse to fine strokes
        n = int((size / (width * (3 - layer))) ** 2 * 1.6)
        for _ in range(n):
            x, y = rng.uniform(-10, size + 10), rng.uniform(-10, size + 10)
            pts, c = [(x, y)], colour(x, y)
            for _ in range(rng.randint(3, 7)):
                a = angle(x, y)
                x, y = x + math.cos(a) * width * 1.5, y + math.sin(a) * width * 1.5
                pts.append((x, y))
            w = width * (3 - layer)
            draw.line(pts, fill=_mix(c, (10, 15, 40), 0.55), width=w + 2, joint="curve")  # contour
            draw.line(pts, fill=c, width=w, joint="curve")
    t = pil_to_tensor(canvas.filter(ImageFilter.SMOOTH))
    grain = torch.randn(1, size, size, generator=torch.Generator().manual_seed(seed)) * 0.03  # canvas texture
    return tensor_to_pil((t + grain).clamp(0, 1))


def write_samples(folder: str | Path, photos: int = 32, size: int = 256, seed: int = 0) -> dict[str, object]:
    """Writes ``folder/photos/photo_NNN.jpg`` and ``folder/style.png`` (existing files are kept).

    Returns:
        ``{"photos": folder of photos, "style": style path, "written": number of files written}``.
    """
    root = Path(folder)
    (root / "photos").mkdir(parents=True, exist_ok=True)
    written = 0
    for i in range(photos):
        path = root / "photos" / f"photo_{i:03d}.jpg"
        if not path.exists():
            with atomic_path(path) as tmp:
                photo(seed * 100_003 + i, size).save(tmp, format="JPEG", quality=92)
            written += 1
    style_path = root / "style.png"
    if not style_path.exists():
        with atomic_path(style_path) as tmp:
            style(seed, size).save(tmp, format="PNG")
        written += 1
    return {"photos": root / "photos", "style": style_path, "written": written}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastmmd.core.samples", description="Write offline sample photos and a style image.")
    parser.add_argument("folder", help="output folder (photos/ and style.png go inside)")
    parser.add_argument("--photos", type=int, default=32, help="number of photos (default 32)")
    parser.add_argument("--size", type=int, default=256, help="side of every image in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawings (default 0)")
    args = parser.parse_args(argv)
    if args.photos < 0 or args.size < 32:
        parser.error("--photos must be >= 0 and --size >= 32")
    out = write_samples(args.folder, args.photos, args.size, args.seed)
    print(f"{out['written']} files written; photos in {out['photos']}, style {out['style']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
