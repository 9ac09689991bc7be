"""Commit a training run's kept weights as a milestone, and write the config that continues it.

A long stage runs over several sessions with its state outside the work tree (``RUNS/<run>``).
A new machine has only what is committed, so at milestones the kept weights of one iteration go
into ``milestones/<run>-<iter>/`` (``model.safetensors``, ``config.json``, the moving average in
``ema/`` when the run keeps one, and ``training_log.csv``: the run's log up to that iteration,
which the model cards read), and a new config continues from them with the rest of the schedule:

    python scripts/milestone.py --run-dir RUNS/interir-n6-s21 --iter 2000 \\
        --next interir-n6-s21b --seed 33

The continuation is a warm restart (Adam's moments and the batch order are not in a milestone):
the lr the run's schedule had at ``--iter``, a cosine over the iterations it had left, after a
short warm-up (``--warmup``), on new batches (``--seed``; earlier runs' seeds are in their configs).
``--next`` is refused when the schedule has ended (the next stage is a recipe of its own), except
for a leg at a constant lr (``constant``, or a cosine whose ``eta_min`` is its lr, after a warm-up):
its end continues as another leg of the same length, as stage 18's and stage 22's legs followed
each other.
Nothing is overwritten; a folder or config that exists already is an error.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interir.config import load_config  # noqa: E402
from interir.errors import InterIRError  # noqa: E402
from interir.fileio import read_text_file  # noqa: E402
from interir.train import warmup_cosine  # noqa: E402
from interir.weights import training_stage  # noqa: E402

WEIGHT_FILES = ("config.json", "model.safetensors")


def yaml_float(x: float) -> str:
    """``x`` to three digits as YAML 1.1 reads a float (it needs the dot: ``1e-05`` is a string)."""
    return f"{x:.2e}".replace("e-0", "e-")


def scheduled_lr(cfg: dict, it: int) -> float:
    """The lr ``cfg``'s schedule gives after ``it`` steps (as ``interir.train.build_scheduler``)."""
    train = cfg["train"]
    lr, sched = train["optimizer"]["lr"], train["scheduler"]
    if sched["type"] == "constant":
        return lr
    total, warmup, eta = train["total_iter"], int(sched.get("warmup_iter") or 0), sched["eta_min"]
    if warmup:
        return lr * warmup_cosine(lr, eta, warmup, total)(it)
    return eta + (lr - eta) * (1.0 + math.cos(math.pi * min(it, total) / total)) / 2.0


def trimmed_log(path: Path, it: int) -> str:
    """The CSV log at ``path`` without the rows written after iteration ``it``."""
    rows = list(csv.reader(io.StringIO(read_text_file(path, "training log"))))
    if not rows or "iter" not in rows[0]:
        raise InterIRError(f"{path}: not a training log (no 'iter' column)")
    col = rows[0].index("iter")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(rows[0])
    writer.writerows(r for r in rows[1:] if r and int(r[col]) <= it)
    return out.getvalue()


def kept_run(run_dir: Path, it: int) -> str:
    """The run's name (``train.name``) of the weights ``run_dir`` kept at ``it``."""
    src = run_dir / f"weights-{it:08d}"
    if not src.is_dir():
        kept = sorted(p.name for p in run_dir.glob("weights-*"))
        raise InterIRError(f"{src}: no weights kept at iteration {it} (kept: {', '.join(kept) or 'none'})")
    name, at = training_stage(src)
    if name is None or at != it:
        raise InterIRError(f"{src}/config.json: records run {name!r} at {at}, not a run at {it}")
    return name


def copy_milestone(run_dir: Path, it: int, dest: Path) -> None:
    """Copy the weights (and moving average) kept at ``it`` and the trimmed log into ``dest``."""
    kept_run(run_dir, it)
    src = run_dir / f"weights-{it:08d}"
    if dest.exists():
        raise InterIRError(f"{dest}: exists already; remove it first if it should be replaced")
    ema = run_dir / f"ema-{it:08d}"
    dest.mkdir(parents=True)
    for f in WEIGHT_FILES:
        shutil.copy2(src / f, dest / f)
    if ema.is_dir():
        (dest / "ema").mkdir()
        for f in WEIGHT_FILES:
            shutil.copy2(ema / f, dest / "ema" / f)
    (dest / "training_log.csv").write_text(trimmed_log(run_dir / "log.csv", it), encoding="utf-8")


