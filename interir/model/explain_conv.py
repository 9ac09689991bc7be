"""The explainable convolution (Sec. 3.4, Eqs. 15-20).

A per-channel learnable threshold τ turns the input into a binary mask M (Eq. 16), M is pooled
to the kernel size (Eq. 17) and softmaxed over the K×K positions into an attention map A
(Eq. 18) that modulates the kernel for that sample alone, W_b = W ⊙ A_b (Eq. 19); all samples
are convolved in one grouped convolution with the batch folded into the groups (Eq. 20).

``mask`` (:class:`ThresholdMask`) and ``attention`` (:class:`KernelAttention`) are named
submodules so that the trace recorder can read M and A with forward hooks.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _surrogate_grads(ctx: Any, x: torch.Tensor, tau: torch.Tensor, upstream: torch.Tensor,
                     scale: float = 1.0) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The straight-through gradients of 1[x ≥ τ]: σ'((x − τ)/T)·upstream·scale for x, and minus
    its sum over batch and space for τ (each only where ``ctx`` needs it)."""
    s = torch.sub(x, tau.view(1, -1, 1, 1).to(x.dtype)).mul_(1.0 / ctx.temperature).sigmoid_()
    grad_x = s.addcmul_(s, s, value=-1.0).mul_(upstream)              # σ(u)(1 − σ(u)) · upstream
    if scale != 1.0:
        grad_x.mul_(scale)
    grad_tau = -grad_x.sum((0, 2, 3)).to(tau.dtype) if ctx.needs_input_grad[1] else None
    return (grad_x if ctx.needs_input_grad[0] else None), grad_tau


class _SurrogateStep(torch.autograd.Function):
    """1[x ≥ τ] forward; backward: the derivative of sigmoid((x − τ) / T) (straight-through).

    One node instead of the ``hard + (soft − soft.detach())`` graph: the same values and the
    same gradients, without the forward sigmoid and the two full-size temporaries."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, tau: torch.Tensor, temperature: float) -> torch.Tensor:
        ctx.save_for_backward(x, tau)
        ctx.temperature = temperature
        return (x >= tau.view(1, -1, 1, 1).to(x.dtype)).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, tau = ctx.saved_tensors
        return (*_surrogate_grads(ctx, x, tau, grad, 1.0 / ctx.temperature), None)


class ThresholdMask(nn.Module):
    """M = 1[x ≥ τ] per channel (Eq. 16), with a straight-through gradient so τ trains.

    Without autograd (inference, the trace) M is a ``bool`` tensor: one pass over x, and the
    recorder keeps it as it is. With autograd it is a float tensor of exact 0/1 values whose
    backward pass uses the derivative of ``sigmoid((x - τ) / temperature)``.
    """

    def __init__(self, channels: int, temperature: float = 0.1) -> None:
        super().__init__()
        self.tau = nn.Parameter(torch.zeros(channels))
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # Eq. 16
        if not (torch.is_grad_enabled() and (x.requires_grad or self.tau.requires_grad)):
            return x >= self.tau.view(1, -1, 1, 1).to(x.dtype)
        return _SurrogateStep.apply(x, self.tau, self.temperature)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 4-D tensor is laid out channels-last (and not also plain contiguous)."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def adaptive_bins(size: int, k: int) -> list[tuple[int, int]]:
    """The [start, end) ranges of ``adaptive_avg_pool`` over ``size`` cells into ``k`` bins."""
    return [((i * size) // k, -((-(i + 1) * size) // k)) for i in range(k)]


def bin_means(mask: torch.Tensor, kernel_size: tuple[int, int]) -> torch.Tensor:
    """``adaptive_avg_pool2d(mask.float(), kernel_size)`` of a bool mask, counted on its bytes.

    One reduction over the rows of each row bin (a sum over an outer dimension, vectorised for
    NCHW and channels-last alike; int16 while a bin has fewer than 2¹⁵ rows), then the column
    bins on the small (B, C, Kh, W) result. Exact: the counts are integers and the division is
    the pool's."""
    h, w = mask.shape[-2:]
    rows, cols = adaptive_bins(h, kernel_size[0]), adaptive_bins(w, kernel_size[1])
    cl = is_channels_last(mask)
    ones = mask.view(torch.uint8).permute(0, 2, 3, 1) if cl else mask.view(torch.uint8)
    hd, wd = (1, 2) if cl else (2, 3)                      # (B, H, W, C) or (B, C, H, W)
    acc = torch.int16 if h < 2 ** 15 else torch.int32
    per_row_bin = torch.stack([ones.narrow(hd, r0, r1 - r0).sum(hd, dtype=acc) for r0, r1 in rows], hd)
    counts = torch.stack([per_row_bin.narrow(wd, c0, c1 - c0).sum(wd, dtype=torch.int32)
                          for c0, c1 in cols], wd)
    counts = counts.permute(0, 3, 1, 2) if cl else counts
    area = torch.tensor([[(r1 - r0) * (c1 - c0) for c0, c1 in cols] for r0, r1 in rows],
                        dtype=torch.float32, device=mask.device)
    return counts.to(torch.float32) / area


