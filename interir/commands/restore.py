"""interir restore IN OUT [--weights DIR] [--tile N [--tile-overlap M]]"""
from __future__ import annotations

import argparse

import torch

from ..fileio import check_output_path
from ..imageio import SAVE_FORMATS, save_image
from ..tiling import check_tiling, restore_tiled
from ._common import (add_max_pixels_argument, add_weights_argument, image_tensor, resolve_model,
                      tensor_image)

HELP = "restore a degraded image (haze / rain / noise) and write the result"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="degraded image (PNG, JPEG, TIFF, WebP, BMP, ...)")
    p.add_argument("output", metavar="OUT", help="restored image; format from the extension")
    add_weights_argument(p)
    add_max_pixels_argument(p)
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="restore in N×N tiles blended over --tile-overlap pixels (large photos: linear "
                        "time, the memory of one tile; A and B are then estimated per tile); "
                        "default: the whole image at once")
    p.add_argument("--tile-overlap", type=int, default=64, metavar="M",
                   help="pixels shared by neighbouring tiles, blended linearly (default 64)")


def run(args: argparse.Namespace) -> int:
    out = check_output_path(args.output, tuple(SAVE_FORMATS))
    if args.tile is not None:
        check_tiling(args.tile, args.tile_overlap)
    x = image_tensor(args.input, args.max_pixels)
    model = resolve_model(args.weights)
    if args.tile is not None:
        y = restore_tiled(model, x, args.tile, args.tile_overlap)
    else:
        with torch.inference_mode():
            y = model(x)
    save_image(tensor_image(y), out)
    print(f"wrote {out} ({x.shape[-1]}x{x.shape[-2]})")
    return 0
