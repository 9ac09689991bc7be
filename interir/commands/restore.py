"""interir restore IN OUT [--weights DIR]"""
from __future__ import annotations

import argparse

import torch

from ..fileio import check_output_path
from ..imageio import SAVE_FORMATS, save_image
from ._common import (add_max_pixels_argument, add_weights_argument, image_tensor, resolve_model,
                      tensor_image)

HELP = "restore a degraded image (haze / rain / noise) and write the result"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="degraded image (PNG, JPEG, TIFF, WebP, BMP, ...)")
    p.add_argument("output", metavar="OUT", help="restored image; format from the extension")
    add_weights_argument(p)
    add_max_pixels_argument(p)


def run(args: argparse.Namespace) -> int:
    out = check_output_path(args.output, tuple(SAVE_FORMATS))
    x = image_tensor(args.input, args.max_pixels)
    model = resolve_model(args.weights)
    with torch.inference_mode():
        y = model(x)
    save_image(tensor_image(y), out)
    print(f"wrote {out} ({x.shape[-1]}x{x.shape[-2]})")
    return 0
