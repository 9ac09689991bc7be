"""Moving weights between the two readings of Eq. 19 without changing what the network computes.

``explain`` modulates a kernel as ``W ⊙ A`` (as printed), ``explain_unit`` as ``W ⊙ K²·A``: with
``W_unit = W_explain / K²`` both give the same kernel for every input, so a checkpoint (or a
training state) converts exactly. Training is what differs: Adam moves W by about the learning rate
whichever way it is scaled, so under ``explain`` the kernel that acts (``W·A``, about W/9) moves
nine times slower than a standard conv's, and under ``explain_unit`` at the same pace.

A standard depthwise conv is another function class (no attention): ``convert_conv_type`` refuses
it. ``standard_as_uniform`` is the one approximate move, and only on request: a standard kernel
becomes the explainable W whose kernel under a *uniform* attention map (A = 1/K² everywhere) is that
standard kernel; the network then differs from the standard one only by how far its attention maps
are from uniform.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from .epblock import EXPLAIN_TYPES, attention_gain
from .explain_conv import ExplainConv2d


def conv_type_factors(config: Mapping[str, Any], conv_type: str) -> dict[str, float]:
    """Parameter name → the factor its values are multiplied by to move a model built from
    ``config`` to ``conv_type`` (only the explainable kernels' weights; empty when nothing moves).

    Raises ValueError when the move is not an exact reparametrisation."""
    old = config["conv_type"]
    if old == conv_type:
        return {}
    if old not in EXPLAIN_TYPES or conv_type not in EXPLAIN_TYPES:
        raise ValueError(f"conv_type {old!r} cannot be converted to {conv_type!r}: only "
                         f"{' and '.join(EXPLAIN_TYPES)} compute the same function (a standard conv "
                         "has no attention)")
    k = int(config["kernel_size"])
    factor = attention_gain(old, k) / attention_gain(conv_type, k)   # W' = W·g / g'
    return {name: factor for name in explainable_kernels(config)}


def explainable_kernels(config: Mapping[str, Any]) -> list[str]:
    """The state-dict names of the explainable kernels of a network of ``config`` built with an
    explainable conv (whatever its own conv_type): the weights the moves here rescale."""
    from .interir import InterIR, make_config

    with torch.device("meta"):                                      # names only, no memory
        model = InterIR(make_config(**{**dict(config), "conv_type": EXPLAIN_TYPES[0]}))
    return [f"{name}.weight" for name, m in model.named_modules() if isinstance(m, ExplainConv2d)]


def convert_conv_type(state: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                      conv_type: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A state dict and model config of ``config``'s network converted to ``conv_type``:
    the same outputs for every input (see the module docstring)."""
    factors = conv_type_factors(config, conv_type)
    missing = [k for k in factors if k not in state]
    if missing:
        raise ValueError(f"state dict lacks {len(missing)} explainable kernels (e.g. {missing[0]})")
    out = {k: (v * factors[k] if k in factors else v) for k, v in state.items()}
    return out, {**dict(config), "conv_type": conv_type}


def convert_adam_moments(moments: Mapping[str, torch.Tensor], factor: float) -> dict[str, torch.Tensor]:
    """Adam's state of one parameter after ``W' = factor·W``: the gradient scales by 1/factor, so
    ``exp_avg`` by 1/factor and ``exp_avg_sq`` by 1/factor² (``step`` and the rest unchanged).
    Adam's step does not depend on the gradient's scale, so W' takes the step W would have taken,
    and the kernel that acts moves 1/factor times as far (K² times from explain to explain_unit)."""
    out = dict(moments)
    if "exp_avg" in out:
        out["exp_avg"] = out["exp_avg"] / factor
    for key in ("exp_avg_sq", "max_exp_avg_sq"):
        if key in out:
            out[key] = out[key] / factor ** 2
    return out


def standard_as_uniform(state: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                        conv_type: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A standard-conv state dict and config moved to ``conv_type`` (explain or explain_unit) so
    that each explainable kernel acts as the standard one under uniform attention:
    W ⊙ g·(1/K²) = W_std, i.e. W = W_std·K²/g (= W_std under explain_unit). The thresholds τ are
    not in ``state`` and keep their fresh initialisation. Not exact: the attention of a real input
    is near, not at, uniform (``train.init_standard_as_uniform`` asks for it)."""
    if config["conv_type"] != "standard" or conv_type not in EXPLAIN_TYPES:
        raise ValueError(f"standard_as_uniform moves a standard conv to one of {EXPLAIN_TYPES}, "
                         f"not {config['conv_type']!r} to {conv_type!r}")
    k = int(config["kernel_size"])
    target = {**dict(config), "conv_type": conv_type}
    factor = k * k / attention_gain(conv_type, k)
    names = explainable_kernels(config)
    missing = [n for n in names if n not in state]
    if missing:
        raise ValueError(f"state dict lacks {len(missing)} kernels (e.g. {missing[0]})")
    return {n: (v * factor if n in names else v) for n, v in state.items()}, target
