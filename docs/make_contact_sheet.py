"""Build ``docs/degradations.png``: the seven degradation combos (rows) at low / mid / high
levels (25 / 50 / 90 % of each range, columns), next to the clean crop, and a last row of rain
close-ups (the centre of the rain row's tiles at 2x, nearest neighbour).

Usage: python docs/make_contact_sheet.py [--photos A.jpg B.jpg] [--out docs/degradations.png]
By default two photos from ``../shared/data/bsd400`` (relative to the repository) are used;
rows alternate between them. Needs only the ``interir`` package and Pillow.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interir.data.degrade import COMBOS, RANGES, combo_levels, degrade_image  # noqa: E402
from interir.imageio import load_image, to_uint8  # noqa: E402

DEFAULT_PHOTOS = ["117025.jpg", "100075.jpg"]
FRACTIONS = (0.25, 0.5, 0.9)
TILE = 224
LABEL_W = 176
HEADER_H = 34
CAPTION_H = 20
GAP = 4


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w, _ = img.shape
    if h < size or w < size:
        raise SystemExit(f"photo is {w}x{h}, smaller than the {size}px tile")
    top, left = (h - size) // 2, (w - size) // 2
    return img[top:top + size, left:left + size]


def build(photos: list[Path], out: Path, seed: int = 0) -> None:
    crops = [_crop(load_image(p), TILE) for p in photos]
    cols = 1 + len(FRACTIONS)
    width = LABEL_W + cols * (TILE + GAP)
    row_h = TILE + CAPTION_H + GAP
    n_rows = len(COMBOS) + 1
    sheet = Image.new("RGB", (width, HEADER_H + n_rows * row_h), "white")
    draw = ImageDraw.Draw(sheet)
    big, small = _font(17), _font(13)
    heads = ["clean"] + [f"{int(f * 100)} % of range" for f in FRACTIONS]
    for c, text in enumerate(heads):
        draw.text((LABEL_W + c * (TILE + GAP) + 6, 8), text, fill="black", font=big)
    for r, combo in enumerate(COMBOS):
        clean = crops[r % len(crops)]
        clean = to_uint8(clean).astype(np.float32) / 255.0
        y0 = HEADER_H + r * row_h
        draw.text((8, y0 + TILE // 2 - 10), combo.replace("_", " + "), fill="black", font=big)
        active = combo_levels(combo)
        tiles = [(clean, "")]
        for f in FRACTIONS:
            lv = [RANGES[k][1] * f if on else 0.0 for k, on in zip(RANGES, active)]
            img = degrade_image(clean, *lv, seed=seed + r)
            cap = "  ".join(f"{k[0]}={v:g}" for k, v, on in zip(RANGES, lv, active) if on)
            tiles.append((img, cap))
        if combo == "rain":
            rain_tiles = tiles
        for c, (img, cap) in enumerate(tiles):
            x0 = LABEL_W + c * (TILE + GAP)
            sheet.paste(Image.fromarray(to_uint8(img)), (x0, y0))
            if cap:
                draw.text((x0 + 4, y0 + TILE + 3), cap, fill="black", font=small)
    # close-ups of the rain row: the centre quarter of each tile, 2x nearest neighbour
    y0 = HEADER_H + len(COMBOS) * row_h
    draw.text((8, y0 + TILE // 2 - 10), "rain, 2x close-up", fill="black", font=big)
    q = TILE // 4
    for c, (img, cap) in enumerate(rain_tiles):
        x0 = LABEL_W + c * (TILE + GAP)
        zoom = Image.fromarray(to_uint8(img[q:TILE - q, q:TILE - q]))
        sheet.paste(zoom.resize((TILE, TILE), Image.NEAREST), (x0, y0))
        if cap:
            draw.text((x0 + 4, y0 + TILE + 3), cap, fill="black", font=small)
    # an adaptive palette keeps the noisy tiles' PNG small (~1 MB) at little visible cost
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bsd400 = ROOT.parent / "shared" / "data" / "bsd400"
    ap.add_argument("--photos", nargs="+", type=Path,
                    default=[bsd400 / n for n in DEFAULT_PHOTOS])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "degradations.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    build(args.photos, args.out, args.seed)


if __name__ == "__main__":
    main()
