"""Branch a training run into the other reading of Eq. 19, exactly (issue 10).

    python scripts/branch_run.py RUNS/interir-n6-long3 RUNS/interir-n6-unit --conv-type explain_unit --name interir-n6-unit

copies the run's training state (model, Adam, schedule, RNG, log) into a new run folder with the
explainable kernels moved from ``explain`` (W ⊙ A) to ``explain_unit`` (W ⊙ K²·A) or back: the
network computes the same outputs, and ``interir train --config C --run-dir DEST --resume`` (C: the
run's config with that ``conv_type`` and ``name``) continues from the same iteration on the same
batches, so the parametrisation is the only difference from the run it branched from
(``interir.model.reparam``).
"""
from __future__ import annotations

import argparse
import sys

from interir.errors import InterIRError
from interir.model.epblock import EXPLAIN_TYPES
from interir.train import branch_training_state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="run folder with a training state (state.json)")
    parser.add_argument("dest", help="new run folder (must not hold a training state)")
    parser.add_argument("--conv-type", required=True, choices=EXPLAIN_TYPES)
    parser.add_argument("--name", default=None, help="the new run's name (its config's `name`)")
    args = parser.parse_args(argv)
    try:
        path = branch_training_state(args.src, args.dest, args.conv_type, args.name)
    except InterIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"branched {args.src} -> {path} (conv_type {args.conv_type})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
