"""``interir report IN --out REPORT.html [--weights DIR]``: a static HTML report of one image's
restoration and what happened inside the model (the explorer's panels, offline)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..weights import DEFAULT_CHECKPOINT_PATH

HELP = "write a self-contained HTML report of one image's restoration and its trace"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="degraded image")
    parser.add_argument("--out", required=True, metavar="REPORT.html", help="HTML file to write")
    parser.add_argument("--weights", metavar="DIR",
                        help=f"weights folder (default: the shipped checkpoint {DEFAULT_CHECKPOINT_PATH})")
    parser.add_argument("--reference", metavar="CLEAN",
                        help="clean image of the same size, for PSNR/SSIM per iteration")
    parser.add_argument("--max-side", type=int, default=1024,
                        help="downscale images longer than this many pixels (default 1024; 0 = never)")
    parser.add_argument("--embedding", metavar="NPZ",
                        help="reference embedding set (default: the shipped one, or the one "
                             "interir build-reference cached, if it matches the weights)")
    parser.add_argument("--title", help="report title")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import interir
    from interir.errors import InterIRError
    from interir.fileio import check_output_path
    from interir.imageio import downscale, load_image
    from interir.reference import find_reference, weights_hash

    # viz/ depends on interir/, never the reverse at import time: the report's drawing code is
    # imported only when this command runs (interir stays importable without viz's plotting deps).
    from viz.compact import compact_trace
    from viz.report import build_report, write_report

    out = check_output_path(args.out, (".html", ".htm"))
    if args.max_side < 0:
        raise InterIRError(f"--max-side must be >= 0, got {args.max_side}")
    if args.weights:
        model = interir.load_pretrained(args.weights)
    else:
        ckpt = interir.default_checkpoint()
        if ckpt is None:
            raise InterIRError(f"no --weights given and no shipped checkpoint ({DEFAULT_CHECKPOINT_PATH})")
        model = interir.load_pretrained(ckpt)
    t0 = time.perf_counter()
    img = load_image(args.input)
    orig = img.shape[:2]
    img = downscale(img, args.max_side)
    notes = [] if img.shape[:2] == orig else [
        f"The image was downscaled from {orig[1]}×{orig[0]} to {img.shape[1]}×{img.shape[0]} px."]
    ref = None
    if args.reference:
        ref = load_image(args.reference)
        if ref.shape[:2] != orig:
            raise InterIRError(f"{args.reference}: reference is {ref.shape[1]}x{ref.shape[0]}, "
                               f"image is {orig[1]}x{orig[0]}; they must be the same size")
        ref = downscale(ref, args.max_side)
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    tr = interir.trace(model, x)
    ct = compact_trace(tr, name=Path(args.input).name, notes=notes)
    del tr
    if ref is not None:
        ct.with_reference(ref, all_ssim=True)
    reference, ref_note = find_reference(weights_hash(model), args.embedding)
    if reference is None:
        ref_note += "; run interir build-reference [--weights DIR] to build one"
    html = build_report(ct, reference, title=args.title, reference_note=ref_note)
    write_report(html, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    return 0
