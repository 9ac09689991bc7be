"""Where one training step of a real config spends its time: the step `interir train` runs
(synthesis, deep-supervision forward, loss with the hinges, backward, clipping, Adam), timed
and then profiled with ``torch.profiler``.

    python benchmarks/train_profile.py --config configs/interir-n6-long8.yaml [--device cuda] \
        [--steps 10] [--warmup 3] [--profile-steps 3] [--data DIR] [--top 20] [--trace FILE.json] \
        [--compile]

Prints the wall time per step, the host time per phase (data, forward, loss, backward, clip,
optimizer), aten calls and scalar reads per step, on CUDA the kernels per step, how often the host
waits for the GPU and the GPU's busy share of the wall time, and the ops with the most self time.
A GPU step that is host-bound shows a busy share far below 100 % and a host time per step near
the wall time.
The run folder is a temporary one, validation is off, and the weights start random unless
--init (the speed does not depend on them). Nothing is written unless --trace (a Chrome trace).
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._timing import sync  # noqa: E402
import interir.train as train_mod  # noqa: E402
from interir.config import load_config  # noqa: E402
from interir.errors import InterIRError  # noqa: E402

PHASES = ("data", "forward", "loss", "backward", "clip", "optimizer")
# the host waits for the GPU: explicit synchronisations (a scalar read of a CUDA tensor, a copy
# to the host, or torch.cuda.synchronize), counted on CUDA only
SYNC_OPS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def _ranged(name: str, fn: Callable) -> Callable:
    """``fn`` inside a profiler range named ``name`` (a function, so it binds as a method)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)
    return wrapper


def build_trainer(config: str, device: str, data: str | None, init: bool,
                  run_dir: Path, compile_: bool = False) -> train_mod.Trainer:
    """A Trainer for ``config`` on ``device`` in ``run_dir``, validation off."""
    cfg = load_config(config)
    cfg["train"]["compile"] = cfg["train"]["compile"] or compile_
    cfg["device"] = device
    cfg["checkpoint"]["dir"] = str(run_dir)
    cfg["datasets"]["val"]["root"] = None
    if data:
        cfg["datasets"]["train"]["root"] = data
    if not init:
        cfg["train"]["init_weights"] = None
    cfg["logger"]["tensorboard"] = False
    return train_mod.Trainer(cfg, log=lambda msg: None)


def _phase_ranges(trainer: train_mod.Trainer) -> ExitStack:
    """Profiler ranges around each phase of ``Trainer.train_step`` (the optimiser's step is
    named by torch itself)."""
    stack = ExitStack()
    stack.enter_context(mock.patch.object(train_mod, "make_batch",
                                          _ranged("data", train_mod.make_batch)))
    stack.enter_context(mock.patch.object(trainer, "net", _ranged("forward", trainer.net)))
    stack.enter_context(mock.patch.object(trainer, "loss_fn", _ranged("loss", trainer.loss_fn)))
    stack.enter_context(mock.patch.object(torch.Tensor, "backward",
                                          _ranged("backward", torch.Tensor.backward)))
    stack.enter_context(mock.patch.object(torch.nn.utils, "clip_grad_norm_",
                                          _ranged("clip", torch.nn.utils.clip_grad_norm_)))
    return stack


def time_steps(trainer: train_mod.Trainer, first: int, n: int) -> list[float]:
    """Seconds of each of ``n`` steps from iteration ``first`` (synchronised)."""
    times = []
    for it in range(first, first + n):
        t0 = time.perf_counter()
        trainer.train_step(it)
        sync(trainer.rt.device)
        times.append(time.perf_counter() - t0)
    return times


def summarise(events, steps: int, wall: float, profiled: float, on_cuda: bool) -> dict:
    """Per-step numbers from the profiler's averaged events of ``steps`` steps; ``wall`` and
    ``profiled``: seconds per step without and with the profiler."""
    by_name = {e.key: e for e in events}
    host = {p: by_name[p].cpu_time_total / 1e6 / steps if p in by_name else 0.0 for p in PHASES}
    host["optimizer"] = sum(e.cpu_time_total for e in events
                            if e.key.startswith("Optimizer.step#")) / 1e6 / steps
    aten = sum(e.count for e in events if e.key.startswith("aten::")) / steps
    scalar = by_name.get("aten::_local_scalar_dense")
    scalars = scalar.count / steps if scalar is not None else 0.0
    out = {"wall": wall, "profiled": profiled, "host": host, "aten_calls": aten,
           "scalar_reads": scalars}
    if on_cuda:
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        out["kernels"] = sum(e.count for e in kernels) / steps
        out["syncs"] = sum(by_name[k].count for k in SYNC_OPS if k in by_name) / steps
        out["device_busy"] = sum(e.self_device_time_total for e in kernels) / 1e6 / steps
    return out


