"""Interventions on a running model, each a context manager of forward hooks (no flags in
``forward``). Early exit at iteration k needs none: it is ``trace(model, x).iterations[k].image``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from .model.explain_conv import KernelAttention
from .model.interir import InterIR
from .model.unfolding import MUM, InitModule


@contextmanager
def uniform_attention(model: InterIR) -> Iterator[InterIR]:
    """Explainable modulation off: every attention map is uniform, 1/K² (W_b = W / K², or W
    under ``explain_unit``, whose kernels scale the attention by K²)."""
    handles = [m.register_forward_hook(lambda mod, args, out: torch.full_like(out, 1.0 / out[0, 0].numel()))
               for m in model.modules() if isinstance(m, KernelAttention)]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


@contextmanager
def zero_multiplier(model: InterIR) -> Iterator[InterIR]:
    """Λ set to zero: the initial multiplier (Eq. 11) and every MUM update (Eq. 14) give 0."""
    def zero_init(mod, args, out):
        I0, A0, B0, Lambda0 = out
        return I0, A0, B0, torch.zeros_like(Lambda0)

    handles = []
    for m in model.modules():
        if isinstance(m, InitModule):
            handles.append(m.register_forward_hook(zero_init))
        elif isinstance(m, MUM):
            handles.append(m.register_forward_hook(lambda mod, args, out: torch.zeros_like(out)))
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


#: The interventions above, by name, in the order the evaluation and the app list them.
INTERVENTIONS = ("uniform_attention", "zero_multiplier")


def applies(model: torch.nn.Module, name: str) -> bool:
    """Whether intervention ``name`` has anything to act on in ``model``: uniform attention
    needs explainable convs (a standard-conv model has no attention maps), Λ = 0 the unfolding."""
    if name not in INTERVENTIONS:
        raise ValueError(f"unknown intervention {name!r}; known: {', '.join(INTERVENTIONS)}")
    kinds = (KernelAttention,) if name == "uniform_attention" else (InitModule, MUM)
    return any(isinstance(m, kinds) for m in model.modules())
