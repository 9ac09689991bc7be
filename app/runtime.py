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
from interir.memory import keep_freed_memory, limit_arenas
from interir import reference as refset
from interir.errors import InterIRError
from interir.model.epblock import EXPLAIN_TYPES
from interir.reference import Reference, weights_hash
from interir.weights import out_of_step, read_config, repo_root, same_stage, started_from

log = logging.getLogger("interir.app")

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

    @property
    def short_name(self) -> str:
        return Path(self.weights_dir).name if self.weights_dir is not None else "random init"

    def trace(self, img: np.ndarray, progress: Callable[[int, int], None] | None = None) -> "interir.Trace":
        """Trace one float32 (H, W, 3) image; ``progress(k, total)`` as each iteration ends."""
        x = self.to_tensor(img)
        with self.lock:
            return interir.trace(self.model, x, progress=progress)

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


TWIN_SUFFIX = "-stdconv"


def no_twin_note(holder: ModelHolder) -> str:
    """What the twin panel says when the served weights have no standard-conv twin."""
    if holder.weights_dir is None:
        return ("**No standard-conv twin for this model**: set `INTERIR_TWIN_WEIGHTS=DIR` (a folder "
                "with config.json + model.safetensors of a standard-conv model) to compare with one.")
    name = holder.short_name
    pairs = [p for p in shipped_pairs() if p != name]
    other = (" The shipped " + ", ".join(f"`{p}`" for p in pairs) + (" has" if len(pairs) == 1 else " have")
             + " a twin trained with the same recipe: start the app with "
             f"`INTERIR_WEIGHTS=checkpoints/{pairs[0]}` to compare that pair." if pairs else "")
    return (f"**No standard-conv twin has been trained for `{name}` yet**, so there is nothing to "
            "compare it with here (the paper's Table 4 ablation needs a twin trained with the same "
            "recipe and `conv_type: standard`). To compare with one, start the app with "
            "`INTERIR_TWIN_WEIGHTS=DIR` (a folder with config.json + model.safetensors), or put it "
            f"beside the weights as `{name}{TWIN_SUFFIX}`.{other}")


def shipped_pairs() -> list[str]:
    """The shipped checkpoints (``checkpoints/``) that have a standard-conv twin beside them."""
    root = repo_root() / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.endswith(TWIN_SUFFIX)
                  and (root / (p.name + TWIN_SUFFIX) / "model.safetensors").is_file())


def twin_step_note(holder: ModelHolder, twin: ModelHolder) -> str:
    """The twin panel's note on how the pair was trained: a sentence when they are not from the same
    iteration of the same stage (the comparison mixes in differences of training) and one when the
    served weights started from the twin's (their lineage.json); "" otherwise."""
    start = ""
    if holder.weights_dir is not None and twin.weights_dir is not None and \
            started_from(holder.weights_dir, twin.weights_dir):
        start = (f"**One start:** `{holder.short_name}` began from the twin's weights (standard kernels "
                 "taken as explainable ones under uniform attention, then fine-tuned), so the "
                 "difference shows what the learned attention adds to a trained standard network.")
    gap = out_of_step(holder.weights_dir, twin.weights_dir)
    if gap is None:
        return start
    return " ".join(x for x in (_gap_note(holder, twin, gap), start) if x)


def _gap_note(holder: ModelHolder, twin: ModelHolder, gap) -> str:
    (na, a), (nb, b) = gap
    if not same_stage(na, nb):
        return (f"**Not in step:** `{holder.short_name}` is from iteration {a:,} of its training stage "
                f"`{na}`, the twin `{twin.short_name}` from iteration {b:,} of `{nb}`, another stage, so "
                "this comparison mixes the convolution's effect with differences of training.")
    return (f"**Not in step:** `{holder.short_name}` is from iteration {a:,} of its training schedule, "
            f"the twin `{twin.short_name}` from iteration {b:,}, so this comparison mixes the "
            f"convolution's effect with {abs(a - b):,} iterations of training.")


