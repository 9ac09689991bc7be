"""How much of a checkpoint's error is brightness: per combination, the PSNR, the signed and
absolute per-image brightness bias (in /255, as ``interir eval``), and the PSNR the same output
would have with each channel's mean set to the target's (an oracle: the ceiling of what fixing
brightness alone could give). Also the contrast: the slope a of the per-channel least-squares
fit output ≈ a·target + b (below 1: the output is flatter than the target, as residual haze
leaves it) and the PSNR with that fit inverted per channel (the oracle of a global affine fix).

    python scripts/brightness_check.py --data data_local/val checkpoints/interir-n6 RUN/last

Prints one markdown table per weights folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import interir  # noqa: E402
from interir.data.datasets import discover_eval_sets  # noqa: E402
from interir.eval import brightness_bias, combo_label  # noqa: E402
from interir.errors import InterIRError  # noqa: E402
from interir.metrics import psnr  # noqa: E402


def affine_fit(pred: np.ndarray, tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the least-squares a, b of pred ≈ a·tgt + b ((3,) each; a = 1 on a flat target)."""
    p, t = pred.reshape(-1, pred.shape[-1]), tgt.reshape(-1, tgt.shape[-1])
    tc, pc = t - t.mean(0), p - p.mean(0)
    var = (tc * tc).mean(0)
    a = np.where(var > 1e-12, (tc * pc).mean(0) / np.maximum(var, 1e-12), 1.0)
    return a, p.mean(0) - a * t.mean(0)


def check(weights: str, data: str, max_images: int | None = None) -> dict[str, dict[str, float]]:
    """{combo: {psnr, bias, abs_bias, oracle_psnr, slope, affine_psnr}} averaged over the pairs
    of ``data``."""
    model = interir.load_pretrained(weights).eval()
    out: dict[str, dict[str, float]] = {}
    for combo, ds in discover_eval_sets(data).items():
        rows = []
        for i in range(len(ds) if max_images is None else min(len(ds), max_images)):
            inp, target = ds[i][:2]
            with torch.inference_mode():
                y = model(inp.unsqueeze(0).float()).clamp(0, 1)[0]
            pred = y.permute(1, 2, 0).numpy().astype(np.float64)
            tgt = target.permute(1, 2, 0).numpy().astype(np.float64)
            fixed = np.clip(pred - (pred.mean((0, 1)) - tgt.mean((0, 1))), 0, 1)
            a, c = affine_fit(pred, tgt)
            affine = np.clip((pred - c) / np.where(np.abs(a) > 1e-3, a, 1.0), 0, 1)
            b = brightness_bias(pred, tgt)
            rows.append((psnr(pred, tgt), b, abs(b), psnr(fixed, tgt),  # 8-bit, as interir eval
                         float(a.mean()), psnr(affine, tgt)))
        m = np.mean(rows, 0)
        out[combo] = dict(psnr=m[0], bias=m[1], abs_bias=m[2], oracle_psnr=m[3], slope=m[4],
                          affine_psnr=m[5])
    keys = list(out.values())[0].keys()
    out["average"] = {k: float(np.mean([v[k] for v in out.values()])) for k in keys}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="+", help="weights folders")
    ap.add_argument("--data", required=True, help="DIR/<combo>/input + target")
    ap.add_argument("--max-images", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        for w in args.weights:
            res = check(w, args.data, args.max_images)
            print(f"\n{w}\n\n| combo | PSNR | bias /255 | \\|bias\\| /255 | PSNR, means fixed "
                  "| slope a | PSNR, affine fixed |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for combo, r in res.items():
                name = combo if combo == "average" else combo_label(combo)
                print(f"| {name} | {r['psnr']:.2f} | {r['bias']:+.2f} | {r['abs_bias']:.2f} | "
                      f"{r['oracle_psnr']:.2f} | {r['slope']:.2f} | {r['affine_psnr']:.2f} |")
    except InterIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