def bin_matrix(size: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """(size, k): 1 / |bin j| where cell i lies in adaptive-pool bin j, else 0 (the pool's
    adjoint along one axis)."""
    m = torch.zeros(size, k, dtype=like.dtype, device=like.device)
    for j, (a, b) in enumerate(adaptive_bins(size, k)):
        m[a:b, j] = 1.0 / (b - a)
    return m


class _SurrogatePool(torch.autograd.Function):
    """``adaptive_avg_pool2d(1[x ≥ τ])`` with the straight-through gradient of
    :class:`_SurrogateStep`, as one node (training): the forward counts a bool mask instead of
    writing a float one and pooling it; the backward spreads the pooled gradient back with two
    small products (the pool is separable) and applies σ'((x − τ)/T)/T in place."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, tau: torch.Tensor, temperature: float,
                kernel_size: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, tau)
        ctx.temperature = temperature
        return bin_means(x >= tau.view(1, -1, 1, 1).to(x.dtype), kernel_size).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, tau = ctx.saved_tensors
        (h, w), (kh, kw) = x.shape[-2:], grad.shape[-2:]
        # the pool's adjoint (separable), divided by T on the small pooled gradient
        spread = bin_matrix(h, kh, x) @ (grad.to(x.dtype) / ctx.temperature) @ bin_matrix(w, kw, x).t()
        return (*_surrogate_grads(ctx, x, tau, spread), None, None)


def _hooked(module: nn.Module) -> bool:
    """Whether a forward (pre-)hook would see this module's call (the trace, interventions)."""
    from torch.nn.modules import module as mod
    return bool(module._forward_hooks or module._forward_pre_hooks
                or mod._global_forward_hooks or mod._global_forward_pre_hooks)


class KernelAttention(nn.Module):
    """Pool the mask to K×K (Eq. 17) and softmax over the K×K positions (Eq. 18)."""

    def __init__(self, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def pool(self, mask: torch.Tensor) -> torch.Tensor:  # Eq. 17
        """Mean of M over each of the K×K adaptive-pooling bins, (B, C, Kh, Kw) float."""
        if mask.dtype != torch.bool:
            return F.adaptive_avg_pool2d(mask, self.kernel_size)
        return bin_means(mask, self.kernel_size)

    @staticmethod
    def softmax(pooled: torch.Tensor) -> torch.Tensor:  # Eq. 18
        """Softmax of the pooled mask over the K×K positions of each channel."""
        b, c, kh, kw = pooled.shape
        return torch.softmax(pooled.reshape(b, c, kh * kw), dim=-1).reshape(b, c, kh, kw)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.pool(mask))


class ExplainConv2d(nn.Module):
    """Drop-in replacement for :class:`torch.nn.Conv2d` with input-specific kernel modulation.

    ``attention`` has one K×K map per *input* channel; for a weight ``W[o, i]`` of group g the
    modulation used is ``A[g·(C_in/groups) + i]`` (for depthwise convs, its own channel).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 groups: int = 1, bias: bool = True, attention_gain: float = 1.0) -> None:
        super().__init__()
        if not attention_gain > 0:
            raise ValueError(f"attention_gain must be positive, got {attention_gain}")
        self.attention_gain = float(attention_gain)  # 1: Eq. 19 as printed; K²: unit-mean attention
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.mask = ThresholdMask(in_channels)
        self.attention = KernelAttention(self.kernel_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Same initialisation as nn.Conv2d."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def modulated_weight(self, attn: torch.Tensor) -> torch.Tensor:  # Eq. 19
        """W_b = W ⊙ (gain·A_b) for every sample: (B·C_out, C_in/groups, K, K)."""
        b = attn.shape[0]
        g, cin_g, cout_g = self.groups, self.in_channels // self.groups, self.out_channels // self.groups
        kh, kw = self.kernel_size
        w = self.weight.view(1, g, cout_g, cin_g, kh, kw)
        a = attn.view(b, g, 1, cin_g, kh, kw).to(w.dtype)
        if self.attention_gain != 1.0:
            a = a * self.attention_gain
        return (w * a).reshape(b * self.out_channels, cin_g, kh, kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fused_mask_pool(x):   # Eqs. 16-17 as one node, then Eq. 18
            pooled = _SurrogatePool.apply(x, self.mask.tau, self.mask.temperature, self.kernel_size)
            attn = KernelAttention.softmax(pooled)
        else:
            attn = self.attention(self.mask(x))
        b, _, h, w = x.shape
        weight = self.modulated_weight(attn).to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if b == 1:  # one sample: a plain conv with its own kernel
            return F.conv2d(x, weight, bias, self.stride, self.padding, groups=self.groups)
        y = F.conv2d(x.reshape(1, b * self.in_channels, h, w), weight,    # Eq. 20
                     None if bias is None else bias.repeat(b),
                     stride=self.stride, padding=self.padding, groups=b * self.groups)
        return y.view(b, self.out_channels, y.shape[-2], y.shape[-1])

    def _fused_mask_pool(self, x: torch.Tensor) -> bool:
        """With autograd and nobody hooking M or A: Eqs. 16-17 as one node (no float mask)."""
        return (torch.is_grad_enabled() and (x.requires_grad or self.mask.tau.requires_grad)
                and not (_hooked(self.mask) or _hooked(self.attention)))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, "
                f"bias={self.bias is not None}"
                + (f", attention_gain={self.attention_gain:g}" if self.attention_gain != 1.0 else ""))
