"""Model speed: forward, ``interir.trace`` and a training step, for this tree and (``--against``)
an older commit measured side by side in the same run.

    python benchmarks/model_speed.py                           # tiny and n=6, 1 and 2 threads
    python benchmarks/model_speed.py --against HEAD~3 --repeats 5
    python benchmarks/model_speed.py --device cuda --models paper --train-batch 32 \
        --train-patch 256 --amp none,bf16 --compile both --cases train

Every measurement runs in a fresh worker process (``--worker``) that imports the package from
one source tree (this one, or ``git archive REV`` of the older commit unpacked into a temporary
folder), builds the models from the same seed, warms up and times each case. Workers of the
two trees alternate (A B, then B A, ...) for ``--repeats`` rounds; a worker reports the minimum
over its timed calls and the table shows the median of those minima over the rounds, so drifting
machine load hits both trees alike.

Cases: ``forward`` (batch 1, ``--size``², no grad), ``trace`` (``interir.trace`` of the same
image; the trace keeps its intermediates, so the allocator matters: we use the default one) and
``train`` (``--train-batch`` × ``--train-patch``², Adam, the real L1 + 0.1·FFT loss, gradient
clipping at 1, as ``interir train`` does).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"tiny": {"preset": "tiny"},
          "n6": {"preset": "tiny", "n_blocks": 6},
          "paper": {"preset": "paper"}}


# --------------------------------------------------------------------------- worker (one tree)
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


def _time(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, reps: int,
          min_time: float, clock: str = "wall") -> float:
    for _ in range(warmup):
        fn()
    sync()
    tick = CLOCK[clock]
    best, start, n = float("inf"), time.perf_counter(), 0
    while n < reps or time.perf_counter() - start < min_time:
        t0 = tick()
        fn()
        sync()
        best = min(best, tick() - t0)
        n += 1
    return best


def worker(args: argparse.Namespace) -> None:
    """Time every (model, case) in this process and print one JSON line."""
    sys.path.insert(0, args.worker)
    import torch
    torch.set_num_threads(int(args.threads))
    import interir
    from interir.losses import RestorationLoss

    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    out: dict[str, float] = {}
    for name in args.models.split(","):
        spec = dict(MODELS[name])
        torch.manual_seed(0)
        model = interir.build_model(spec.pop("preset"), **spec).to(dev)
        x = torch.rand(1, 3, args.size, args.size, device=dev)
        cases = args.cases.split(",")
        if "forward" in cases or "trace" in cases:
            model.eval()

            def forward() -> None:
                with torch.inference_mode():
                    model(x)

            if "forward" in cases:
                out[f"{name}/forward"] = _time(forward, sync, args.warmup, args.reps, args.min_time,
                                               args.clock)
            if "trace" in cases:
                out[f"{name}/trace"] = _time(lambda: interir.trace(model, x), sync, args.warmup,
                                             args.reps, args.min_time, args.clock)
        if "train" in cases:
            for amp in args.amp.split(","):
                for comp in ([False, True] if args.compile == "both" else [args.compile == "on"]):
                    key = f"{name}/train" + ("" if amp == "none" else f"-{amp}") + ("-compile" if comp else "")
                    out[key] = _train_step_time(model, args, dev, sync, amp, comp)
    print("RESULT " + json.dumps(out), flush=True)


def _train_step_time(model: Any, args: argparse.Namespace, dev: Any, sync: Callable[[], None],
                     amp: str, compile_: bool) -> float:
    import torch
    from interir.losses import RestorationLoss

    model.train()
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999))
    loss_fn = RestorationLoss(1.0, 0.1)
    g = torch.Generator().manual_seed(1)
    b, p = args.train_batch, args.train_patch
    target = torch.rand(b, 3, p, p, generator=g).to(dev)
    inp = (target * 0.7 + 0.2 + 0.05 * torch.randn(b, 3, p, p, generator=g).to(dev)).clamp(0, 1)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            pred = step_model(inp)
        loss = loss_fn(pred, target)[0]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return _time(step, sync, args.warmup + (3 if compile_ else 0), args.train_reps, args.min_time,
                 args.clock)


# --------------------------------------------------------------------------- driver
def _export(rev: str, dest: Path) -> None:
    """Unpack the package of commit ``rev`` into ``dest`` (git archive; nothing is checked out)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "interir"], capture_output=True,
                             check=False)
    if archive.returncode:
        sys.exit(f"model_speed: cannot export {rev!r}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


def _run_worker(src: Path, threads: int, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(src), "--threads", str(threads)]
    for opt in ("models", "cases", "size", "train_batch", "train_patch", "warmup", "reps", "train_reps",
                "min_time", "device", "amp", "compile", "clock"):
        cmd += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"model_speed: worker for {src} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f} ms" if seconds < 10 else f"{seconds:9.2f} s "


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", metavar="REV", help="also measure this commit (e.g. HEAD~3, a tag)")
    ap.add_argument("--threads", default="1,2", help="comma list of torch thread counts (CPU)")
    ap.add_argument("--models", default="tiny,n6", help=f"comma list of {sorted(MODELS)}")
    ap.add_argument("--cases", default="forward,trace,train")
    ap.add_argument("--size", type=int, default=512, help="image side for forward and trace")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-patch", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds of workers")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5, help="timed calls per worker (forward, trace)")
    ap.add_argument("--train-reps", type=int, default=10, help="timed training steps per worker")
    ap.add_argument("--min-time", type=float, default=0.0, help="time each case at least this long (s)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="none", help="comma list of none,bf16 (training step)")
    ap.add_argument("--compile", default="off", choices=["off", "on", "both"],
                    help="torch.compile the training step")
    ap.add_argument("--clock", default="wall", choices=sorted(CLOCK),
                    help="wall: elapsed time; cpu: the worker's CPU time (all its threads), steadier "
                         "than wall time on a busy machine for comparing trees at one thread")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        sys.exit(f"model_speed: unknown model(s) {sorted(unknown)}; choose from {sorted(MODELS)}")
    threads = [int(t) for t in args.threads.split(",")] if args.device == "cpu" else [0]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this": ROOT}
        if args.against:
            _export(args.against, Path(tmp))
            trees[args.against] = Path(tmp)
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for r in range(args.repeats):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for t in threads:
                for name in order:
                    results.setdefault((name, t), []).append(_run_worker(trees[name], max(t, 1), args))
        _report(results, trees, threads, args)


def _report(results: dict, trees: dict, threads: list[int], args: argparse.Namespace) -> None:
    import torch
    print(f"device={args.device}  torch {torch.__version__}  size={args.size}²  train "
          f"{args.train_batch}×{args.train_patch}²  repeats={args.repeats} (median of per-worker minima)"
          f"  clock={args.clock}")
    keys = sorted(results[("this", threads[0])][0])
    head = f"{'case':<24} {'thr':>3} " + " ".join(f"{n[:14]:>14}" for n in trees)
    if args.against:
        head += f" {'speed-up':>9}"
    print(head)
    for key in keys:
        for t in threads:
            med = {n: statistics.median(res[key] for res in results[(n, t)]) for n in trees}
            row = f"{key:<24} {t:>3} " + " ".join(f"{_fmt(med[n]):>14}" for n in trees)
            if args.against:
                row += f" {med[args.against] / med['this']:8.2f}×"
            if key.split("/")[1].startswith("train"):
                row += "  (" + ", ".join(f"{1 / med[n]:.2f} it/s" for n in trees) + ")"
            print(row)


if __name__ == "__main__":
    main()
