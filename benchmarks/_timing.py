"""Tiny timing helper shared by the benchmark scripts."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU) before reading a clock."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], object], device: str = "cpu", warmup: int = 3, reps: int = 10,
           min_time: float = 0.0) -> float:
    """Median seconds per call of ``fn`` (synchronising CUDA)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    start = time.perf_counter()
    while len(times) < reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timeit_interleaved(fns: list[Callable[[], object]], device: str = "cpu", warmup: int = 2,
                       reps: int = 10) -> list[float]:
    """Median seconds per call of each function, calling them in turn (A B C A B C ...) so
    that drifting machine load affects all of them alike."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        for fn in fns:
            fn()
    sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            sync()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]
