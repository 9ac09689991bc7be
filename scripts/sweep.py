"""The model sweep of issue 10: same data, seed and iteration budget for every row; each row a
few overrides of ``configs/sweep/base.yaml``.

    python scripts/sweep.py run --runs DIR [--rows a,b] [--threads 1]   # resumable; skips done rows
    python scripts/sweep.py report --runs DIR [--out docs/model_sweep.md]   # rewrites only the table

``run`` trains each row with ``interir train --run-dir DIR/<row>`` (``--resume`` when the row has a
training state, so an interrupted sweep continues where it stopped; keep DIR outside the work
tree). ``report`` reads every row's ``log.csv`` and writes the table: the last validation PSNR
(average over the 7 combinations), the early-exit PSNR per iteration k at that validation and
whether it is non-decreasing (within 0.05 dB), the wall time per iteration, and the forward time
of the row's architecture at 512² on this machine (2 threads, random weights: speed does not
depend on them). A finished row whose run folder is not in DIR (run on an earlier machine) keeps
its line from the table already in ``--out``, so a sweep continued elsewhere adds rows without
losing the ones measured before.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "sweep" / "base.yaml"

#: row name -> (what it tests, overrides as {"section.key": value}).
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "paper-n6": ("the paper's reading: n = 6, explain conv, unit Norm, loss on the output only", {}),
    "ds-linear": ("+ deep supervision, weights ∝ k + 1", {"train.loss.deep_supervision": "linear"}),
    "ds-norm": ("+ deep supervision + learned Norm gain ρ", {"train.loss.deep_supervision": "linear",
                                                             "network.norm_scale": "learned"}),
    "ds-norm-unit": ("… + explain_unit (K²-scaled attention)", {
        "train.loss.deep_supervision": "linear", "network.norm_scale": "learned",
        "network.conv_type": "explain_unit"}),
    "ds-norm-sub": ("… + F subtractive (Eq. 28)", {
        "train.loss.deep_supervision": "linear", "network.norm_scale": "learned",
        "network.f_form": "subtractive"}),
    "ds-norm-std": ("… with standard depthwise convs (the twin)", {
        "train.loss.deep_supervision": "linear", "network.norm_scale": "learned",
        "network.conv_type": "standard"}),
    "ds-uniform-norm": ("deep supervision uniform + learned Norm gain", {
        "train.loss.deep_supervision": "uniform", "network.norm_scale": "learned"}),
    "ds-norm-lr1e-3": ("ds-norm at lr 1e-3", {"train.loss.deep_supervision": "linear",
                                               "network.norm_scale": "learned",
                                               "train.optimizer.lr": 1.0e-3}),
    "ds-norm-unit-lr1e-3": ("explain_unit at lr 1e-3 (the two best rows combined; session 33)", {
        "train.loss.deep_supervision": "linear", "network.norm_scale": "learned",
        "network.conv_type": "explain_unit", "train.optimizer.lr": 1.0e-3}),
    "ds-norm-n4": ("ds-norm at n = 4", {"train.loss.deep_supervision": "linear",
                                        "network.norm_scale": "learned", "network.n_blocks": 4}),
    "ds-norm-hinge": ("ds-norm + descent hinges (monotone 0.02 / dB, descent 0.3)", {
        "train.loss.deep_supervision": "linear", "network.norm_scale": "learned",
        "train.loss.monotone": 0.02, "train.loss.descent": 0.3}),
    "paper-hinge": ("the paper's loss on the output + descent hinges (no deep supervision)", {
        "train.loss.deep_supervision": "last", "network.norm_scale": "learned",
        "train.loss.monotone": 0.02, "train.loss.descent": 0.3}),
    "ds-resid": ("ds-norm with Norm read as identity + γ·M/‖M‖ (full-rank A, B; session 6)", {
        "train.loss.deep_supervision": "linear", "network.norm_scale": "residual"}),
    "ds-resid-hinge": ("ds-resid + descent hinges", {
        "train.loss.deep_supervision": "linear", "network.norm_scale": "residual",
        "train.loss.monotone": 0.02, "train.loss.descent": 0.3}),
}


def row_config(name: str) -> dict[str, Any]:
    """The base config with the row's overrides applied."""
    cfg = yaml.safe_load(BASE.read_text())
    for dotted, value in ROWS[name][1].items():
        *path, key = dotted.split(".")
        node = cfg
        for p in path:
            node = node.setdefault(p, {})
        node[key] = value
    cfg["name"] = f"sweep-{name}"
    return cfg


