"""``interir build-reference [--weights DIR] [--out FILE]``: rebuild the degradation-embedding
reference set for a set of weights (the explorer's embedding map and ``interir report``)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "rebuild the degradation-embedding reference set (t-SNE map) for a set of weights"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..reference import SHIPPED_REFERENCE
    from ._common import add_weights_argument

    add_weights_argument(p)
    p.add_argument("--out", metavar="FILE.npz", default=None,
                   help=f"where to write it (default: {SHIPPED_REFERENCE.relative_to(SHIPPED_REFERENCE.parents[2])} "
                        "without --weights, else the cache folder $INTERIR_CACHE_DIR or ~/.cache/interir)")
    p.add_argument("--size", type=int, default=128, help="crop size in pixels (default 128)")
    p.add_argument("--seeds", type=int, default=3, help="crops/levels per photo and combo (default 3)")


def run(args: argparse.Namespace) -> int:
    from ..errors import InterIRError
    from ..reference import SHIPPED_REFERENCE, build_reference, cache_dir, weights_hash
    from ..fileio import check_output_path
    from ._common import resolve_model

    if args.size < 16 or args.seeds < 1:
        raise InterIRError("--size must be >= 16 and --seeds >= 1")
    model = resolve_model(args.weights)
    if args.out:
        out = check_output_path(args.out, (".npz",))
    elif args.weights is None:
        out = SHIPPED_REFERENCE
    else:
        out = cache_dir() / f"reference_{weights_hash(model)[:16]}.npz"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    build_reference(model, out=out, size=args.size, seeds=args.seeds)
    return 0
