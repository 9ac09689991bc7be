"""ExplainConv2d against a fixed depthwise nn.Conv2d of the same shape (and a per-sample loop),
in inference and as a training step (forward + backward). Prints a table with the ratios.
Target (issue 9): explainable ≤ 1.3× fixed on the CPU at batch 1 and batch 8.

    python benchmarks/explain_conv.py [--device cpu|cuda] [--channels 96] [--compile]
        [--cases "1x128,8x128,8x24"]       # batch x feature side; 128 = a 512² image, 24 = a 96² patch

96 channels is the depthwise conv of an EPBlock at C = 48 (dw_expand 2).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))   # this tree's interir, not an installed one
from _timing import timeit_interleaved  # noqa: E402

from interir import ExplainConv2d  # noqa: E402


def loop_forward(conv: ExplainConv2d, x: torch.Tensor) -> torch.Tensor:
    """Eq. 20 one sample at a time (what the batched call replaces)."""
    outs = []
    for b in range(x.shape[0]):
        xb = x[b:b + 1]
        w = conv.modulated_weight(conv.attention(conv.mask(xb)))
        outs.append(F.conv2d(xb, w, conv.bias, conv.stride, conv.padding, groups=conv.groups))
    return torch.cat(outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--channels", type=int, default=96)
    ap.add_argument("--cases", default="1x128,8x128,8x24", help="comma list of BATCHxSIDE")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="also torch.compile the explainable conv")
    args = ap.parse_args()
    dev, c = args.device, args.channels
    torch.manual_seed(0)
    conv = ExplainConv2d(c, c, 3, padding=1, groups=c).to(dev)
    fixed = torch.nn.Conv2d(c, c, 3, padding=1, groups=c).to(dev)
    with torch.no_grad():
        conv.mask.tau.normal_(0, 0.3)
    compiled = torch.compile(conv) if args.compile else None
    where = torch.cuda.get_device_name() if dev.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"device={dev} ({where}), {c} channels, 3×3 depthwise, torch {torch.__version__}")
    print(f"{'case':<14} {'fixed ms':>9} {'explain ms':>11} {'loop ms':>9} {'compiled ms':>12} {'explain/fixed':>14}")
    for case in args.cases.split(","):
        b, s = (int(v) for v in case.split("x"))
        x = torch.randn(b, c, s, s, device=dev)
        xg = x.clone().requires_grad_()
        for mode in ("infer", "train"):
            if mode == "infer":
                def run(m):
                    def f():
                        with torch.inference_mode():
                            m(x)
                    return f
            else:
                def run(m):
                    def f():
                        m(xg).square().mean().backward()
                    return f
            fns = [run(fixed), run(conv), run(lambda t: loop_forward(conv, t))]
            if compiled is not None:
                fns.append(run(compiled))
            times = timeit_interleaved(fns, dev, warmup=2, reps=args.reps)
            tf, te, tl = times[:3]
            tc = times[3] if compiled is not None else float("nan")
            print(f"{case + ' ' + mode:<14} {tf * 1e3:>9.3f} {te * 1e3:>11.3f} {tl * 1e3:>9.3f} {tc * 1e3:>12.3f} "
                  f"{te / tf:>14.2f}")


if __name__ == "__main__":
    main()
