"""Recording what happens inside InterIR: one :class:`Recorder` of forward hooks, attached and
removed by a context manager, and the :class:`Trace` it produces.

Iteration k (k = 0..n) is the k-th semi-smooth Newton step on I, i.e. the (k+1)-th RESM: it
uses A_k, B_k, Λ_k (k = 0: the initialisation of Eq. 11; k ≥ 1: the output of IPBlock k's DMUM
and MUM) and yields I_{k+1}. So every entry pairs the degradation estimate with the image it
produces, the n + 1 entries cover all n + 1 RESMs, and the last decoded image is the output.
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .fileio import atomic_write_with
from .model.explain_conv import KernelAttention, ThresholdMask
from .model.interir import InterIR


class IterationRecord:
    """One unfolding iteration: the solver's variables and, computed on first access and then
    cached, the early-exit decoded image and the data fidelity (so a trace costs little more
    than a forward pass when not every iteration is looked at)."""

    def __init__(self, I: torch.Tensor, A: torch.Tensor, B: torch.Tensor, Lambda: torch.Tensor,
                 step_norm: float, decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor,
                 image: torch.Tensor | None = None) -> None:
        self.I = I                  # (1, C, h, w)
        self.A = A                  # (1, C, h, h)
        self.B = B                  # (1, C, w, w)
        self.Lambda = Lambda        # (1, C, h, w)
        self.step_norm = step_norm  # ||I_k - I_{k-1}|| / ||I_{k-1}||
        self.z = z                  # (1, C, h, w) the embedded input (the "D" of Eqs. 12-14)
        self._decode = decode
        self._image = image
        self._fidelity: float | None = None

    @property
    def image(self) -> torch.Tensor:
        """(1, 3, H, W) early-exit decode of I through the output head (Î = IR + D)."""
        if self._image is None:
            with torch.inference_mode():
                self._image = self._decode(self.I)
        return self._image

    @property
    def fidelity(self) -> float:
        """||A·I·B − z||² / numel."""
        if self._fidelity is None:
            with torch.inference_mode():
                self._fidelity = float((self.A @ self.I @ self.B - self.z).pow(2).mean())
        return self._fidelity

    def __repr__(self) -> str:
        return (f"IterationRecord(I={tuple(self.I.shape)}, A={tuple(self.A.shape)}, "
                f"B={tuple(self.B.shape)}, step_norm={self.step_norm:.4g})")


# ----------------------------------------------------------------------------- the bundle
# The .npz layout of ``interir trace`` (its save_npz: docs/design.md, "Public contract"): input, output,
# embedding, iterations.<k>.{image,I,A,B,Lambda}, fidelity, step_norm, masks.<conv>,
# attention.<conv>, tau.<conv>, summary_json. Written only by write_bundle, from bundle_arrays.
def bundle_arrays(input: np.ndarray, output: np.ndarray, embedding: np.ndarray,
                  iterations: Sequence[Mapping[str, np.ndarray]], fidelity: Sequence[float],
                  step_norm: Sequence[float], masks: Mapping[str, np.ndarray],
                  attention: Mapping[str, np.ndarray], tau: Mapping[str, np.ndarray],
                  ) -> dict[str, np.ndarray]:
    """The bundle's name -> array mapping (batch-first arrays, as a Trace holds them)."""
    out: dict[str, np.ndarray] = {"input": input, "output": output, "embedding": embedding}
    for k, it in enumerate(iterations):
        for key in ("image", "I", "A", "B", "Lambda"):
            out[f"iterations.{k}.{key}"] = it[key]
    out["fidelity"] = np.asarray(fidelity, dtype=np.float64)
    out["step_norm"] = np.asarray(step_norm, dtype=np.float64)
    for group, values in (("masks", masks), ("attention", attention), ("tau", tau)):
        for name, value in values.items():
            out[f"{group}.{name}"] = value
    return out


def trace_summary(config: dict[str, Any], input_shape: Sequence[int], fidelity: Sequence[float],
                  step_norm: Sequence[float], mask_activation: Mapping[str, float],
                  tau_mean: Mapping[str, float], embedding_dim: int) -> dict[str, Any]:
    """The bundle's JSON summary (sizes, per-iteration scalars, mask activation rates)."""
    return {"config": config, "input_shape": [int(s) for s in input_shape],
            "n_iterations": len(fidelity), "fidelity": [float(v) for v in fidelity],
            "step_norm": [float(v) for v in step_norm], "eta": config.get("eta_learned", None),
            "mask_activation": {k: float(v) for k, v in mask_activation.items()},
            "tau_mean": {k: float(v) for k, v in tau_mean.items()}, "embedding_dim": int(embedding_dim)}