def run(args: argparse.Namespace) -> None:
    runs = Path(args.runs)
    names = args.rows.split(",") if args.rows else list(ROWS)
    for name in names:
        if name not in ROWS:
            sys.exit(f"sweep: unknown row {name!r}; rows: {', '.join(ROWS)}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for name in names:
        out = runs / name
        if (out / "DONE").exists():
            print(f"[sweep] {name}: done, skipped", flush=True)
            continue
        cfg = row_config(name)
        cfg["device"] = args.device
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
            yaml.safe_dump(cfg, fh)
        cmd = [sys.executable, "-m", "interir.cli", "train", "--config", fh.name, "--run-dir", str(out)]
        if (out / "state.json").exists():
            cmd.append("--resume")
        print(f"[sweep] {name}: {' '.join(cmd[3:])}", flush=True)
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=env)
        os.unlink(fh.name)
        if proc.returncode:
            sys.exit(f"[sweep] {name}: training failed (exit {proc.returncode})")
        (out / "DONE").write_text(f"{time.time() - t0:.0f} s\n")


def read_log(path: Path) -> dict[str, Any]:
    """Last validation of a run: average PSNR, per-stage PSNR, iterations, seconds per iteration."""
    rows = list(csv.DictReader(path.open()))
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val" and r["combo"] == "average"]
    last_it = int(val[-1]["iter"]) if val else 0
    stages = sorted(((int(r["stage"]), float(r["psnr"])) for r in rows
                     if r["kind"] == "val_stage" and r["combo"] == "average" and int(r["iter"]) == last_it))
    times = [(int(r["iter"]), float(r["time"])) for r in train if r.get("time")]
    sec_per_it = ((times[-1][1] - times[0][1]) / (times[-1][0] - times[0][0])
                  if len(times) > 1 and times[-1][0] > times[0][0] else float("nan"))
    def fraction(key: str) -> float | None:   # logs written before these columns have none
        return float(val[-1][key]) if val and val[-1].get(key) else None

    return {"iter": last_it, "trained": int(train[-1]["iter"]) if train else 0,
            "psnr": float(val[-1]["psnr"]) if val else float("nan"),
            "stages": [p for _, p in stages], "sec_per_it": sec_per_it,
            "pairs_monotone": fraction("monotone"), "pairs_descent": fraction("descent")}


def forward_ms(cfg: dict[str, Any]) -> float:
    """Median forward time at 512², 2 threads, of the row's architecture."""
    import statistics

    import torch

    import interir
    torch.set_num_threads(2)
    net = dict(cfg["network"])
    model = interir.build_model(net.pop("preset", "tiny"), **net).eval()
    x = torch.rand(1, 3, 512, 512)
    times = []
    with torch.inference_mode():
        for i in range(4):
            t0 = time.perf_counter()
            model(x)
            if i:
                times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def revalidated_fractions(run_dir: Path, cfg: dict[str, Any]) -> tuple[float, float] | None:
    """(pairs monotone, residual descending) of a run whose log predates those columns: its
    ``last/`` weights validated again on the row's validation set, cached in ``pairs.json``.
    None when the run has no ``last/`` weights."""
    cache = run_dir / "pairs.json"
    if cache.exists():
        d = json.loads(cache.read_text())
        return d["monotone"], d["descent"]
    if not (run_dir / "last" / "model.safetensors").exists():
        return None
    import torch

    import interir
    from interir.train import _load_val_sets, validate
    model = interir.load_pretrained(run_dir / "last")
    val = cfg["datasets"]["val"]
    avg = validate(model, _load_val_sets(str(ROOT / val["root"]), val.get("max_images")),
                   torch.device("cpu"))["average"]
    cache.write_text(json.dumps({"monotone": avg["monotone"], "descent": avg["descent"],
                                 "psnr": avg["psnr"], "weights": "last"}, indent=1) + "\n")
    return avg["monotone"], avg["descent"]