def top_ops(events, steps: int, n: int, device: bool) -> list[tuple[str, float, int]]:
    """The ``n`` ops with the most self time (host, or ``device``), per step."""
    own = [e for e in events if e.key not in PHASES and not e.key.startswith("Optimizer.step#")]
    if device:  # the kernels themselves (an op also carries its kernels' time)
        own = [e for e in own if e.device_type == torch.autograd.DeviceType.CUDA]
    key = (lambda e: e.self_device_time_total) if device else (lambda e: e.self_cpu_time_total)
    return [(e.key, key(e) / 1e6 / steps, e.count)
            for e in sorted(own, key=key, reverse=True)[:n] if key(e) > 0]


def report(s: dict, tops: dict[str, list[tuple[str, float, int]]], steps: int) -> str:
    wall, prof = s["wall"], s["profiled"]
    lines = [f"wall per step: {wall * 1e3:.0f} ms ({1 / wall:.2f} it/s); under the profiler "
             f"{prof * 1e3:.0f} ms",
             "host time per step by phase (under the profiler):"]
    for p in PHASES:
        t = s["host"][p]
        lines.append(f"  {p:<10} {t * 1e3:9.1f} ms  {100 * t / prof:5.1f} %")
    rest = prof - sum(s["host"].values())
    lines.append(f"  {'other':<10} {rest * 1e3:9.1f} ms  {100 * rest / prof:5.1f} %")
    lines.append(f"aten calls per step: {s['aten_calls']:.0f}; scalar reads (.item()) per step: "
                 f"{s['scalar_reads']:.0f}")
    if "kernels" in s:
        busy = s["device_busy"]
        lines.append(f"CUDA kernels per step: {s['kernels']:.0f}; host waits for the GPU "
                     f"{s['syncs']:.0f} times a step; GPU busy {busy * 1e3:.0f} ms of"
                     f" {prof * 1e3:.0f} ms ({100 * busy / prof:.0f} %)")
    for where, top in tops.items():
        lines.append(f"ops with the most self {where} time (per step, {steps} profiled steps):")
        for name, t, count in top:
            lines.append(f"  {t * 1e3:9.2f} ms  {count / steps:7.0f} calls  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="a training config (YAML)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--data", help="folder of clean training images (default: the config's)")
    ap.add_argument("--init", action="store_true", help="start from the config's init_weights")
    ap.add_argument("--compile", action="store_true", help="torch.compile the step's model "
                    "(train.compile; the warm-up steps then include the compilation)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (no profiler)")
    ap.add_argument("--profile-steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--trace", help="write a Chrome trace of the profiled steps here")
    args = ap.parse_args(argv)
    if min(args.warmup, args.steps - 1, args.profile_steps - 1, args.top) < 0:
        ap.error("--steps and --profile-steps must be at least 1, --warmup and --top at least 0")
    try:
        on_cuda = torch.device(args.device).type == "cuda"
    except RuntimeError:
        ap.error(f"--device: not a device: {args.device!r} (cpu or cuda)")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = build_trainer(args.config, args.device, args.data, args.init,
                                    Path(tmp) / "run", args.compile)
            try:
                if on_cuda:  # as `interir train` does on a GPU
                    trainer.start_prefetch(1)
                net = trainer.model.config
                dcfg = trainer.cfg["datasets"]["train"]
                print(f"train_profile: {args.config} on {args.device}, batch {dcfg['batch_size']}"
                      f" x {dcfg['patch_size']}^2, n = {net['n_blocks']}, C = {net['channels']},"
                      f" conv {net['conv_type']}, {torch.get_num_threads()} threads")
                time_steps(trainer, 1, args.warmup)
                first = args.warmup + 1
                wall = statistics.median(time_steps(trainer, first, args.steps))
                first += args.steps
                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
                with _phase_ranges(trainer), profile(activities=acts) as prof:
                    profiled = statistics.median(time_steps(trainer, first, args.profile_steps))
            finally:
                trainer.close()
    except InterIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    events = prof.key_averages()
    s = summarise(events, args.profile_steps, wall, profiled, on_cuda)
    tops = {"host": top_ops(events, args.profile_steps, args.top, device=False)}
    if on_cuda:
        tops["GPU"] = top_ops(events, args.profile_steps, args.top, device=True)
    print(report(s, tops, args.profile_steps))
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"trace: {args.trace}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
