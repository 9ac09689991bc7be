"""Time "why this pixel?" (:func:`interir.attribution.explain_region`) on a 512² image with a
model of n = 6 IPBlocks, C = 48, at 1 and 2 threads. Target: the whole answer ≤ 3 s on 2 cores.

"answer" is what the explorer pays per click (the trace of the image already exists):
integrated gradients + per-iteration change + channel ranking. "answer+trace" records the
trace first. The IG rows time the attribution alone at other (max_side, steps) settings,
with the completeness gap each gives on this image and region.

    python benchmarks/why_pixel.py [--size 512] [--threads 1,2] [--reps 3] [--weights DIR]
                                   [--settings 96:4,128:4,128:6,160:4,192:4]

Measured (2 vCPUs shared with two training runs, so noisy): 1 thread, answer 1.40 s median
(IG 1.27 s at 128 px and 4 steps, 0.72 s at 96, 2.08 s at 160), answer+trace 2.72 s; 2 threads
were slower than 1 while the other cores' load oversubscribed them (answer min 2.49 s).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import interir  # noqa: E402
from interir.attribution import Region, attribution_map, explain_region  # noqa: E402


def image(size: int) -> torch.Tensor:
    """A shipped example photo resized to size² (random pixels if the examples are missing)."""
    path = ROOT / "examples" / "chelsea_rain.png"
    if not path.is_file():
        return torch.rand(1, 3, size, size)
    from PIL import Image

    im = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255.0


def median_time(fn, reps: int) -> tuple[str, object]:
    """"median s (min s)" over ``reps`` calls (the min shows the cost on a less busy machine)."""
    out, times = None, []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return f"{statistics.median(times):.2f} s (min {min(times):.2f})", out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=6, help="IPBlocks of the random tiny model (default 6)")
    ap.add_argument("--weights", default=None, help="time this checkpoint instead")
    ap.add_argument("--settings", default="96:4,128:4,128:6,160:4,192:4", help="max_side:steps pairs for IG rows")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = (interir.load_pretrained(args.weights) if args.weights else
             interir.build_model("tiny", n_blocks=args.blocks)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = image(args.size)
    region = Region.point(0.6 * args.size, 0.4 * args.size, radius=8)
    c = model.config
    print(f"CPU, torch {torch.__version__}, {args.size}² image, model n = {c['n_blocks']}, C = {c['channels']}, "
          f"{c['conv_type']}; region: {region.describe()}; median (min) of {args.reps}")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        tr = interir.trace(model, x)
        explain_region(model, x, region, trace=tr)  # warm-up
        t_ans, res = median_time(lambda: explain_region(model, x, region, trace=tr), args.reps)
        t_full, _ = median_time(lambda: explain_region(model, x, region), max(1, args.reps - 1))
        parts = ", ".join(f"{k} {v:.2f}" for k, v in res.seconds.items())
        print(f"[{threads} thread(s)] answer (defaults: max_side 128, 4 steps) {t_ans} [last: {parts}]; "
              f"answer+trace {t_full}")
        for setting in args.settings.split(","):
            side, steps = (int(v) for v in setting.split(":"))
            t_ig, a = median_time(lambda: attribution_map(model, x, region, max_side=side, steps=steps), args.reps)
            print(f"    IG max_side {side:>3}, {steps} steps: {t_ig}, completeness gap "
                  f"{100 * a.completeness_gap:.2f} %, mass inside region {100 * a.inside_share:.1f} %")


if __name__ == "__main__":
    main()