def earlier_rows(path: Path) -> dict[str, str]:
    """Row name -> its line in the table already between the markers of ``path`` (empty when
    there is no such file or table)."""
    text = path.read_text() if path.exists() else ""
    if BEGIN not in text or END not in text:
        return {}
    table = text.split(BEGIN, 1)[1].split(END, 1)[0]
    return {line.split("`")[1]: line for line in table.splitlines()
            if line.startswith("| `") and line.split("`")[1] in ROWS}


def report(args: argparse.Namespace) -> None:
    runs = Path(args.runs)
    earlier = earlier_rows(Path(args.out)) if args.out else {}
    lines = ["| row | what it tests | iters | val PSNR (dB) | early-exit PSNR k = 0..n | monotone | "
             "pairs monotone / residual descending | s / it | forward 512² (ms) |",
             "|---|---|---:|---:|---|:---:|:---:|---:|---:|"]
    unfinished: list[str] = []
    for name, (what, _) in ROWS.items():
        log = runs / name / "log.csv"
        if not log.exists():
            if name in earlier:   # measured on an earlier machine: keep its line
                lines.append(earlier[name])
            continue
        r = read_log(log)
        if not (runs / name / "DONE").exists():   # unfinished: no row, one line below the table
            unfinished.append(f"`{name}` ({r['trained']:,} of {row_config(name)['train']['total_iter']:,} "
                              "iterations)")
            continue
        mono = all(b >= a - 0.05 for a, b in zip(r["stages"], r["stages"][1:])) if r["stages"] else None
        stages = " → ".join(f"{p:.2f}" for p in r["stages"])
        fractions, mark = (r["pairs_monotone"], r["pairs_descent"]), ""
        if fractions[0] is None:   # a log from before the pair columns: validate its last weights
            fractions, mark = revalidated_fractions(runs / name, row_config(name)) or (None, None), "¹"
        pairs = ("—" if fractions[0] is None else
                 f"{100 * fractions[0]:.0f} % / {100 * fractions[1]:.0f} %{mark}")
        lines.append(f"| `{name}` | {what} | {r['iter']} | {r['psnr']:.2f} | {stages} | "
                     f"{'—' if mono is None else ('yes' if mono else 'no')} | {pairs} | "
                     f"{r['sec_per_it']:.2f} | {forward_ms(row_config(name)):.0f} |")
    if unfinished:
        lines.append("\nUnfinished (resumable; not in the table): " + ", ".join(unfinished) + ".")
    if any("¹ |" in line for line in lines):
        lines.append("\n¹ the run's log predates the pair columns: its last weights validated again "
                     "(`pairs.json` in the run folder).")
    text = "\n".join(lines) + "\n"
    if args.out:
        write_table(Path(args.out), text)
    print(text)


BEGIN, END = "<!-- sweep-table -->", "<!-- /sweep-table -->"


def write_table(path: Path, table: str) -> None:
    """Put ``table`` between the BEGIN / END markers of ``path`` (the rest of the document is
    kept); a file without the markers gets them appended with the table."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        text = f"{head}{BEGIN}\n{table}{END}{rest.split(END, 1)[1]}"
    else:
        text = f"{old}{BEGIN}\n{table}{END}\n"
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--runs", required=True, help="folder of the row runs (keep it outside the work tree)")
    r.add_argument("--rows", default=None, help="comma list (default: all rows in order)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (the same budget on any device)")
    p = sub.add_parser("report")
    p.add_argument("--runs", required=True)
    p.add_argument("--out", default=None)
    args = ap.parse_args()
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    main()