def load_twin(holder: ModelHolder, weights: str | os.PathLike | None = None) -> tuple[ModelHolder | None, str]:
    """The standard-convolution twin of the served weights, for the twin panel: ``weights`` or
    ``$INTERIR_TWIN_WEIGHTS`` (``none`` switches it off), else the folder beside the served one
    named ``<name>-stdconv`` (``checkpoints/<DEFAULT_CHECKPOINT>-stdconv`` for the shipped
    checkpoint) if it has the same depth n: a twin of another depth is never paired on its own.
    Returns (twin or None, a note saying why there is none, or that the pair is not in step)."""
    weights = weights or os.environ.get("INTERIR_TWIN_WEIGHTS") or None
    if weights and str(weights).lower() == "none":
        return None, "The standard-conv twin is switched off (INTERIR_TWIN_WEIGHTS=none)."
    if weights is None and holder.weights_dir is not None:
        sibling = Path(holder.weights_dir).with_name(Path(holder.weights_dir).name + TWIN_SUFFIX)
        if sibling.is_dir():
            try:
                n_twin = read_config(sibling).get("n_blocks")
            except InterIRError as exc:
                log.warning("twin: %s", exc)
                return None, f"The standard-conv twin could not be loaded ({exc})."
            if n_twin != holder.config.get("n_blocks"):
                log.warning("twin %s has n = %s, the served weights n = %s: not paired", sibling, n_twin,
                            holder.config.get("n_blocks"))
                return None, (no_twin_note(holder) + f" (`{sibling.name}` beside them has n = {n_twin}, "
                              f"not n = {holder.config.get('n_blocks')}, so it is not paired automatically.)")
            weights = sibling
    if weights is None:
        return None, no_twin_note(holder)
    try:
        twin = ModelHolder(interir.load_pretrained(weights), f"twin {Path(weights).name}", Path(weights))
    except InterIRError as exc:
        log.warning("twin: %s", exc)
        return None, f"The standard-conv twin could not be loaded ({exc})."
    if twin.has_explainable:
        log.warning("twin %s uses explainable convolutions", weights)
    return twin, twin_step_note(holder, twin)


def limit_blas_threads() -> None:
    """Run numpy/scipy's BLAS single-threaded in this process (torch keeps its own threads).

    The handlers' small SVDs, PCAs and SSIMs are 5× faster that way on 2 vCPUs: otherwise
    OpenBLAS threads spin against torch's OpenMP pool (measured 21 ms vs 4 ms per 128² SVD).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def tune_malloc(arenas: int = 2) -> None:
    """glibc: at most ``arenas`` malloc arenas, and the forward's freed memory kept for the next
    one (:func:`interir.memory.keep_freed_memory`: ~13 % off a 512² forward). Gradio runs handlers
    on many worker threads; with glibc's default (8 arenas per core) each thread's arena keeps its
    own freed images and the resident size creeps up request after request. No-op elsewhere."""
    limit_arenas(arenas)
    keep_freed_memory()


def ensure_reference(holder: ModelHolder, path: str | os.PathLike | None = None,
                     builder: Callable[..., Reference] | None = None, quick: bool | None = None,
                     ) -> tuple[Reference | None, str]:
    """The reference embedding set for the served weights (the start-up hash check), rebuilt
    when missing, damaged or built with other weights: see :func:`interir.reference.ensure_reference`.
    ``path`` defaults to ``$INTERIR_REFERENCE``; ``$INTERIR_REFERENCE_QUICK=1`` builds a small set."""
    path = path or os.environ.get("INTERIR_REFERENCE") or None
    quick = bool(int(os.environ.get("INTERIR_REFERENCE_QUICK", "0"))) if quick is None else quick
    return refset.ensure_reference(holder.model, path, shipped_weights=holder.is_default_checkpoint,
                                   builder=builder, quick=quick, whash=holder.hash)
