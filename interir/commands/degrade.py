"""interir degrade CLEAN OUT [--haze L] [--rain L] [--noise L] [--seed S]"""
from __future__ import annotations

import argparse
import math

from ..errors import InterIRError
from ..fileio import check_output_path
from ..imageio import SAVE_FORMATS, load_image, save_image
from ._common import add_max_pixels_argument

HELP = "synthesise haze / rain / noise on a clean image (the training degradations)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..data.degrade import RANGES

    p.add_argument("clean", metavar="CLEAN", help="clean image (PNG, JPEG, TIFF, WebP, BMP, ...)")
    p.add_argument("output", metavar="OUT", help="degraded image; format from the extension "
                   "(use PNG: JPEG/WebP compression alters the noise)")
    for name, (lo, hi) in RANGES.items():
        p.add_argument(f"--{name}", type=float, default=0.0, metavar="L",
                       help=f"{name} level in [{lo:g}, {hi:g}] (default 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_max_pixels_argument(p)


def check_level(name: str, value: float) -> float:
    """Validate a level against :data:`RANGES` (raises InterIRError naming the option)."""
    from ..data.degrade import RANGES

    lo, hi = RANGES[name]
    if not math.isfinite(value) or not lo <= value <= hi:
        raise InterIRError(f"--{name} {value:g} is outside [{lo:g}, {hi:g}]")
    return value


def run(args: argparse.Namespace) -> int:
    from ..data.degrade import degrade_image

    levels = {n: check_level(n, getattr(args, n)) for n in ("haze", "rain", "noise")}
    out = check_output_path(args.output, tuple(SAVE_FORMATS))
    if args.max_pixels is not None and args.max_pixels <= 0:
        raise InterIRError("--max-pixels must be positive")
    img = load_image(args.clean, max_pixels=args.max_pixels)
    y = degrade_image(img, levels["haze"], levels["rain"], levels["noise"], seed=args.seed)
    save_image(y, out)
    desc = ", ".join(f"{k} {v:g}" for k, v in levels.items() if v > 0) or "no degradation"
    print(f"wrote {out} ({img.shape[1]}x{img.shape[0]}, {desc}, seed {args.seed})")
    return 0
