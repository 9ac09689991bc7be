"""Training loss of the paper (Eq. 2): ``L = L1(Î, I) + λ·|F(Î) − F(I)|₁`` with λ = 0.1.

``F`` is the 2-D FFT of each image channel. We use ``torch.fft.rfft2`` (the one-sided spectrum
of a real image, which holds all its information; ``fft2`` would count the mirrored half twice),
unnormalised (``norm="backward"``, as MIMO-UNet, which the paper cites for λ), and take the
**mean absolute value of the complex difference** ``|F(Î) − F(I)|`` over all batch, channel and
frequency entries. Both terms are computed in float32, also under bf16 autocast.

Deep supervision (a training option, not in the paper): :class:`DeepSupervisionLoss` applies the
same loss to each early-exit decode of ``InterIR.stages`` (k = 0..n) and sums with weights w_k.

Brightness term (a training option, not in the paper): ``brightness · mean_{b,c} |mean_hw(Î) −
mean_hw(I)|``, the L1 distance of the per-channel image means. The L1 and FFT terms already
contain the mean (the FFT's DC entry), but with the weight of one pixel / one frequency among
thousands; a model that cannot tell how much veil an image holds then leaves a per-image
brightness error that dominates its squared error. The term gives that error its own weight.
It is part of the base loss, so with deep supervision every early exit gets it.

PSNR term (a training option, not in the paper): ``psnr · mean_b 10·log10(mse_b + 1e-8)``, minus
the PSNR (dB) of each sample averaged over the batch: the quantity the evaluation reports, as
NAFNet trains with. Per pixel its gradient is ``8.69·d / mse_b`` (times 1/BCHW) against L1's
``sign(d)``, so a weight of about ``sqrt(mse)/8.69`` (0.0065 at 25 dB) gives a typical pixel the
pull L1 gives it. Unlike L1, whose optimum over an ambiguous input is the median, it pulls towards
the mean, and it weighs an image-wide offset (a brightness error) by its square.

Descent hinges (training options, not in the paper): :class:`IterationHingeLoss` adds, per
sample, a penalty on every iteration that makes the early-exit image worse (its PSNR drops) or the
relative data residual ||A_k I_{k+1} B_k - z|| / ||z|| rise. An unrolled solver is expected to
descend its objective at every step; deep supervision alone rewards a good image at each exit
but not a better one than the exit before, and leaves the data term free. The hinges are zero
when every step descends (with a small margin), so they only act on the steps that do not.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fft_l1", "mean_l1", "neg_psnr", "RestorationLoss", "DeepSupervisionLoss", "IterationHingeLoss", "psnr_drops"]

#: Margins of the hinges: a step must gain at least this much PSNR (dB) / lower the relative
#: residual by at least this much (the evaluation allows a 0.05 dB loss and asks for a strictly
#: lower residual).
MONOTONE_MARGIN_DB = 0.01
DESCENT_MARGIN = 1e-3


def fft_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute value of the complex difference of the rfft2 spectra (float32)."""
    diff = torch.fft.rfft2(pred.float(), norm="backward") - torch.fft.rfft2(target.float(),
                                                                              norm="backward")
    return diff.abs().mean()


def mean_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over batch and channels of |mean_hw(pred) − mean_hw(target)| (float32)."""
    return (pred.float().mean((-2, -1)) - target.float().mean((-2, -1))).abs().mean()


def _sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) mean squared error of each sample (float32)."""
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


