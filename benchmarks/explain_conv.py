"""ExplainConv2d: batched (one grouped conv) vs a per-sample loop vs a fixed nn.Conv2d of the
same shape. Prints a table. Targets (issue 2): batched ≤ 1.5× fixed; ≥ 10× faster than the loop
at batch 32.

    python benchmarks/explain_conv.py [--device cpu|cuda] [--channels 96] [--size 64] [--compile]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timeit  # noqa: E402

from interir import ExplainConv2d  # noqa: E402


def loop_forward(conv: ExplainConv2d, x: torch.Tensor) -> torch.Tensor:
    """Eq. 20 one sample at a time (what the batched call replaces)."""
    outs = []
    for b in range(x.shape[0]):
        xb = x[b:b + 1]
        attn = conv.attention(conv.mask(xb))
        w = conv.modulated_weight(attn)
        outs.append(F.conv2d(xb, w, conv.bias, conv.stride, conv.padding, groups=conv.groups))
    return torch.cat(outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--channels", type=int, default=96, help="96 = the depthwise conv of the paper preset's EPBlock")
    ap.add_argument("--size", type=int, default=64, help="feature map side (64 = a 256² image after 4× unshuffle)")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--dense", action="store_true", help="also a dense 3×3 conv (groups=1)")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the batched conv")
    args = ap.parse_args()
    dev = args.device
    c, s = args.channels, args.size
    rows = []
    kinds = [("depthwise", c)] + ([("dense", 1)] if args.dense else [])
    for kind, groups in kinds:
        conv = ExplainConv2d(c, c, 3, padding=1, groups=groups).to(dev).eval()
        fixed = torch.nn.Conv2d(c, c, 3, padding=1, groups=groups).to(dev).eval()
        compiled = torch.compile(conv) if args.compile else None
        for b in [int(v) for v in args.batches.split(",")]:
            x = torch.randn(b, c, s, s, device=dev)
            with torch.inference_mode():
                reps = 10 if dev == "cpu" else 50
                t_fixed = timeit(lambda: fixed(x), dev, reps=reps)
                t_batched = timeit(lambda: conv(x), dev, reps=reps)
                t_loop = timeit(lambda: loop_forward(conv, x), dev, reps=max(3, reps // 3))
                t_comp = timeit(lambda: compiled(x), dev, reps=reps) if compiled else float("nan")
            rows.append((kind, b, t_fixed, t_batched, t_comp, t_loop))
    print(f"device={dev} ({torch.cuda.get_device_name() if dev.startswith('cuda') else torch.get_num_threads()} "
          f"{'' if dev.startswith('cuda') else 'threads'}), channels={c}, {s}x{s}, 3x3, torch {torch.__version__}")
    print(f"{'conv':<10} {'batch':>5} {'fixed ms':>9} {'batched ms':>11} {'compiled ms':>12} {'loop ms':>9} "
          f"{'batched/fixed':>14} {'loop/batched':>13}")
    for kind, b, tf, tb, tc, tl in rows:
        print(f"{kind:<10} {b:>5} {tf * 1e3:>9.3f} {tb * 1e3:>11.3f} {tc * 1e3:>12.3f} {tl * 1e3:>9.3f} "
              f"{tb / tf:>14.2f} {tl / tb:>13.2f}")


if __name__ == "__main__":
    main()