def continuation(src_config: Path, milestone: str, it: int, name: str, seed: int,
                 warmup: int, note: str = "") -> tuple[str, dict]:
    """The text of a config that continues ``src_config`` from ``milestones/<milestone>`` at ``it``,
    and the values it must validate to."""
    cfg = load_config(src_config)
    train = cfg["train"]
    total = train["total_iter"]
    sched = train["scheduler"]
    constant = sched["type"] == "constant"
    # a cosine whose floor is its own lr is a constant lr after a warm-up (stage 18's and 22's
    # legs): an ended leg continues as another leg of the same length
    flat = constant or float(sched.get("eta_min", 0.0)) >= float(train["optimizer"]["lr"])
    new_leg = flat and it >= total
    if it > total or (it == total and not flat):
        raise InterIRError(f"{src_config}: its schedule ended at {total}; nothing to continue "
                           "(write the next stage's config instead)")
    left = total if new_leg else total - it
    if warmup >= left:
        raise InterIRError(f"--warmup {warmup}: must be below the {left} iterations left")
    lr_text = yaml_float(scheduled_lr(cfg, min(it, total)))
    lr = float(lr_text)
    text = read_text_file(src_config, "config file")
    body = text[text.index("name:"):] if "name:" in text else text
    edits = [
        (r"^name: .*$", f"name: {name}"),
        (r"^seed: .*$", f"seed: {seed}   # new batches for the continuation"),
        (r"(optimizer: \{.*?lr: )[0-9.eE+-]+", rf"\g<1>{lr_text}"),
        (r"^  total_iter: \d+", f"  total_iter: {left}"),
    ]
    if not constant:
        edits.append((r"scheduler: \{.*\}", "scheduler: {type: CosineAnnealingLR, eta_min: "
                      f"{yaml_float(train['scheduler']['eta_min'])}, warmup_iter: {warmup}}}"))
    for pattern, repl in edits:
        body, n = re.subn(pattern, repl, body, count=1, flags=re.M)
        if n != 1:
            raise InterIRError(f"{src_config}: cannot find {pattern!r} to rewrite; write the "
                               "continuation by hand")
    body = re.sub(r"^  init_(weights|ema): .*\n", "", body, flags=re.M)
    init = f"  init_weights: milestones/{milestone}\n"
    if "ema_decay" in train:
        init += f"  init_ema: milestones/{milestone}/ema\n"
    body = re.sub(r"^(  total_iter: .*\n)", rf"\g<1>{init}", body, count=1, flags=re.M)
    body = re.sub(r"^(  dir: )runs/.*$", rf"\g<1>runs/{name}", body, count=1, flags=re.M)
    restart = "" if constant else (f",\n# after a {warmup}-iteration warm-up (Adam's moments "
                                   "are not in the milestone)")
    if new_leg:
        schedule = f"another leg of {left:,} iterations at the same constant lr{restart}"
    elif flat:
        schedule = f"the same constant lr for the {left:,} iterations it had left{restart}"
    else:
        schedule = f"decayed by a cosine over the {left:,} iterations it had left{restart}"
    header = (
        f"# Continues configs/{src_config.stem}.yaml on a machine without its run state (RUNS/{src_config.stem},\n"
        "# outside the work tree); where that state exists, resume the run itself (--resume).\n"
        f"# A warm restart of its committed milestone milestones/{milestone} (its weights\n"
        f"# and their moving average): the lr it had at {it:,} ({lr_text}),\n"
        f"# {schedule}, on new batches (seed {seed}).\n"
        "# Written by scripts/milestone.py." + (f" {note}" if note else "") + "\n"
        f"#   OMP_NUM_THREADS=1 interir train --config configs/{name}.yaml --run-dir RUNS/{name} [--resume]\n")
    expect = {"name": name, "seed": seed, "lr": lr, "total_iter": left,
              "init_weights": f"milestones/{milestone}"}
    return header + body, expect


def check_continuation(path: Path, expect: dict) -> None:
    """Load the written config and check the rewritten values took."""
    cfg = load_config(path)
    got = {"name": cfg["name"], "seed": cfg["seed"], "lr": cfg["train"]["optimizer"]["lr"],
           "total_iter": cfg["train"]["total_iter"], "init_weights": cfg["train"].get("init_weights")}
    if got != expect:
        raise InterIRError(f"{path}: the rewritten config reads {got}, expected {expect}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True, help="the run's folder (RUNS/<run>)")
    ap.add_argument("--iter", type=int, required=True, help="an iteration with kept weights")
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                    help="the repository (milestones/ and configs/ under it)")
    ap.add_argument("--config", type=Path, help="the run's config (default configs/<run>.yaml)")
    ap.add_argument("--next", help="name of a config to write that continues from the milestone")
    ap.add_argument("--seed", type=int, help="its seed (required with --next)")
    ap.add_argument("--warmup", type=int, default=250, help="its warm-up iterations (default 250)")
    ap.add_argument("--note", default="", help="a sentence for its header (e.g. where the results are)")
    args = ap.parse_args(argv)
    try:
        if args.next and args.seed is None:
            raise InterIRError("--next needs --seed (new batches for the continuation)")
        root = args.root
        name = kept_run(args.run_dir, args.iter)
        src = args.config or root / "configs" / f"{name}.yaml"
        target = root / "configs" / f"{args.next}.yaml" if args.next else None
        if target is not None:
            if target.exists():
                raise InterIRError(f"{target}: exists already; choose another --next")
            text, expect = continuation(src, f"{name}-{args.iter}", args.iter, args.next,
                                        args.seed, args.warmup, args.note)
        dest = root / "milestones" / f"{name}-{args.iter}"
        copy_milestone(args.run_dir, args.iter, dest)
        print(f"milestone: {dest}")
        if target is not None:
            target.write_text(text, encoding="utf-8")
            check_continuation(target, expect)
            print(f"continues: {target} (lr {expect['lr']:.3g}, {expect['total_iter']} iterations)")
    except InterIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
