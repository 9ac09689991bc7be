"""The schedule that fits a GPU call (``scripts/device_train.sh --fit``).

The GPU's speed is not known ahead, so a cosine schedule written for the CPU would be cut off
half-way. The script first trains every run together for a short probe; this module reads each
probe's ``log.csv``, takes the slowest rate and rewrites every run's device copy of its config
with one ``train.total_iter`` (twins stay at one iteration) and validation, state and kept weights
at each quarter of it:

    python scripts/device_fit.py RUNS_DIR SECONDS_LEFT STEP RESERVE NAME [NAME ...]

reads ``RUNS_DIR/probe/NAME/log.csv`` and rewrites ``RUNS_DIR/NAME.yaml``. Needs only what the
device image has (pyyaml).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import yaml

SAFETY = 0.92   # a run alone after the probe is not slower than in it; validation is not free


class FitError(Exception):
    """The probe says nothing usable; the script then trains the configs as written."""


def probe_rate(log_csv: Path) -> float:
    """Iterations per second of one probe, from its ``train`` rows after the first two (start-up,
    autotuning)."""
    try:
        with open(log_csv, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("kind") == "train"]
    except OSError:
        rows = []
    rows = rows[2:]
    if len(rows) < 2:
        raise FitError(f"the probe logged too few iterations ({log_csv})")
    a, b = rows[0], rows[-1]
    seconds = float(b["time"]) - float(a["time"])
    if seconds <= 0:
        raise FitError(f"the probe's times do not advance ({log_csv})")
    return (int(b["iter"]) - int(a["iter"])) / seconds


def fit_schedule(rates: list[float], seconds_left: float, step: int,
                 reserve: float) -> tuple[int, int]:
    """``(total_iter, quarter)``: what the slowest run does in ``seconds_left - reserve``, in
    multiples of ``step``; ``quarter`` is the validation / kept-weights interval."""
    total = int(min(rates) * max(seconds_left - reserve, 0.0) * SAFETY) // step * step
    if total < step:
        raise FitError(f"{seconds_left:.0f} s left fit fewer than {step} iterations")
    return total, max(total // 4 // step * step, step)


def rewrite(config: Path, total: int, quarter: int) -> None:
    """Set the schedule in a device copy of a config."""
    raw = yaml.safe_load(config.read_text())
    raw["train"]["total_iter"] = total
    raw.setdefault("val", {})["every"] = quarter
    ckpt = raw.setdefault("checkpoint", {})
    ckpt["every"] = ckpt["keep_every"] = quarter
    config.write_text(yaml.safe_dump(raw))


def main(argv: list[str]) -> int:
    usage = __doc__.split("\n\n")[2]
    try:
        runs, left, step, reserve, names = Path(argv[0]), float(argv[1]), int(argv[2]), float(argv[3]), argv[4:]
    except (IndexError, ValueError):
        names = []
    if not names or step < 1:
        print(f"usage:\n{usage}", file=sys.stderr)
        return 2
    try:
        rates = [probe_rate(runs / "probe" / name / "log.csv") for name in names]
        total, quarter = fit_schedule(rates, left, step, reserve)
    except FitError as exc:
        print(f"device_train: error: {exc}", file=sys.stderr)
        return 1
    for name, rate in zip(names, rates):
        print(f"probe {name}: {rate:.2f} it/s")
        rewrite(runs / f"{name}.yaml", total, quarter)
    print(f"fit: total_iter {total}, validation and kept weights every {quarter}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
