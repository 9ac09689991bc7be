"""``interir train --config FILE [--resume] [--run-dir DIR] [--stop-at N]``."""
from __future__ import annotations

import argparse

HELP = ("train a model from a YAML config (see configs/); --resume continues from checkpoint.dir; "
        "Ctrl-C or SIGTERM saves the state at the current iteration and stops")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``train`` options."""
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="YAML training config (relative paths inside are taken from the "
                             "current working directory)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the config's checkpoint.dir from its last "
                             "training state")
    parser.add_argument("--run-dir", default=None, metavar="DIR",
                        help="write (and --resume from) this folder instead of the config's "
                             "checkpoint.dir, e.g. a folder outside the work tree for a long run")
    parser.add_argument("--stop-at", type=int, default=None, metavar="N",
                        help="stop (validate and checkpoint) after iteration N; the learning-rate "
                             "schedule still spans train.total_iter, so --resume continues the run")


def run(args: argparse.Namespace) -> int:
    """Load and validate the config, then train (or resume)."""
    from ..config import load_config
    from ..train import Trainer

    cfg = load_config(args.config)
    if args.run_dir is not None:
        cfg["checkpoint"]["dir"] = args.run_dir
    trainer = Trainer(cfg, resume=args.resume, stop_at=args.stop_at)
    trainer.run()
    # stopped by Ctrl-C / SIGTERM with the state saved: the shell's code for that signal
    return 128 + trainer.interrupted if trainer.interrupted else 0