def jsonable(obj: Any) -> Any:
    """numpy scalars/arrays -> Python, non-finite floats -> strings (for json.dumps)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj


_FULL_PRECISION = ("input", "output", "reference")


def write_bundle(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], summary: dict[str, Any],
                 half: bool = False, level: int = 6) -> Path:
    """Write a trace bundle atomically: ``arrays`` plus ``summary_json``, a zip of .npy files that
    ``np.load`` reads. ``half`` stores the solver's float32 arrays as float16 (images stay
    float32); ``level`` is the zlib level (1 is ~5× faster than 6, files ~10 % larger)."""
    entries = dict(arrays, summary_json=np.array(json.dumps(jsonable(summary))))

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
            for key, arr in entries.items():
                arr = np.asanyarray(arr)
                if half and arr.dtype == np.float32 and not key.startswith(_FULL_PRECISION) \
                        and not key.endswith(".image"):
                    arr = arr.astype(np.float16)
                with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, arr, allow_pickle=False)
    return atomic_write_with(path, write)


@dataclass
class Trace:
    """Everything recorded for one input image (see docs/design.md, "Public contract")."""

    input: torch.Tensor
    output: torch.Tensor
    iterations: list[IterationRecord]
    masks: dict[str, torch.Tensor]       # conv name -> (1, C, h, w) bool (M in {0, 1})
    attention: dict[str, torch.Tensor]   # conv name -> (1, C, K, K)
    tau: dict[str, torch.Tensor]         # conv name -> (C,) learned thresholds
    embedding: torch.Tensor              # 1-D degradation embedding
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (sizes, per-iteration scalars, mask activation rates)."""
        return trace_summary(self.config, self.input.shape, [it.fidelity for it in self.iterations],
                             [it.step_norm for it in self.iterations],
                             {k: float(v.float().mean()) for k, v in self.masks.items()},
                             {k: float(v.mean()) for k, v in self.tau.items()}, self.embedding.numel())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat name -> numpy array mapping (what :meth:`save_npz` writes)."""
        its = [{key: getattr(it, key).numpy() for key in ("image", "I", "A", "B", "Lambda")}
               for it in self.iterations]
        return bundle_arrays(self.input.numpy(), self.output.numpy(), self.embedding.numpy(), its,
                             [it.fidelity for it in self.iterations], [it.step_norm for it in self.iterations],
                             {k: v.numpy() for k, v in self.masks.items()},
                             {k: v.numpy() for k, v in self.attention.items()},
                             {k: v.numpy() for k, v in self.tau.items()})

    def save_npz(self, path: str | Path) -> Path:
        """Write the whole trace (compressed .npz) plus ``summary`` as a JSON string entry."""
        return write_bundle(path, self.to_arrays(), self.summary())


class Recorder:
    """Forward hooks on every RESM, every mask/attention submodule and every RESM shrinkage.

    Use as a context manager; hooks are removed on exit, also when an exception is raised.
    ``on_step(k, total)``, if given, is called when RESM k (0-based) of ``total`` has run.
    """

    def __init__(self, model: InterIR, on_step: Callable[[int, int], None] | None = None) -> None:
        self.model = model
        self.on_step = on_step
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.steps: list[tuple[tuple[torch.Tensor, ...], torch.Tensor]] = []
        self.masks: dict[str, torch.Tensor] = {}
        self.attention: dict[str, torch.Tensor] = {}
        self.shrink: list[torch.Tensor] = []

    def _record_step(self, module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        self.steps.append((tuple(a.detach() for a in args), out.detach()))
        if self.on_step is not None:
            self.on_step(len(self.steps) - 1, self._n_resms)

    def __enter__(self) -> "Recorder":
        try:
            resms = list(self.model.resms())
            self._n_resms = len(resms)
            for resm in resms:
                self.handles.append(resm.register_forward_hook(self._record_step))
                self.handles.append(resm.shrink.register_forward_hook(
                    lambda m, args, out: self.shrink.append(out.detach())))
            for name, module in self.model.named_modules():
                if isinstance(module, ThresholdMask):
                    conv = name.rsplit(".", 1)[0]
                    self.handles.append(module.register_forward_hook(
                        lambda m, args, out, conv=conv: self.masks.__setitem__(conv, out if out.dtype == torch.bool
                                                                       else out.detach().gt(0.5))))
                elif isinstance(module, KernelAttention):
                    conv = name.rsplit(".", 1)[0]
                    self.handles.append(module.register_forward_hook(
                        lambda m, args, out, conv=conv: self.attention.__setitem__(conv, out.detach())))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def _embedding(shrink_outputs: list[torch.Tensor]) -> torch.Tensor:
    """Degradation embedding: spatial mean and std of every RESM's shrinkage S(Λ ⊕ EP(I)),
    the learned estimate of what violates the image prior, concatenated over iterations."""
    feats = [torch.cat([s.mean((2, 3)), s.std((2, 3), unbiased=False)], dim=1) for s in shrink_outputs]
    return torch.cat(feats, dim=1).flatten().float()


@torch.inference_mode()
def trace(model: InterIR, x: torch.Tensor, progress: Callable[[int, int], None] | None = None) -> Trace:
    """Run ``model`` on one image ``x`` (1, 3, H, W) and record its unfolding.

    ``trace(model, x).output`` equals ``model(x)``; the model's parameters and mode are untouched.
    ``progress(k, total)`` is called as each unrolled iteration (RESM k of ``total``) ends.
    """
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ValueError(f"trace expects one image of shape (1, 3, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    with Recorder(model, on_step=progress) as rec:
        output = model(x)
    x_pad = model.pad(x)
    decode = lambda I: model.decode(I, x_pad)[..., :h, :w]  # noqa: E731
    iterations = []
    for k, ((I_old, A, B, Lambda, z), I_new) in enumerate(rec.steps):
        iterations.append(IterationRecord(
            I=I_new, A=A, B=B, Lambda=Lambda, decode=decode, z=z,
            step_norm=float((I_new - I_old).norm() / I_old.norm().clamp_min(1e-12)),
            image=output if k == len(rec.steps) - 1 else None))  # the last decode is the output
    tau = {name.rsplit(".", 1)[0]: m.tau.detach().clone() for name, m in model.named_modules()
           if isinstance(m, ThresholdMask)}
    config = dict(model.config)
    config["eta_learned"] = [float(r.eta) for r in model.resms()]
    return Trace(input=x.detach().clone(), output=output, iterations=iterations, masks=dict(rec.masks),
                 attention=dict(rec.attention), tau=tau, embedding=_embedding(rec.shrink), config=config)
