"""An optional veil estimate beside the solver (ours, not in the paper; ``docs/design.md``).

The paper's output is Î = IR + D (Sec. 3.1). Haze and rain accumulation add a smooth, low-
frequency veil to D that the solver's 3×3 convolutions at 1/4 scale see only locally, and the
shipped models misjudge the scene's brightness by about 9/255 on average
(``docs/model_sweep.md``). ``network.veil: pooled`` adds a small named module that reads the
degraded input at 1/32 scale the way the dark channel prior does (cell means and standard
deviations, the darkest value of the darkest channel, the brightest value) and predicts a smooth
per-channel offset V, added to every decode: Î_k = IR_k + D + V. Its last convolution starts at
zero, so a model warm-started with it is unchanged until it trains. Measured (session 10) and
not adopted: it did not lower the brightness error (``docs/model_sweep.md``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VEILS = ("none", "pooled")
CELL = 32           # input pixels per cell of the veil field (8 cells of the 4× unshuffled z)
N_FEATURES = 8      # cell mean (3) and std (3), darkest dark-channel value, brightest value


def cell_statistics(x: torch.Tensor, cell: int = CELL) -> torch.Tensor:
    """(B, 3, H, W) → (B, 8, ⌈H/cell⌉, ⌈W/cell⌉): per cell, each channel's mean and standard
    deviation, the minimum of the dark channel min_c x_c, and the maximum of max_c x_c."""
    mean = F.avg_pool2d(x, cell, ceil_mode=True)
    var = (F.avg_pool2d(x * x, cell, ceil_mode=True) - mean * mean).clamp_min(0)
    dark = -F.max_pool2d(-x.amin(1, keepdim=True), cell, ceil_mode=True)
    bright = F.max_pool2d(x.amax(1, keepdim=True), cell, ceil_mode=True)
    return torch.cat([mean, (var + 1e-8).sqrt(), dark, bright], dim=1)


class VeilEstimate(nn.Module):
    """V = Conv1×1([h, mean(h)]), h = two 3×3 convolutions of :func:`cell_statistics`,
    bilinearly upsampled to the input: a per-channel brightness offset field read from about
    160 px around each cell plus the whole image. Zero at init (identity on the output)."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.local = nn.Sequential(nn.Conv2d(N_FEATURES, hidden, 3, padding=1), nn.GELU(),
                                   nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU())
        self.out = nn.Conv2d(2 * hidden, 3, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_pad: torch.Tensor) -> torch.Tensor:
        h = self.local(cell_statistics(x_pad))
        g = h.mean((2, 3), keepdim=True).expand_as(h)
        v = self.out(torch.cat([h, g], dim=1))
        return F.interpolate(v, size=x_pad.shape[-2:], mode="bilinear", align_corners=False)
