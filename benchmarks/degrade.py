"""Throughput of the degradation synthesis: images/s per combo and batch size.

Usage: python benchmarks/degrade.py [--size 256] [--batches 1 8 32] [--threads 1]
                                    [--device cpu] [--repeats 5]
Levels are drawn per sample as in training (``sample_levels`` restricted to the combo).
The brief's target is >= 50 images/s at 256^2 on one CPU thread.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._timing import sync  # noqa: E402
from interir.data.degrade import COMBOS, degrade, sample_levels  # noqa: E402


def bench(batch: int, size: int, combo: str, device: torch.device, repeats: int) -> float:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g, device=device)
    h, r, n, _ = sample_levels(batch, [combo], generator=g, device=device)
    degrade(x, h, r, n, generator=g)  # warm-up
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        degrade(x, h, r, n, generator=g)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return batch / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs; the best is reported")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"degrade throughput, {args.size}x{args.size}, device {device}, "
          f"{args.threads} thread(s), torch {torch.__version__}; images/s (best of "
          f"{args.repeats})")
    names = [c.replace("haze", "H").replace("rain", "R").replace("noise", "N").replace("_", "+")
             for c in COMBOS]
    print(f"{'batch':>5} | " + " | ".join(f"{n:>7}" for n in names) + " |     min")
    for b in args.batches:
        rates = [bench(b, args.size, c, device, args.repeats) for c in COMBOS]
        print(f"{b:>5} | " + " | ".join(f"{v:7.0f}" for v in rates) + f" | {min(rates):7.0f}")


if __name__ == "__main__":
    main()
