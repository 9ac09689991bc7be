"""Can the veil estimate (``network.veil: pooled``) predict a trained model's brightness error?

Fits :class:`interir.model.veil.VeilEstimate` alone on top of frozen weights (L1 on the output,
Adam with a cosine schedule, synthetic training pairs as ``interir train`` draws them, the test
and validation photos excluded), then prints validation PSNR and |brightness bias| (/255) per
combination without and with V. ``docs/model_sweep.md`` ("A veil estimate beside the solver")
reports its run on stage 7:

    OMP_NUM_THREADS=1 python scripts/veil_frozen_fit.py checkpoints/interir-n6 \\
        --steps 600 --size 256 --batch 4 --lr 1e-3
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from interir.data.datasets import CleanImageDataset, discover_eval_sets
from interir.data.degrade import COMBOS
from interir.model.veil import VeilEstimate
from interir.train import make_batch, read_exclude_list
from interir.weights import load_pretrained


def evaluate(model: torch.nn.Module, veil: VeilEstimate | None, val: str) -> dict[str, tuple[float, float]]:
    """Per combination: mean PSNR (8-bit) and mean |mean(output) − mean(target)| (/255)."""
    res = {}
    for combo, data in discover_eval_sets(val).items():
        ps, bias = [], []
        for i in range(len(data)):
            x, y, _ = data[i]
            with torch.no_grad():
                out = model(x[None])
                if veil is not None:
                    out = out + veil(model.pad(x[None]))[..., :x.shape[1], :x.shape[2]]
            out = (out.clamp(0, 1) * 255).round()[0] / 255
            ps.append(float(10 * torch.log10(1 / ((out - y) ** 2).mean())))
            bias.append(float((out.mean() - y.mean()) * 255))
        res[combo] = (float(np.mean(ps)), float(np.mean(np.abs(bias))))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("--train", default="data_local/train_clean")
    ap.add_argument("--val", default="data_local/val")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=99)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_pretrained(args.weights).eval()
    model.requires_grad_(False)
    veil = VeilEstimate()
    opt = torch.optim.Adam(veil.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    exclude = read_exclude_list("configs/splits/bsd400_test.txt") + read_exclude_list("configs/splits/bsd400_val.txt")
    data = CleanImageDataset(args.train, patch_size=args.size, augment=True, exclude=exclude)
    for it in range(args.steps):
        x, y = make_batch(data, args.batch, COMBOS, args.seed, it, 0, torch.device("cpu"))
        with torch.no_grad():
            base = model(x)
        loss = (base + veil(model.pad(x))[..., :x.shape[2], :x.shape[3]] - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 100 == 0:
            print(f"step {it}: L1 {loss.item():.5f}", flush=True)
    for name, v in (("without V", None), ("with V", veil)):
        res = evaluate(model, v, args.val)
        cells = " | ".join(f"{c} {p:.2f} ({b:.1f})" for c, (p, b) in res.items())
        print(f"{name}: PSNR {np.mean([p for p, _ in res.values()]):.3f}, "
              f"|bias| {np.mean([b for _, b in res.values()]):.2f} :: {cells}")


if __name__ == "__main__":
    main()
