"""Tiled inference: time and peak memory of a 12-megapixel photo, and how close a tiled
restoration is to the untiled one.

    python benchmarks/tiling.py [--weights DIR] [--tile 512] [--overlap 64] [--size 4000x3000]

Each measurement runs in its own process (peak RSS = ``ru_maxrss`` of that process, so the
numbers do not include one another). The photo is a scikit-image sample (astronaut, public
domain) resized to the size asked for and degraded with ``interir degrade``'s haze + rain +
noise, so the model sees what it was trained on. Targets (issue 9, shipped model, 2 cores):
12 MP tiled ≤ 90 s and ≤ 2 GB; tiled vs untiled at 1024² ≥ 40 dB PSNR.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def photo(width: int, height: int, clean_too: bool = False):
    """A degraded photo-like (1, 3, H, W) tensor of the requested size (and its clean original)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from skimage import data

    from interir.data.degrade import degrade

    clean = torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1)[None]
    clean = F.interpolate(clean, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    degraded = degrade(clean, haze=60.0, rain=100.0, noise=15.0,
                       generator=torch.Generator().manual_seed(0)).clamp(0, 1)
    return (clean, degraded) if clean_too else degraded


def child(args: argparse.Namespace) -> None:
    """One measurement in this process; prints a JSON line."""
    import torch

    import interir
    from interir.weights import default_checkpoint

    model = interir.load_pretrained(args.weights or default_checkpoint()).eval()
    w, h = (int(v) for v in args.size.split("x"))
    x = photo(w, h)
    t0 = time.perf_counter()
    if args.mode == "tiled":
        y = interir.restore_tiled(model, x, args.tile, args.overlap)
    else:
        with torch.inference_mode():
            y = model(x)
    seconds = time.perf_counter() - t0
    result = {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if args.save:
        from safetensors.torch import save_file
        save_file({"y": y.contiguous()}, args.save)
    print("RESULT " + json.dumps(result), flush=True)


def run(mode: str, size: str, args: argparse.Namespace, save: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--size", size, "--tile", str(args.tile),
           "--overlap", str(args.overlap)] + (["--weights", args.weights] if args.weights else [])
    cmd += ["--save", save] if save else []
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        sys.exit(f"tiling benchmark: {mode} {size} failed:\n{proc.stderr[-2000:]}")
    return json.loads(line[-1][7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--compare-size", default="1024x1024")
    ap.add_argument("--compare-only", action="store_true", help="skip the 12 MP run")
    ap.add_argument("--child", choices=["tiled", "whole"], help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.mode = args.child
        child(args)
        return
    import tempfile

    import torch
    from safetensors.torch import load_file
    if not args.compare_only:
        big = run("tiled", args.size, args)
        print(f"{args.size} tiled ({args.tile}/{args.overlap}): {big['seconds']:.1f} s, "
              f"peak RSS {big['peak_rss_mb']:.0f} MB   (torch threads: {torch.get_num_threads()})")
    with tempfile.TemporaryDirectory() as tmp:
        a, b = f"{tmp}/tiled.safetensors", f"{tmp}/whole.safetensors"
        t = run("tiled", args.compare_size, args, a)
        u = run("whole", args.compare_size, args, b)
        ya, yb = load_file(a)["y"], load_file(b)["y"]
    def psnr(a, b) -> float:
        mse = float((a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean())
        return 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-20))).item()

    w, h = (int(v) for v in args.compare_size.split("x"))
    clean, degraded = photo(w, h, clean_too=True)
    print(f"{args.compare_size}: tiled {t['seconds']:.2f} s ({t['peak_rss_mb']:.0f} MB), whole "
          f"{u['seconds']:.2f} s ({u['peak_rss_mb']:.0f} MB); tiled vs whole PSNR {psnr(ya, yb):.2f} dB")
    print(f"  against the clean photo: degraded {psnr(degraded, clean):.2f} dB, whole "
          f"{psnr(yb, clean):.2f} dB, tiled {psnr(ya, clean):.2f} dB")


if __name__ == "__main__":
    main()
