"""Training throughput: iterations/s of the real training step (data synthesis on the device +
forward + L1/FFT loss + backward + Adam), after warm-up, and of the data step alone.

    python benchmarks/train_throughput.py                       # CPU default: tiny, 64^2, batch 4
    python benchmarks/train_throughput.py --device cuda --preset tiny --patch 128 256 \
        --batch 32 64 --amp none bf16 --iters 50 [--compile]

Lists for --patch/--batch/--amp give one table row per combination. Clean images come from
--data DIR (a folder of images) or are synthesised into a temporary folder.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._timing import sync  # noqa: E402
import interir  # noqa: E402
from interir.data.datasets import CleanImageDataset  # noqa: E402
from interir.data.degrade import COMBOS  # noqa: E402
from interir.imageio import save_image  # noqa: E402
from interir.losses import RestorationLoss  # noqa: E402
from interir.train import make_batch  # noqa: E402


def _synthetic_clean(folder: Path, n: int = 8, size: int = 384) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        f = rng.uniform(1, 8, 3)
        img = np.stack([np.sin(xx * f[0] + i), np.cos(yy * f[1]), np.sin((xx + yy) * f[2])], -1)
        img = 0.5 + 0.4 * img + 0.03 * rng.standard_normal(img.shape)
        save_image(np.clip(img, 0, 1).astype(np.float32), folder / f"clean{i}.png")


def bench(dataset, preset: str, patch: int, batch: int, amp: str, compile_: bool,
          device: torch.device, iters: int, warmup: int) -> dict:
    dataset.patch_size = patch  # images were padded for the largest patch
    torch.manual_seed(0)
    model = interir.build_model(preset).to(device).train()
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999))
    loss_fn = RestorationLoss(1.0, 0.1)
    ctx = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp == "bf16"
           else nullcontext())
    combos = list(COMBOS)

    def data(i):
        return make_batch(dataset, batch, combos, 0, i, 0, device)

    def step(i):
        x, y = data(i)
        with ctx:
            out = step_model(x)
        loss = loss_fn(out, y)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup):
        step(i)
    sync(device)
    t = time.perf_counter()
    for i in range(iters):
        step(warmup + i)
    sync(device)
    step_s = (time.perf_counter() - t) / iters
    t = time.perf_counter()
    for i in range(iters):
        data(i)
    sync(device)
    data_s = (time.perf_counter() - t) / iters
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"it_s": 1 / step_s, "img_s": batch / step_s, "ms": step_s * 1e3,
            "data_ms": data_s * 1e3, "mem": mem}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=["tiny", "paper"], default="tiny")
    ap.add_argument("--patch", type=int, nargs="+", default=None)
    ap.add_argument("--batch", type=int, nargs="+", default=None)
    ap.add_argument("--amp", choices=["none", "bf16"], nargs="+", default=["none"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations per row")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--data", type=Path, default=None, help="folder of clean images")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(dev)
    cpu = device.type == "cpu"
    patches = a.patch or ([64] if cpu else [256])
    batches = a.batch or ([4] if cpu else [32])
    iters = a.iters or (5 if cpu else 30)
    warmup = a.warmup if a.warmup is not None else (2 if cpu else (15 if a.compile else 5))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    with tempfile.TemporaryDirectory() as tmp:
        root = a.data
        if root is None:
            root = Path(tmp)
            _synthetic_clean(root)
        dataset = CleanImageDataset(root, patch_size=max(patches), augment=True)
        print(f"# train throughput on {name}; torch {torch.__version__}; preset {a.preset}; "
              f"compile {a.compile}; {iters} timed iterations after {warmup} warm-up")
        print("| preset | patch | batch | amp  | it/s   | img/s   | ms/it   | data ms/it | peak GiB |")
        print("|--------|-------|-------|------|--------|---------|---------|------------|----------|")
        for patch, batch, amp in itertools.product(patches, batches, a.amp):
            try:
                r = bench(dataset, a.preset, patch, batch, amp, a.compile, device, iters, warmup)
            except torch.OutOfMemoryError:
                print(f"| {a.preset} | {patch} | {batch} | {amp} | out of memory |")
                torch.cuda.empty_cache()
                continue
            print(f"| {a.preset:6s} | {patch:5d} | {batch:5d} | {amp:4s} | {r['it_s']:6.2f} | "
                  f"{r['img_s']:7.1f} | {r['ms']:7.1f} | {r['data_ms']:10.1f} | {r['mem']:8.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
