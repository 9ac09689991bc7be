"""Average the weights of several milestones of one training run (equal weights per tensor).

Along a long run the test score of single milestones moves by ±0.15 dB from one to the next,
and the average of two neighbouring milestones scored at least as well as the better of them
(stage 14: 5,000 and 5,500 → 25.18 dB, against 25.12 and 25.18; stage 17: 1,000 and 1,500 →
24.87, against 24.54 and 24.83; docs/model_sweep.md "Stage 17"). This writes such an average
as an ordinary weights folder:

    python scripts/average_weights.py --out AVG RUN/weights-00004500 RUN/weights-00005000

The folders must hold the same network and come from the same run (``train.name`` in their
config.json). The result's ``config.json`` records ``train.iter`` (the last of them) and
``train.average_of`` (all of them), which the model card names. Average a twin over the same
iterations. Safetensors only; nothing is unpickled.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import interir  # noqa: E402
from interir.errors import InterIRError  # noqa: E402
from interir.weights import read_config, training_stage  # noqa: E402


def average(dirs: list[Path]) -> tuple[interir.InterIR, dict]:
    """The equal-weight average of the weights folders ``dirs`` and the ``train`` record of it."""
    if len(dirs) < 2:
        raise InterIRError("average: give two or more weights folders")
    config = read_config(dirs[0])
    stages = [training_stage(d) for d in dirs]
    for d, (name, it) in zip(dirs, stages):
        other = read_config(d)
        if other != config:
            raise InterIRError(f"{d}: another network than {dirs[0]} ({other} vs {config})")
        if name != stages[0][0] or name is None or it is None:
            raise InterIRError(f"{d}: not a milestone of the same run as {dirs[0]} (train.name "
                               f"{name!r} at {it}, against {stages[0][0]!r})")
    iters = sorted(it for _, it in stages)
    if len(set(iters)) != len(iters):
        raise InterIRError(f"average: one iteration given twice ({iters})")
    models = [interir.load_pretrained(d) for d in dirs]
    out = models[0]
    states = [m.state_dict() for m in models]
    with torch.no_grad():
        for key, value in out.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.stack([s[key] for s in states]).mean(0))
    return out, {"name": stages[0][0], "iter": iters[-1], "average_of": iters}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="+", type=Path, help="weights folders of one run")
    ap.add_argument("--out", required=True, type=Path, help="the folder to write")
    args = ap.parse_args(argv)
    try:
        if args.out.exists() and any(args.out.iterdir()):
            raise InterIRError(f"--out {args.out}: exists and is not empty; nothing overwritten")
        model, train = average(args.weights)
    except InterIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    interir.save_pretrained(model, args.out, extra={"train": train})
    print(f"wrote {args.out}: {train['name']} averaged over iterations "
          + ", ".join(f"{i:,}" for i in train["average_of"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
