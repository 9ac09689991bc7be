"""Recording what happens inside InterIR: one :class:`Recorder` of forward hooks, attached and
removed by a context manager, and the :class:`Trace` it produces.

Iteration k (k = 0..n) is the k-th semi-smooth Newton step on I, i.e. the (k+1)-th RESM: it
uses A_k, B_k, Λ_k (k = 0: the initialisation of Eq. 11; k ≥ 1: the output of IPBlock k's DMUM
and MUM) and yields I_{k+1}. So every entry pairs the degradation estimate with the image it
produces, the n + 1 entries cover all n + 1 RESMs, and the last decoded image is the output.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .model.explain_conv import KernelAttention, ThresholdMask
from .model.interir import InterIR
from .model.unfolding import RESM, Shrinkage


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
        self._decode, self._z = decode, z
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
                self._fidelity = float((self.A @ self.I @ self.B - self._z).pow(2).mean())
        return self._fidelity

    def __repr__(self) -> str:
        return (f"IterationRecord(I={tuple(self.I.shape)}, A={tuple(self.A.shape)}, "
                f"B={tuple(self.B.shape)}, step_norm={self.step_norm:.4g})")


@dataclass
class Trace:
    """Everything recorded for one input image (see DESIGN.md, "Public contract")."""

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
        return {
            "config": self.config,
            "input_shape": list(self.input.shape),
            "n_iterations": len(self.iterations),
            "fidelity": [it.fidelity for it in self.iterations],
            "step_norm": [it.step_norm for it in self.iterations],
            "eta": self.config.get("eta_learned", None),
            "mask_activation": {k: float(v.float().mean()) for k, v in self.masks.items()},
            "tau_mean": {k: float(v.mean()) for k, v in self.tau.items()},
            "embedding_dim": int(self.embedding.numel()),
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat name -> numpy array mapping (what :meth:`save_npz` writes)."""
        out: dict[str, np.ndarray] = {"input": self.input.numpy(), "output": self.output.numpy(),
                                      "embedding": self.embedding.numpy()}
        for k, it in enumerate(self.iterations):
            for key in ("image", "I", "A", "B", "Lambda"):
                out[f"iterations.{k}.{key}"] = getattr(it, key).numpy()
        out["fidelity"] = np.array([it.fidelity for it in self.iterations])
        out["step_norm"] = np.array([it.step_norm for it in self.iterations])
        for group in ("masks", "attention", "tau"):
            for name, value in getattr(self, group).items():
                out[f"{group}.{name}"] = value.numpy()
        return out

    def save_npz(self, path: str | Path) -> Path:
        """Write the whole trace (compressed .npz) plus ``summary`` as a JSON string entry."""
        path = Path(path)
        arrays = self.to_arrays()
        arrays["summary_json"] = np.array(json.dumps(self.summary()))
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
        return path


class Recorder:
    """Forward hooks on every RESM, every mask/attention submodule and every RESM shrinkage.

    Use as a context manager; hooks are removed on exit, also when an exception is raised.
    """

    def __init__(self, model: InterIR) -> None:
        self.model = model
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.steps: list[tuple[tuple[torch.Tensor, ...], torch.Tensor]] = []
        self.masks: dict[str, torch.Tensor] = {}
        self.attention: dict[str, torch.Tensor] = {}
        self.shrink: list[torch.Tensor] = []

    def _hook(self, fn: Callable[[nn.Module, tuple, Any], None]) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            fn(module, args, output)
        return hook

    def __enter__(self) -> "Recorder":
        try:
            for resm in self.model.resms():
                self.handles.append(resm.register_forward_hook(
                    lambda m, args, out: self.steps.append((tuple(a.detach() for a in args), out.detach()))))
                self.handles.append(resm.shrink.register_forward_hook(
                    lambda m, args, out: self.shrink.append(out.detach())))
            for name, module in self.model.named_modules():
                if isinstance(module, ThresholdMask):
                    conv = name.rsplit(".", 1)[0]
                    self.handles.append(module.register_forward_hook(
                        lambda m, args, out, conv=conv: self.masks.__setitem__(conv, out if out.dtype == torch.bool else out.detach().gt(0.5))))
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
def trace(model: InterIR, x: torch.Tensor) -> Trace:
    """Run ``model`` on one image ``x`` (1, 3, H, W) and record its unfolding.

    ``trace(model, x).output`` equals ``model(x)``; the model's parameters and mode are untouched.
    """
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ValueError(f"trace expects one image of shape (1, 3, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    with Recorder(model) as rec:
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
