"""The README's first picture: every shipped style (checkpoints/zoo.json) on a few real photos.

One row per style (labelled with its loss; its name under the painting), the painting first, then the photos stylized
by the shipped network in one forward pass each; the top row shows the photos themselves.

    python scripts/zoo_picture.py photo1.jpg photo2.jpg photo3.jpg photo4.jpg --styles paintings/ \
        --output docs/images/zoo.jpg

``--styles``: the folder holding each style's painting (``style_image`` in zoo.json; not in the repository).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from fastmmd.base.grid import PAD, Layout, draw_grid, tile_size
from fastmmd.base.images import open_image, read_image, tensor_to_pil
from fastmmd.infer.stylize import load_stylizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--zoo", default="checkpoints", help="folder with zoo.json and the shipped files")
    data = os.environ.get("FASTMMD_DATA")
    ap.add_argument("--styles", default=data and os.path.join(data, "styles"),
                    help="folder of the paintings (default: $FASTMMD_DATA/styles)")
    ap.add_argument("--size", type=int, default=384, help="long edge the photos are stylized at")
    ap.add_argument("--tile", type=int, default=200, help="long edge of a tile in the picture")
    ap.add_argument("--output", default="docs/images/zoo.jpg")
    args = ap.parse_args()
    if not args.styles:
        ap.error("give --styles DIR (or set FASTMMD_DATA to a folder with styles/): the paintings named in zoo.json")
    torch.set_grad_enabled(False)
    zoo = Path(args.zoo)
    styles = json.loads((zoo / "zoo.json").read_text())["styles"]
    photos = [read_image(p, args.size) for p in args.photos]
    tile = tile_size(photos[0].shape[1], photos[0].shape[2], args.tile)
    rows, tiles, captions = ["photo"], {}, {}
    for c, x in enumerate(photos):
        tiles[(0, c + 1)] = tensor_to_pil(x)
    for name, entry in styles.items():
        r = len(rows)
        rows.append(f"loss: {entry['loss']}")
        tiles[(r, 0)] = open_image(Path(args.styles) / entry["style_image"])[0]
        captions[(r, 0)] = f"{name} ({entry['painter'].split()[-1]})"
        stylizer = load_stylizer(zoo / entry["files"]["torchscript"], device="cpu")
        for c, x in enumerate(photos):
            tiles[(r, c + 1)] = tensor_to_pil(stylizer.stylize_tensor(x.unsqueeze(0))[0].float().clamp(0, 1))
    cols = ["painting", *(Path(p).stem for p in args.photos)]
    picture = draw_grid(rows, cols, tiles, tile, captions=captions, blank={(0, 0)})
    top = Layout(len(rows), len(cols), tile).header_height - PAD  # no reference images: drop the empty header
    picture = picture.crop((0, top, picture.width, picture.height))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.convert("RGB").save(out, quality=88) if out.suffix.lower() in (".jpg", ".jpeg") else picture.save(out)
    print(f"wrote {out} ({picture.width}x{picture.height})")


if __name__ == "__main__":
    main()
