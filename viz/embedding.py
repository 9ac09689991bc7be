"""The degradation-embedding reference set (a precomputed t-SNE map) and the placement of a new
image in it by k-nearest-neighbour interpolation.

A new point is **not** refitted into the t-SNE (that would move every point and take seconds):
its 2-D position is the inverse-distance-weighted mean of the 2-D positions of its k nearest
reference embeddings (standardised Euclidean distance in the full embedding space), and the
"diagnosis" is the inverse-distance-weighted vote of the same neighbours, its confidence the
winning share of the weight.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interir.errors import InterIRError

__all__ = ["Reference", "Placement", "load_reference", "save_reference", "place", "weights_hash",
           "REFERENCE_VERSION"]

REFERENCE_VERSION = 1


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


def save_reference(ref: Reference, path: str | Path) -> Path:
    """Write the reference set as one .npz (atomic rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(ref.meta, version=REFERENCE_VERSION, combos=list(ref.combos), sources=list(ref.sources),
                weights_hash=ref.weights_hash, nn_dist_p95=float(ref.nn_dist_p95))
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, embeddings=ref.embeddings.astype(np.float32),
                        coords=ref.coords.astype(np.float32), labels=ref.labels.astype(np.int16),
                        levels=ref.levels.astype(np.float32), thumbs=ref.thumbs.astype(np.uint8),
                        mean=ref.mean.astype(np.float32), std=ref.std.astype(np.float32),
                        meta_json=np.array(json.dumps(meta)))
    tmp.replace(path)
    return path


def load_reference(path: str | Path) -> Reference:
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
    except InterIRError:
        raise
    except Exception as exc:  # noqa: BLE001 - any damage means "rebuild it"
        raise InterIRError(f"{path}: not a valid reference embedding file ({type(exc).__name__}: {exc})") from None
    if meta.get("version") != REFERENCE_VERSION:
        raise InterIRError(f"{path}: reference file version {meta.get('version')} != {REFERENCE_VERSION}")
    n = ref.embeddings.shape[0]
    if not (ref.coords.shape == (n, 2) and ref.labels.shape == (n,) and len(ref.sources) == n
            and ref.thumbs.shape[0] == n and ref.levels.shape == (n, 3)):
        raise InterIRError(f"{path}: reference arrays have inconsistent lengths")
    return ref


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
    import hashlib

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