def neg_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 10·log10(mse + 1e-8) per sample: minus its PSNR in dB (float32)."""
    return 10.0 * torch.log10(_sample_mse(pred, target) + 1e-8).mean()


class RestorationLoss(torch.nn.Module):
    """``l1 * L1(pred, target) + fft * fft_l1(pred, target) [+ brightness * mean_l1(pred,
    target)] [+ psnr * neg_psnr(pred, target)]``; returns (total, l1, fft) (the brightness and
    PSNR terms are in the total only)."""

    def __init__(self, l1: float = 1.0, fft: float = 0.1, brightness: float = 0.0, psnr: float = 0.0):
        super().__init__()
        if brightness < 0:
            raise ValueError(f"brightness weight must be >= 0, got {brightness}")
        if psnr < 0:
            raise ValueError(f"psnr weight must be >= 0, got {psnr}")
        self.w_l1, self.w_fft, self.w_mean, self.w_psnr = float(l1), float(fft), float(brightness), float(psnr)

    def forward(self, pred: torch.Tensor, target: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pred, target = pred.float(), target.float()
        l1 = F.l1_loss(pred, target)
        fft = fft_l1(pred, target) if self.w_fft else torch.zeros((), device=pred.device)
        total = self.w_l1 * l1 + self.w_fft * fft
        if self.w_mean:
            total = total + self.w_mean * mean_l1(pred, target)
        if self.w_psnr:
            total = total + self.w_psnr * neg_psnr(pred, target)
        return total, l1.detach(), fft.detach()


class DeepSupervisionLoss(torch.nn.Module):
    """``Σ_k w_k · loss(stages[k], target)`` over the n + 1 early exits; returns (total, l1, fft)
    with l1 and fft weighted the same way, so ``total = l1_weight·l1 + fft_weight·fft`` still
    holds. Exits with weight 0 are skipped; ``weights`` are used as given (the config
    normalises them to sum to 1)."""

    def __init__(self, loss: torch.nn.Module, weights: list[float]):
        super().__init__()
        if not weights or any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ValueError(f"weights must be non-negative with one > 0, got {weights}")
        self.loss, self.weights = loss, [float(w) for w in weights]

    def forward(self, stages: list[torch.Tensor] | tuple[torch.Tensor, ...], target: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if len(stages) != len(self.weights):
            raise ValueError(f"{len(stages)} early exits for {len(self.weights)} weights")
        parts = [(w, self.loss(s, target)) for w, s in zip(self.weights, stages) if w > 0]
        return tuple(sum(w * t[i] for w, t in parts) for i in range(3))  # type: ignore[return-value]


def psnr_drops(stages: list[torch.Tensor] | tuple[torch.Tensor, ...], target: torch.Tensor
               ) -> torch.Tensor:
    """PSNR(stage k−1) − PSNR(stage k) in dB per sample and step, shape (batch, n): positive where
    an iteration makes the image worse (unclipped images, float32)."""
    mse = torch.stack([_sample_mse(s, target) for s in stages], 1)
    psnr = -10.0 * torch.log10(mse.clamp_min(1e-10))
    return psnr[:, :-1] - psnr[:, 1:]


class IterationHingeLoss(torch.nn.Module):
    """``base(stages, target) + monotone · mean_b Σ_k relu(drop_k + m) + descent · mean_b Σ_k
    relu(r_{k+1} − r_k + m')`` where drop_k is :func:`psnr_drops` (dB) and r the relative data
    residuals from ``InterIR.stages_and_residuals``. Input: ``(stages, residuals)``; returns
    (total, l1, fft) with l1 and fft those of ``base`` (the hinges are in the total only)."""

    def __init__(self, base: torch.nn.Module, monotone: float = 0.0, descent: float = 0.0,
                 monotone_margin_db: float = MONOTONE_MARGIN_DB, descent_margin: float = DESCENT_MARGIN):
        super().__init__()
        if monotone < 0 or descent < 0:
            raise ValueError(f"hinge weights must be >= 0, got monotone={monotone}, descent={descent}")
        self.base, self.monotone, self.descent = base, float(monotone), float(descent)
        self.monotone_margin_db, self.descent_margin = float(monotone_margin_db), float(descent_margin)

    def forward(self, out: tuple[list[torch.Tensor], torch.Tensor], target: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stages, residuals = out
        total, l1, fft = self.base(stages, target)
        if self.monotone:
            hinge = torch.relu(psnr_drops(stages, target) + self.monotone_margin_db)
            total = total + self.monotone * hinge.sum(1).mean()
        if self.descent:
            rises = residuals[:, 1:] - residuals[:, :-1]
            total = total + self.descent * torch.relu(rises + self.descent_margin).sum(1).mean()
        return total, l1, fft
