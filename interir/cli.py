"""The ``interir`` command line. Each subcommand lives in ``interir/commands/<name>.py`` and
exposes ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.

User errors (:class:`InterIRError`) and unexpected failures are printed as one line on stderr
with a non-zero exit; set ``INTERIR_DEBUG=1`` to see tracebacks.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import InterIRError

COMMANDS = {
    "restore": "interir.commands.restore",
    "trace": "interir.commands.trace",
    "degrade": "interir.commands.degrade",
    "make-testset": "interir.commands.make_testset",
    "train": "interir.commands.train",
    "eval": "interir.commands.eval",
    "report": "interir.commands.report",
    "build-reference": "interir.commands.build_reference",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="interir", description="InterIR: interpretable multi-degradation "
                     f"image restoration ({', '.join(COMMANDS)}).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, modpath in COMMANDS.items():
        try:
            mod = importlib.import_module(modpath)
        except ModuleNotFoundError as exc:
            if exc.name == modpath:  # a listed command without its module: a broken install
                raise InterIRError(f"command {name!r}: module {modpath} is missing; reinstall "
                                   "interir") from None
            raise
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except InterIRError as exc:
        print(f"interir: error: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except InterIRError as exc:
        print(f"interir {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interir {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"interir {args.command}: error: out of memory; try a smaller image or "
              "--max-pixels", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - never show a traceback to users
        if os.environ.get("INTERIR_DEBUG"):
            raise
        print(f"interir {args.command}: unexpected error: {type(exc).__name__}: {exc} "
              "(set INTERIR_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
