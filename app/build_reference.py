"""Build the degradation-embedding reference set: ``app/assets/reference_embedding.npz``.

Six small permissively licensed photos that ship with scikit-image (astronaut, coffee, chelsea,
rocket: public domain / CC0) and scikit-learn (china, flower: CC BY 2.0) are cropped, degraded
with each of the seven haze/rain/noise combinations at several seeds (active components drawn
uniformly from 20–100 % of their range, so every label is visible), traced by the served model,
and their embeddings mapped to 2-D with scikit-learn's t-SNE. Deterministic for given weights.

    python -m app.build_reference [--weights DIR] [--out FILE] [--size 128] [--seeds 3]

The app rebuilds the file at start-up when it is missing or was built with other weights.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interir.data.degrade import COMBOS, RANGES, combo_levels, degrade_image
from viz.embedding import Reference, nn_distance_p95, save_reference
from viz.images import thumbnail

SOURCES = {
    "astronaut": "scikit-image astronaut (NASA, public domain)",
    "coffee": "scikit-image coffee (Rachel Michetti, CC0)",
    "chelsea": "scikit-image chelsea (Stefan van der Walt, CC0)",
    "rocket": "scikit-image rocket (SpaceX, public domain)",
    "china": "scikit-learn china.jpg (danielbuechele, CC BY 2.0)",
    "flower": "scikit-learn flower.jpg (vultilion, CC BY 2.0)",
}


def source_images() -> dict[str, np.ndarray]:
    """The clean source photos as uint8 (H, W, 3)."""
    import skimage.data as skd
    from sklearn.datasets import load_sample_image

    return {"astronaut": skd.astronaut(), "coffee": skd.coffee(), "chelsea": skd.chelsea(),
            "rocket": skd.rocket(), "china": load_sample_image("china.jpg"),
            "flower": load_sample_image("flower.jpg")}


def _crop_resize(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (50–90 % of the short side) resized to size×size, float32 [0,1]."""
    from PIL import Image

    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 0.9))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(np.ascontiguousarray(img[y:y + side, x:x + side]))
    return np.asarray(crop.resize((size, size), Image.Resampling.BOX)).astype(np.float32) / 255.0


def _tsne(x: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, max(2.0, (x.shape[0] - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed, max_iter=1000)
    # One thread: after torch has run, OpenMP thread pools of torch and scikit-learn fight over
    # the two cores and t-SNE becomes ~10x slower (measured 18 s vs 1.6 s for 42 points).
    with threadpool_limits(limits=1):
        return tsne.fit_transform(x).astype(np.float32)


def build_reference(holder: Any, out: str | Path | None = None, size: int = 128, seeds: int = 3,
                    quick: bool = False, thumb: int = 48, verbose: bool = True) -> Reference:
    """Trace the reference images with ``holder`` (an app ModelHolder or an InterIR model)."""
    from .runtime import ModelHolder

    if not isinstance(holder, ModelHolder):
        holder = ModelHolder(holder, "model", None)
    if quick:  # for tests: a smaller, faster set
        size, seeds = 64, 1
    t0 = time.perf_counter()
    rng = np.random.default_rng(20251110)
    embs, labels, levels, sources, thumbs = [], [], [], [], []
    with torch.random.fork_rng(devices=[]):
        for name, img in source_images().items():
            for s in range(seeds):
                for ci, combo in enumerate(COMBOS):
                    clean = _crop_resize(img, size, rng)
                    active = combo_levels(combo)
                    lv = [RANGES[c][0] + rng.uniform(0.2, 1.0) * (RANGES[c][1] - RANGES[c][0]) if on else 0.0
                          for c, on in zip(("haze", "rain", "noise"), active)]
                    degraded = degrade_image(clean, *lv, seed=int(rng.integers(0, 2**31 - 1)))
                    tr = holder.trace(degraded)
                    embs.append(tr.embedding.float().numpy().reshape(-1))
                    labels.append(ci)
                    levels.append(lv)
                    sources.append(SOURCES[name].split(" (")[0])
                    thumbs.append(thumbnail((np.clip(degraded, 0, 1) * 255 + 0.5).astype(np.uint8), thumb))
    emb = np.stack(embs).astype(np.float32)
    mean = emb.mean(axis=0)
    std = emb.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0).astype(np.float32)
    coords = _tsne((emb - mean) / std)
    ref = Reference(embeddings=emb, coords=coords, labels=np.array(labels), combos=list(COMBOS),
                    levels=np.array(levels, np.float32), sources=sources, thumbs=np.stack(thumbs),
                    weights_hash=holder.hash, mean=mean, std=std,
                    nn_dist_p95=nn_distance_p95(emb, mean, std),
                    meta={"size": size, "seeds": seeds, "model_config": holder.config,
                          "method": "t-SNE (scikit-learn, perplexity min(30, (N-1)/3), init pca, "
                                    "random_state 0) of standardised embeddings"})
    if out is not None:
        save_reference(ref, out)
    if verbose:
        print(f"reference set: {len(ref)} images ({len(SOURCES)} photos × {len(COMBOS)} combos × "
              f"{seeds} seeds, {size}×{size}) in {time.perf_counter() - t0:.1f} s"
              + (f" -> {out}" if out else ""), file=sys.stderr)
    return ref


def main(argv: list[str] | None = None) -> int:
    from .runtime import SHIPPED_REFERENCE, ModelHolder

    p = argparse.ArgumentParser(prog="python -m app.build_reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", help="weights folder (default: $INTERIR_WEIGHTS or the shipped checkpoint)")
    p.add_argument("--out", default=str(SHIPPED_REFERENCE), help="output .npz (default: %(default)s)")
    p.add_argument("--size", type=int, default=128, help="crop size in pixels (default 128)")
    p.add_argument("--seeds", type=int, default=3, help="crops/levels per photo and combo (default 3)")
    args = p.parse_args(argv)
    from interir.errors import InterIRError

    try:
        holder = ModelHolder.from_env(args.weights)
        build_reference(holder, out=args.out, size=args.size, seeds=args.seeds)
    except InterIRError as exc:
        print(f"build_reference: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
