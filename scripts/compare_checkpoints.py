"""Paired comparison of candidate checkpoints with a reference on the same test pairs.

A milestone is shipped when it beats the shipped checkpoint's average PSNR by a margin without a
worse brightness error (docs/model_sweep.md, "Stage 17"). Both averages move with the images
drawn, so a difference of a tenth of a dB or of 0.1/255 in |bias| says little on its own. This
measures every image with both models and reports, for the PSNR and the absolute brightness bias,
the mean paired difference (candidate − reference) with a 95 % bootstrap interval that resamples
the source photos (each photo appears once per combination, so its pairs move together):

    python scripts/compare_checkpoints.py --data data_local/testset \
        --reference checkpoints/interir-n6 RUNS/interir-n6-long10b/ema-00000500

Averages are over all images, which equals ``interir eval``'s unweighted mean over combinations
when every combination has the same number of pairs (the test set: 40 each).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import interir  # noqa: E402
from interir import metrics  # noqa: E402
from interir.data.datasets import discover_eval_sets, manifest_sources  # noqa: E402
from interir.errors import InterIRError  # noqa: E402
from interir.eval import brightness_bias  # noqa: E402


def per_image(weights: str, data: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """{(combo, file): (PSNR dB, |bias| /255)} of one checkpoint on every pair of ``data``."""
    model = interir.load_pretrained(weights).eval()
    out = {}
    for combo, ds in discover_eval_sets(data).items():
        for i in range(len(ds)):
            inp, target, name = ds[i]
            with torch.inference_mode():
                y = model(inp.unsqueeze(0).float()).clamp(0, 1)[0]
            pred = y.permute(1, 2, 0).numpy()
            tgt = target.permute(1, 2, 0).numpy()
            out[(combo, name)] = (metrics.psnr(pred, tgt), abs(brightness_bias(pred, tgt)))
    return out


def paired(diff: np.ndarray, groups: np.ndarray, n_boot: int = 2000, seed: int = 0
           ) -> tuple[float, float, float, float]:
    """Mean of ``diff``, its 95 % interval from a bootstrap over ``groups`` (photos), and the
    share of resamples with a positive mean."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    idx = [np.flatnonzero(groups == g) for g in uniq]
    means = np.empty(n_boot)
    for b in range(n_boot):
        pick = np.concatenate([idx[j] for j in rng.integers(0, len(uniq), len(uniq))])
        means[b] = diff[pick].mean()
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi), float((means > 0).mean())


def main() -> None:
    try:
        compare()
    except InterIRError as exc:  # bad paths, weights or data: one line, no traceback
        sys.exit(f"compare_checkpoints: {exc}")


def compare() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="DIR/<combo>/input + target, manifest.csv")
    ap.add_argument("--reference", required=True, help="the checkpoint to compare against")
    ap.add_argument("candidates", nargs="+", help="weights folders")
    args = ap.parse_args()
    src = manifest_sources(args.data)
    ref = per_image(args.reference, args.data)
    keys = sorted(ref)
    groups = np.array([src.get(k, k[1]) for k in keys])  # a pair the manifest lacks: its own photo
    r = np.array([ref[k] for k in keys])
    print(f"reference {args.reference}: PSNR {r[:, 0].mean():.3f} dB, |bias| {r[:, 1].mean():.2f}/255, "
          f"{len(keys)} pairs over {len(np.unique(groups))} photos")
    print("| candidate | PSNR | ΔPSNR [95 %] | P(Δ > 0) | \\|bias\\| | Δ\\|bias\\| [95 %] | P(Δ > 0) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for cand in args.candidates:
        c = per_image(cand, args.data)
        if sorted(c) != keys:
            sys.exit(f"{cand}: measured on other pairs than the reference")
        c = np.array([c[k] for k in keys])
        dp = paired(c[:, 0] - r[:, 0], groups)
        db = paired(c[:, 1] - r[:, 1], groups)
        print(f"| {cand} | {c[:, 0].mean():.3f} | {dp[0]:+.3f} [{dp[1]:+.3f}, {dp[2]:+.3f}] | {dp[3]:.2f} "
              f"| {c[:, 1].mean():.2f} | {db[0]:+.2f} [{db[1]:+.2f}, {db[2]:+.2f}] | {db[3]:.2f} |")


if __name__ == "__main__":
    main()
