"""EPBlock (Sec. 3.4, Fig. 3): the NAFBlock layout with the 3×3 depthwise convolution replaced
by the explainable convolution. Residual scales ``beta``/``gamma`` start at zero, so a fresh
block is the identity (as in NAFNet)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .explain_conv import ExplainConv2d, is_channels_last

#: ``explain``: Eqs. 16-20 as printed. ``explain_unit``: the same with the attention rescaled by
#: K² in Eq. 19 (W_b = W ⊙ K²·A_b), so a uniform attention leaves W unchanged; the same function
#: class (W absorbs the constant), but the kernel is not shrunk 9× at init and trains at the
#: standard conv's pace. ``standard``: a plain depthwise conv (the ablation twin).
CONV_TYPES = ("explain", "explain_unit", "standard")
EXPLAIN_TYPES = ("explain", "explain_unit")


def attention_gain(conv_type: str, kernel_size: int) -> float:
    """The constant g of W_b = W ⊙ g·A_b (Eq. 19): 1 for ``explain``, K² for ``explain_unit``."""
    if conv_type not in EXPLAIN_TYPES:
        raise ValueError(f"conv_type {conv_type!r} has no attention (one of {EXPLAIN_TYPES})")
    return float(kernel_size ** 2) if conv_type == "explain_unit" else 1.0


def normalize_channels(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """((x − μ)·rstd, rstd) over dim 1, two-pass variance, one new full-size tensor."""
    d = x - x.mean(1, keepdim=True)
    rstd = torch.rsqrt((d * d).mean(1, keepdim=True).add_(eps))
    return d.mul_(rstd), rstd


class _Normalize(torch.autograd.Function):
    """(x − μ)·rstd over dim 1 with the closed-form backward
    rstd·(g − mean(g) − y·mean(g·y)): about half the passes of autograd's graph of the written-out
    form (sub, square, two means, rsqrt, mul and their backward nodes)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, eps: float) -> torch.Tensor:
        y, rstd = normalize_channels(x, eps)
        ctx.save_for_backward(y, rstd)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        y, rstd = ctx.saved_tensors
        mean_gy = (grad * y).mean(1, keepdim=True)
        shift = grad.mean(1, keepdim=True).mul_(rstd).neg_()               # −rstd·mean(g)
        return torch.addcmul(shift, grad, rstd).addcmul_(y, mean_gy.mul_(rstd), value=-1.0), None


class _SimpleGate(torch.autograd.Function):
    """x1·x2 of the two channel halves; the backward writes both halves' gradients into one
    tensor (autograd's chunk backward would concatenate two separate ones: a copy)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        x1, x2 = x.chunk(2, dim=1)
        return x1 * x2

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        half = x.shape[1] // 2
        out = torch.empty_like(x)
        torch.mul(grad, x[:, half:], out=out[:, :half])
        torch.mul(grad, x[:, :half], out=out[:, half:])
        return out


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of an (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(x − μ) / sqrt(σ² + eps) over the channels, without the affine part. (Two-pass
        variance: ``torch.var_mean`` over the channel dimension of NCHW is several times slower
        on the CPU, and E[x²] − μ² loses precision.)"""
        if torch.is_grad_enabled() and x.requires_grad:
            return _Normalize.apply(x, self.eps)
        return normalize_channels(x, self.eps)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), self.normalize(x), self.weight.view(1, -1, 1, 1))


