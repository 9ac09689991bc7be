"""The degradation-embedding reference set: build, save, load, check against the weights, and
place a new image in it. Used by the explorer (start-up check, rebuild) and ``interir report``;
rebuilt by hand with ``interir build-reference``.

Six small permissively licensed photos that ship with scikit-image (astronaut, coffee, chelsea,
rocket: public domain / CC0) and scikit-learn (china, flower: CC BY 2.0) are cropped, degraded
with each of the seven haze/rain/noise combinations at several seeds (active components drawn
uniformly from 20–100 % of their range, so every label is visible), traced by the model, and
their embeddings mapped to 2-D with scikit-learn's t-SNE. Deterministic for given weights.

A new point is **not** refitted into the t-SNE (that would move every point and take seconds):
its 2-D position is the inverse-distance-weighted mean of the 2-D positions of its k nearest
reference embeddings (standardised Euclidean distance in the full embedding space), and the
"diagnosis" is the inverse-distance-weighted vote of the same neighbours, its confidence the
winning share of the weight.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import InterIRError
from .fileio import atomic_savez
from .weights import repo_root

__all__ = ["Reference", "Placement", "load_reference", "save_reference", "place", "weights_hash",
           "nn_distance_p95", "build_reference", "find_reference", "ensure_reference",
           "SHIPPED_REFERENCE", "REFERENCE_VERSION", "cache_dir"]

log = logging.getLogger("interir.reference")

REFERENCE_VERSION = 1
#: The set built for the shipped checkpoint (shipped with the explorer, which serves it).
SHIPPED_REFERENCE = repo_root() / "app" / "assets" / "reference_embedding.npz"

SOURCES = {
    "astronaut": "scikit-image astronaut (NASA, public domain)",
    "coffee": "scikit-image coffee (Rachel Michetti, CC0)",
    "chelsea": "scikit-image chelsea (Stefan van der Walt, CC0)",
    "rocket": "scikit-image rocket (SpaceX, public domain)",
    "china": "scikit-learn china.jpg (danielbuechele, CC BY 2.0)",
    "flower": "scikit-learn flower.jpg (vultilion, CC BY 2.0)",
}


@dataclass
class Reference:
    """Embeddings of degraded reference images, their t-SNE coordinates and labels."""

    embeddings: np.ndarray      # (N, D) float32
    coords: np.ndarray          # (N, 2) float32 t-SNE
    labels: np.ndarray          # (N,) int index into combos
    combos: list[str]
    levels: np.ndarray          # (N, 3) haze, rain, noise
    sources: list[str]          # source image name per point
    thumbs: np.ndarray          # (N, t, t, 3) uint8
    weights_hash: str
    mean: np.ndarray            # (D,) standardisation
    std: np.ndarray             # (D,)
    nn_dist_p95: float          # 95th percentile of reference-to-reference 1-NN distances
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def standardise(self, emb: np.ndarray) -> np.ndarray:
        return (np.asarray(emb, np.float32) - self.mean) / self.std


@dataclass
class Placement:
    """Where one embedding lands in the reference map and what its neighbours say."""

    xy: tuple[float, float]
    combo: str
    confidence: float
    probs: dict[str, float]
    neighbours: list[int]
    distances: list[float]
    nearest_distance: float
    out_of_distribution: bool


# ----------------------------------------------------------------------------- file
def save_reference(ref: Reference, path: str | os.PathLike) -> Path:
    """Write the reference set as one .npz (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(ref.meta, version=REFERENCE_VERSION, combos=list(ref.combos), sources=list(ref.sources),
                weights_hash=ref.weights_hash, nn_dist_p95=float(ref.nn_dist_p95))
    return atomic_savez(path, dict(embeddings=ref.embeddings.astype(np.float32),
                                   coords=ref.coords.astype(np.float32), labels=ref.labels.astype(np.int16),
                                   levels=ref.levels.astype(np.float32), thumbs=ref.thumbs.astype(np.uint8),
                                   mean=ref.mean.astype(np.float32), std=ref.std.astype(np.float32),
                                   meta_json=np.array(json.dumps(meta))))


def load_reference(path: str | os.PathLike) -> Reference:
    """Read a reference set written by :func:`save_reference`; InterIRError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise InterIRError(f"{path}: reference embedding file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta_json"]))
            ref = Reference(
                embeddings=z["embeddings"].astype(np.float32), coords=z["coords"].astype(np.float32),
                labels=z["labels"].astype(np.int64), combos=list(meta["combos"]),
                levels=z["levels"].astype(np.float32), sources=list(meta["sources"]),
                thumbs=z["thumbs"], weights_hash=str(meta["weights_hash"]),
                mean=z["mean"].astype(np.float32), std=z["std"].astype(np.float32),
                nn_dist_p95=float(meta["nn_dist_p95"]), meta=meta)
    except Exception as exc:  # noqa: BLE001 - any damage means "rebuild it"
        raise InterIRError(f"{path}: not a valid reference embedding file ({type(exc).__name__}: {exc})") from None
    if meta.get("version") != REFERENCE_VERSION:
        raise InterIRError(f"{path}: reference file version {meta.get('version')} != {REFERENCE_VERSION}")
    n = ref.embeddings.shape[0]
    if not (ref.coords.shape == (n, 2) and ref.labels.shape == (n,) and len(ref.sources) == n
            and ref.thumbs.shape[0] == n and ref.levels.shape == (n, 3)):
        raise InterIRError(f"{path}: reference arrays have inconsistent lengths")
    return ref


# ----------------------------------------------------------------------------- placement
def place(ref: Reference, embedding: np.ndarray, k: int = 8) -> Placement:
    """Place an embedding in the reference map by inverse-distance-weighted k-NN (see module doc)."""
    emb = np.asarray(embedding, np.float32).reshape(-1)
    if emb.size != ref.embeddings.shape[1]:
        raise InterIRError(f"the embedding has {emb.size} values but the reference set was built "
                           f"with {ref.embeddings.shape[1]} (another model configuration)")
    q = ref.standardise(emb)
    base = ref.standardise(ref.embeddings)
    d = np.sqrt(((base - q) ** 2).sum(axis=1))
    k = int(min(max(k, 1), len(ref)))
    nn = np.argsort(d, kind="stable")[:k]
    w = 1.0 / (d[nn] + 1e-6)
    w = w / w.sum()
    xy = (float((ref.coords[nn, 0] * w).sum()), float((ref.coords[nn, 1] * w).sum()))
    probs = {c: 0.0 for c in ref.combos}
    for j, wj in zip(nn, w):
        probs[ref.combos[int(ref.labels[j])]] += float(wj)
    combo = max(probs, key=lambda c: probs[c])
    return Placement(xy=xy, combo=combo, confidence=float(probs[combo]), probs=probs,
                     neighbours=[int(j) for j in nn], distances=[float(v) for v in d[nn]],
                     nearest_distance=float(d[nn[0]]),
                     out_of_distribution=bool(d[nn[0]] > 1.5 * ref.nn_dist_p95))


def weights_hash(model: Any) -> str:
    """SHA-256 over a model's config and state dict (names, dtypes, shapes, bytes).

    Identifies the weights a reference set was built with (works on any ``nn.Module``).
    """
    h = hashlib.sha256()
    h.update(repr(sorted(getattr(model, "config", {}).items())).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def nn_distance_p95(embeddings: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """95th percentile of each standardised reference point's distance to its nearest other point."""
    x = (embeddings - mean) / std
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    return float(np.percentile(np.sqrt(d2.min(axis=1)), 95))


# ----------------------------------------------------------------------------- build
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


def _thumb(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.asarray(Image.fromarray(u8).resize((size, size), Image.Resampling.LANCZOS))


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


def _embed(model: Any, img: np.ndarray) -> np.ndarray:
    import torch

    from .trace import trace

    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    return trace(model, x).embedding.float().numpy().reshape(-1)


def build_reference(model: Any, out: str | os.PathLike | None = None, size: int = 128, seeds: int = 3,
                    quick: bool = False, thumb: int = 48, verbose: bool = True,
                    embed: Callable[[np.ndarray], np.ndarray] | None = None) -> Reference:
    """Trace the reference images with ``model`` (an InterIR) and map them to 2-D.

    ``embed`` (float32 HWC image -> embedding) replaces the plain trace, e.g. to run under a
    lock; ``quick`` builds a smaller, faster set (for tests).
    """
    import torch

    from .data.degrade import COMBOS, RANGES, combo_levels, degrade_image

    embed = embed or (lambda img: _embed(model, img))
    if quick:
        size, seeds = 64, 1
    t0 = time.perf_counter()
    rng = np.random.default_rng(20251110)
    embs, labels, levels, sources, thumbs = [], [], [], [], []
    with torch.random.fork_rng(devices=[]):
        for name, img in source_images().items():
            for _ in range(seeds):
                for ci, combo in enumerate(COMBOS):
                    clean = _crop_resize(img, size, rng)
                    lv = [RANGES[c][0] + rng.uniform(0.2, 1.0) * (RANGES[c][1] - RANGES[c][0]) if on else 0.0
                          for c, on in zip(("haze", "rain", "noise"), combo_levels(combo))]
                    degraded = degrade_image(clean, *lv, seed=int(rng.integers(0, 2**31 - 1)))
                    embs.append(embed(degraded))
                    labels.append(ci)
                    levels.append(lv)
                    sources.append(SOURCES[name].split(" (")[0])
                    thumbs.append(_thumb(degraded, thumb))
    emb = np.stack(embs).astype(np.float32)
    mean = emb.mean(axis=0)
    std = emb.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0).astype(np.float32)
    config = dict(getattr(model, "config", {}))
    ref = Reference(embeddings=emb, coords=_tsne((emb - mean) / std), labels=np.array(labels),
                    combos=list(COMBOS), levels=np.array(levels, np.float32), sources=sources,
                    thumbs=np.stack(thumbs), weights_hash=weights_hash(model), mean=mean, std=std,
                    nn_dist_p95=nn_distance_p95(emb, mean, std),
                    meta={"size": size, "seeds": seeds, "model_config": config,
                          "method": "t-SNE (scikit-learn, perplexity min(30, (N-1)/3), init pca, "
                                    "random_state 0) of standardised embeddings"})
    if out is not None:
        save_reference(ref, out)
    if verbose:
        print(f"reference set: {len(ref)} images ({len(SOURCES)} photos × {len(COMBOS)} combos × "
              f"{seeds} seeds, {size}×{size}) in {time.perf_counter() - t0:.1f} s"
              + (f" -> {out}" if out else ""), file=sys.stderr)
    return ref


# ----------------------------------------------------------------------------- find / check
def cache_dir() -> Path:
    """Where rebuilt reference sets go: ``$INTERIR_CACHE_DIR`` or ``~/.cache/interir``."""
    return Path(os.environ.get("INTERIR_CACHE_DIR") or Path.home() / ".cache" / "interir")


def _candidates(whash: str, explicit: str | os.PathLike | None) -> list[Path]:
    if explicit:
        return [Path(explicit)]
    return [SHIPPED_REFERENCE, cache_dir() / f"reference_{whash[:16]}.npz"]


def find_reference(whash: str, explicit: str | os.PathLike | None = None) -> tuple[Reference | None, str]:
    """The reference set built with the weights ``whash``: ``explicit`` if given, else the shipped
    one or the cached one. Returns (reference, "") or (None, why not)."""
    why = ""
    for cand in _candidates(whash, explicit):
        if not cand.is_file():
            continue
        try:
            ref = load_reference(cand)
        except InterIRError as exc:
            why = str(exc)
            continue
        if ref.weights_hash == whash:
            return ref, f"{len(ref)} images ({cand.name})"
        why = f"{cand.name} was built for other weights"
    return None, why or "no reference embedding set found"


def ensure_reference(model: Any, path: str | os.PathLike | None = None, shipped_weights: bool = False,
                     builder: Callable[..., Reference] | None = None, quick: bool = False,
                     whash: str | None = None) -> tuple[Reference | None, str]:
    """:func:`find_reference`, rebuilding the set when none matches the weights.

    The rebuilt set goes to ``path`` if given, to :data:`SHIPPED_REFERENCE` for the shipped
    weights (``shipped_weights``), else into :func:`cache_dir` keyed by the weights hash (never
    overwriting the shipped file). Returns (reference or None, a note for the user).
    """
    whash = whash or weights_hash(model)
    ref, where = find_reference(whash, path)
    if ref is not None:
        return ref, f"reference set: {where}"
    if where:
        log.info("%s; rebuilding", where)
    if path:
        target = Path(path)
    elif shipped_weights:
        target = SHIPPED_REFERENCE
    else:
        target = cache_dir() / f"reference_{whash[:16]}.npz"
    try:
        ref = (builder or build_reference)(model, out=target, quick=quick)
    except (OSError, InterIRError) as exc:
        log.warning("could not build the reference embedding set: %s", exc)
        return None, f"no reference embedding set ({exc})"
    return ref, f"reference set: {len(ref)} images (rebuilt for these weights)"
