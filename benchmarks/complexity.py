"""Parameters and multiply-adds of both presets at 256², beside the paper's Table 8.

Multiply-adds are counted with torch.utils.flop_counter (convolutions and matrix products;
element-wise work is not counted, as is usual for the "FLOPs" papers report, which are MACs).

    python benchmarks/complexity.py [--size 256]
"""
from __future__ import annotations

import argparse
from collections import Counter

import torch
from torch.utils.flop_counter import FlopCounterMode

import interir

PAPER_TABLE8 = {"params_M": 27.0, "flops_G": 22.0}


def count(preset: str, size: int, **overrides) -> dict:
    model = interir.build_model(preset, **overrides).eval()
    params = sum(p.numel() for p in model.parameters())
    by_part: Counter = Counter()
    for name, p in model.named_parameters():
        part = ".".join(name.split(".")[:3]) if name.startswith("blocks.0.") else name.split(".")[0]
        by_part[part] += p.numel()
    x = torch.rand(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    per_op = {str(k).split(".")[-1]: v for k, v in counter.get_flop_counts()["Global"].items()}
    macs = counter.get_total_flops() / 2
    return {"params": params, "macs": macs, "per_op_macs": {k: v / 2 for k, v in per_op.items()},
            "params_by_part": dict(by_part)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    print(f"input 1x3x{args.size}x{args.size}; paper Table 8: {PAPER_TABLE8['params_M']} M params, "
          f"{PAPER_TABLE8['flops_G']} G FLOPs")
    print(f"{'model':<22} {'params (M)':>10} {'MACs (G)':>9}   MACs by op (G)")
    for label, preset, kw in [("paper", "paper", {}), ("paper, standard conv", "paper", {"conv_type": "standard"}),
                              ("tiny", "tiny", {}), ("tiny, standard conv", "tiny", {"conv_type": "standard"})]:
        r = count(preset, args.size, **kw)
        ops = ", ".join(f"{k} {v / 1e9:.2f}" for k, v in sorted(r["per_op_macs"].items()))
        print(f"{label:<22} {r['params'] / 1e6:>10.3f} {r['macs'] / 1e9:>9.2f}   {ops}")
    r = count("paper", args.size)
    print("paper preset parameters by part (M): " + ", ".join(
        f"{k} {v / 1e6:.3f}" for k, v in r["params_by_part"].items())
        + " (blocks = all 16 IPBlocks minus blocks.0, which is broken down)")


if __name__ == "__main__":
    main()
