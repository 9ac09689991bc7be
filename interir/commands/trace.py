"""interir trace IN --out BUNDLE.npz [--weights DIR]"""
from __future__ import annotations

import argparse
import json

from ..fileio import atomic_write_text, check_output_path
from ..trace import trace
from ._common import add_max_pixels_argument, add_weights_argument, image_tensor, resolve_model

HELP = "record the unfolding of one image: iterations, A/B, Λ, masks, attention, embedding (.npz + .json)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="degraded image")
    p.add_argument("--out", required=True, metavar="BUNDLE.npz", help="trace bundle to write; a JSON "
                   "summary is written beside it (BUNDLE.json)")
    add_weights_argument(p)
    add_max_pixels_argument(p)


def run(args: argparse.Namespace) -> int:
    out = check_output_path(args.out, (".npz",))
    x = image_tensor(args.input, args.max_pixels)
    tr = trace(resolve_model(args.weights), x)
    tr.save_npz(out)
    summary_path = out.with_suffix(".json")
    atomic_write_text(summary_path, json.dumps(tr.summary(), indent=2) + "\n")
    print(f"wrote {out} and {summary_path} ({len(tr.iterations)} iterations, {len(tr.masks)} masks)")
    return 0
