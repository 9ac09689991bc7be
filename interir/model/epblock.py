"""EPBlock (Sec. 3.4, Fig. 3): the NAFBlock layout with the 3×3 depthwise convolution replaced
by the explainable convolution. Residual scales ``beta``/``gamma`` start at zero, so a fresh
block is the identity (as in NAFNet)."""
from __future__ import annotations

import torch
from torch import nn

from .explain_conv import ExplainConv2d

#: ``explain``: Eqs. 16-20 as printed. ``explain_unit``: the same with the attention rescaled by
#: K² in Eq. 19 (W_b = W ⊙ K²·A_b), so a uniform attention leaves W unchanged; the same function
#: class (W absorbs the constant), but the kernel is not shrunk 9× at init and trains at the
#: standard conv's pace. ``standard``: a plain depthwise conv (the ablation twin).
CONV_TYPES = ("explain", "explain_unit", "standard")
EXPLAIN_TYPES = ("explain", "explain_unit")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of an (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + self.eps)
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return x1 * x2


class SimplifiedChannelAttention(nn.Module):
    """Global average pool -> 1×1 conv -> channel-wise scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv(self.pool(x))


def make_depthwise(channels: int, kernel_size: int, conv_type: str) -> nn.Module:
    """The spatial conv of an EPBlock: explainable (InterIR) or standard (ablation twin)."""
    if conv_type in EXPLAIN_TYPES:
        gain = float(kernel_size ** 2) if conv_type == "explain_unit" else 1.0
        return ExplainConv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels,
                             attention_gain=gain)
    if conv_type == "standard":
        return nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
    raise ValueError(f"conv_type must be one of {CONV_TYPES}, got {conv_type!r}")


class EPBlock(nn.Module):
    """Explainable block: x + β·SpatialMix(x), then y + γ·FFN(y)."""

    def __init__(self, channels: int, kernel_size: int = 3, conv_type: str = "explain",
                 dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw = channels * dw_expand
        ffn = channels * ffn_expand
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, dw, 1)
        self.conv2 = make_depthwise(dw, kernel_size, conv_type)
        self.gate = SimpleGate()
        self.sca = SimplifiedChannelAttention(dw // 2)
        self.conv3 = nn.Conv2d(dw // 2, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.sca(self.gate(self.conv2(self.conv1(self.norm1(inp))))))
        y = inp + x * self.beta
        x = self.conv5(self.gate(self.conv4(self.norm2(y))))
        return y + x * self.gamma
