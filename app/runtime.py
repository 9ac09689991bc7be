"""The model the app serves (one per process, shared read-only by every session) and the
reference embedding set that goes with it.

Every use of the model goes through :class:`ModelHolder` under one lock: ``interir.trace`` and
the interventions attach forward hooks to the shared model, so two requests must never run it
at the same time (on a 2-vCPU Space one run already uses both cores).
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import interir
from interir.errors import InterIRError
from interir.model.epblock import EXPLAIN_TYPES
from viz.embedding import Reference, load_reference, weights_hash

log = logging.getLogger("interir.app")

APP_DIR = Path(__file__).resolve().parent
SHIPPED_REFERENCE = APP_DIR / "assets" / "reference_embedding.npz"
INTERVENTIONS = ("uniform_attention", "zero_multiplier")


class ModelHolder:
    """The served model, its description, its weights hash and the lock around it."""

    def __init__(self, model: torch.nn.Module, source: str, weights_dir: Path | None = None,
                 trained: bool = True) -> None:
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.source = source
        self.weights_dir = weights_dir
        self.trained = trained
        self.config: dict[str, Any] = dict(getattr(model, "config", {}))
        self.hash = weights_hash(model)
        self.lock = threading.Lock()
        self.n_params = int(sum(p.numel() for p in model.parameters()))

    @classmethod
    def from_env(cls, weights: str | os.PathLike | None = None) -> "ModelHolder":
        """``weights`` or ``$INTERIR_WEIGHTS`` or the shipped checkpoint, else a random-init tiny model."""
        weights = weights or os.environ.get("INTERIR_WEIGHTS") or None
        if weights:
            path = Path(weights)
            return cls(interir.load_pretrained(path), f"weights from {path.name}", path)
        ckpt = interir.default_checkpoint()
        if ckpt is not None:
            return cls(interir.load_pretrained(ckpt), f"shipped checkpoint {ckpt.name}", ckpt)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = interir.build_model("tiny")
        return cls(model, "random initialisation (no trained checkpoint found)", None, trained=False)

    @property
    def is_default_checkpoint(self) -> bool:
        ckpt = interir.default_checkpoint()
        return ckpt is not None and self.weights_dir is not None and \
            Path(self.weights_dir).resolve() == ckpt.resolve()

    @property
    def has_explainable(self) -> bool:
        return self.config.get("conv_type", "explain") in EXPLAIN_TYPES

    def describe(self) -> str:
        c = self.config
        return (f"{self.source} · preset {c.get('preset', '?')}, n = {c.get('n_blocks', '?')} "
                f"IPBlocks, C = {c.get('channels', '?')}, {c.get('conv_type', '?')} convolutions, "
                f"{self.n_params / 1e6:.2f} M parameters")

    @staticmethod
    def to_tensor(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]

    def trace(self, img: np.ndarray) -> "interir.Trace":
        """Trace one float32 (H, W, 3) image."""
        x = self.to_tensor(img)
        with self.lock:
            return interir.trace(self.model, x)

    def run(self, img: np.ndarray, intervention: str | None = None) -> np.ndarray:
        """Restore with an intervention active; returns float32 (H, W, 3), not clamped."""
        from interir import interventions

        if intervention not in (None, *INTERVENTIONS):
            raise InterIRError(f"unknown intervention {intervention!r}")
        x = self.to_tensor(img)
        with self.lock, torch.inference_mode():
            ctx = getattr(interventions, intervention)(self.model) if intervention else nullcontext()
            with ctx:
                y = self.model(x)
        return y[0].permute(1, 2, 0).float().numpy()


def limit_blas_threads() -> None:
    """Run numpy/scipy's BLAS single-threaded in this process (torch keeps its own threads).

    The handlers' small SVDs, PCAs and SSIMs are 5× faster that way on 2 vCPUs: otherwise
    OpenBLAS threads spin against torch's OpenMP pool (measured 21 ms vs 4 ms per 128² SVD).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC


def tune_malloc(arenas: int = 2) -> None:
    """glibc: at most ``arenas`` malloc arenas. Gradio runs handlers on many worker threads; with
    glibc's default (8 per core) each thread's arena keeps its own freed images and the resident
    size creeps up request after request. No-op elsewhere."""
    libc = _libc()
    if libc:
        libc.mallopt(-8, int(arenas))  # M_ARENA_MAX


def trim_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``); no-op elsewhere."""
    libc = _libc()
    if libc:
        libc.malloc_trim(0)


def cache_dir() -> Path:
    """Where rebuilt reference sets go: ``$INTERIR_CACHE_DIR`` or ``~/.cache/interir``."""
    return Path(os.environ.get("INTERIR_CACHE_DIR") or Path.home() / ".cache" / "interir")


def ensure_reference(holder: ModelHolder, path: str | os.PathLike | None = None,
                     builder: Callable[..., Reference] | None = None, quick: bool | None = None,
                     ) -> tuple[Reference | None, str]:
    """Load the reference embedding set that matches the served weights, rebuilding it if needed.

    Order: ``path`` / ``$INTERIR_REFERENCE`` if given; otherwise the shipped
    ``app/assets/reference_embedding.npz``. If that file is missing, damaged or was built with
    other weights, it is rebuilt: in place for the shipped checkpoint (or an explicit path),
    else into :func:`cache_dir` keyed by the weights hash (never overwriting the shipped file).
    Returns (reference or None, a note for the UI).
    """
    explicit = path or os.environ.get("INTERIR_REFERENCE") or None
    quick = bool(int(os.environ.get("INTERIR_REFERENCE_QUICK", "0"))) if quick is None else quick
    candidates = [Path(explicit)] if explicit else [SHIPPED_REFERENCE,
                                                     cache_dir() / f"reference_{holder.hash[:16]}.npz"]
    for cand in candidates:
        if cand.is_file():
            try:
                ref = load_reference(cand)
            except InterIRError as exc:
                log.warning("%s", exc)
                continue
            if ref.weights_hash == holder.hash:
                return ref, f"reference set: {len(ref)} images ({cand.name})"
            log.info("%s was built for other weights (%s…); rebuilding", cand, ref.weights_hash[:10])
    if explicit:
        target = Path(explicit)
    elif holder.is_default_checkpoint:
        target = SHIPPED_REFERENCE
    else:
        target = cache_dir() / f"reference_{holder.hash[:16]}.npz"
    if builder is None:
        from .build_reference import build_reference as builder
    try:
        ref = builder(holder, out=target, quick=quick)
    except (OSError, InterIRError) as exc:
        log.warning("could not build the reference embedding set: %s", exc)
        return None, f"no reference embedding set ({exc})"
    return ref, f"reference set: {len(ref)} images (rebuilt for these weights)"
