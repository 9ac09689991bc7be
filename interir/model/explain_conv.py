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

import torch
import torch.nn.functional as F
from torch import nn


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class ThresholdMask(nn.Module):
    """M = 1[x ≥ τ] per channel (Eq. 16), with a straight-through gradient so τ trains.

    Forward value is exactly binary; the backward pass uses the derivative of
    ``sigmoid((x - τ) / temperature)``.
    """

    def __init__(self, channels: int, temperature: float = 0.1) -> None:
        super().__init__()
        self.tau = nn.Parameter(torch.zeros(channels))
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # Eq. 16
        shifted = x - self.tau.view(1, -1, 1, 1).to(x.dtype)
        hard = (shifted >= 0).to(x.dtype)
        if not (torch.is_grad_enabled() and (x.requires_grad or self.tau.requires_grad)):
            return hard
        soft = torch.sigmoid(shifted / self.temperature)
        return hard + (soft - soft.detach())


class KernelAttention(nn.Module):
    """Pool the mask to K×K (Eq. 17) and softmax over the K×K positions (Eq. 18)."""

    def __init__(self, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(mask, self.kernel_size)          # Eq. 17
        b, c, kh, kw = pooled.shape
        return torch.softmax(pooled.reshape(b, c, kh * kw), dim=-1).reshape(b, c, kh, kw)  # Eq. 18


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
        attn = self.attention(self.mask(x))
        b, _, h, w = x.shape
        weight = self.modulated_weight(attn).to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype).repeat(b)
        y = F.conv2d(x.reshape(1, b * self.in_channels, h, w), weight, bias,   # Eq. 20
                     stride=self.stride, padding=self.padding, groups=b * self.groups)
        return y.view(b, self.out_channels, y.shape[-2], y.shape[-1])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, "
                f"bias={self.bias is not None}"
                + (f", attention_gain={self.attention_gain:g}" if self.attention_gain != 1.0 else ""))