def matmul1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
              channels_last: bool = False) -> torch.Tensor:
    """A 1×1 convolution as one matrix product: ``weight`` (O, C) or per sample (B, O, C).

    On the CPU this is about twice as fast as ``F.conv2d``, whose 1×1 path (and ``addmm``'s)
    writes the bias into the output in a separate slow broadcast pass before the product; here
    the bias is added in place afterwards. For one image ``x`` may be channels-last, and
    ``channels_last=True`` returns a channels-last result (the transposed product, no copy)."""
    b, c, h, w = x.shape
    if b == 1:
        w2 = weight if weight.dim() == 2 else weight[0]
        rows = x.permute(0, 2, 3, 1).reshape(h * w, c) if is_channels_last(x) else x.reshape(c, h * w).t()
        if channels_last:
            y = torch.mm(rows, w2.t())                                   # (HW, O)
            y = y if bias is None else y.add_(bias)
            return y.view(1, h, w, -1).permute(0, 3, 1, 2)
        y = torch.mm(w2, rows.t())                                       # (O, HW)
        y = y if bias is None else y.add_(bias[:, None])
        return y.view(1, -1, h, w)
    weight = weight.expand(b, -1, -1) if weight.dim() == 2 else weight
    y = torch.bmm(weight, x.reshape(b, c, h * w))
    y = y if bias is None else y.add_(bias.view(1, -1, 1))
    return y.view(b, -1, h, w)


def conv1x1(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a 1×1 ``nn.Conv2d`` (its parameters, the fast product)."""
    return matmul1x1(x, conv.weight.flatten(1), conv.bias)


def norm_conv1x1(norm: LayerNorm2d, conv: nn.Conv2d, x: torch.Tensor,
                 channels_last: bool = False) -> torch.Tensor:
    """``conv(norm(x))`` for a 1×1 conv, with the norm's affine folded into the conv's weights
    (W·diag(γ), W·β + b): the same function, two fewer passes over the feature map."""
    w = conv.weight.flatten(1)
    bias = torch.addmv(conv.bias, w, norm.bias) if conv.bias is not None else w @ norm.bias
    return matmul1x1(norm.normalize(x), w * norm.weight, bias, channels_last)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _SimpleGate.apply(x)
        x1, x2 = x.chunk(2, dim=1)
        return x1 * x2


class SimplifiedChannelAttention(nn.Module):
    """Global average pool -> 1×1 conv -> channel-wise scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(channels, channels, 1)

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample, per-channel scale (B, C, 1, 1)."""
        return self.conv(x.mean((2, 3), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale(x)


def scaled_conv1x1(conv: nn.Conv2d, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``conv(x * scale)`` for a 1×1 conv and a per-sample channel scale (B, C, 1, 1), with the
    scale folded into per-sample weights: one batched matrix product, no scaled copy of x."""
    weight = conv.weight.flatten(1).unsqueeze(0) * scale.view(x.shape[0], 1, -1)      # (B, O, C)
    return matmul1x1(x, weight, conv.bias)


def make_depthwise(channels: int, kernel_size: int, conv_type: str) -> nn.Module:
    """The spatial conv of an EPBlock: explainable (InterIR) or standard (ablation twin)."""
    if conv_type in EXPLAIN_TYPES:
        return ExplainConv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels,
                             attention_gain=attention_gain(conv_type, kernel_size))
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

    def spatial_mix(self, inp: torch.Tensor) -> torch.Tensor:
        """conv3(SCA(SimpleGate(conv2(conv1(norm1(x)))))), with the norm and the SCA folded
        into the 1×1 convs around them."""
        # One image: conv1 writes channels-last, so the depthwise conv runs channels-last (on the
        # CPU several times faster than on NCHW) and conv3 reads it back into NCHW, no copies.
        x = norm_conv1x1(self.norm1, self.conv1, inp, channels_last=inp.shape[0] == 1)
        x = self.gate(self.conv2(x))
        return scaled_conv1x1(self.conv3, x, self.sca.scale(x))

    def ffn(self, y: torch.Tensor) -> torch.Tensor:
        """conv5(SimpleGate(conv4(norm2(y))))."""
        return conv1x1(self.conv5, self.gate(norm_conv1x1(self.norm2, self.conv4, y)))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        y = torch.addcmul(inp, self.spatial_mix(inp), self.beta)   # inp + β·SpatialMix(inp)
        return torch.addcmul(y, self.ffn(y), self.gamma)           # y + γ·FFN(y)
