"""One iteration of the improved semi-smooth Newton solver as network modules (Sec. 3.3).

Shapes: I, Λ, z: (B, C, h, w) feature maps (z is the embedded degraded image, the "D" of
Eqs. 11-14); A: (B, C, h, h) and B: (B, C, w, w), one matrix pair per channel, so ``A @ I @ B``
is a batched matrix product and non-square inputs work.

Interpretation notes (see docs/design.md and the model card):
- ⊕/⊖ are element-wise, ⊛ an element-wise product, ``I1 = I0 ⊗ −ηH`` reads ``I0 − ηH`` with
  a learnable η (init 0.01).
- The data term of F follows Eq. 31/28 (Aᵀ(A·I·B − z)Bᵀ, the gradient of ½‖A·I·B − z‖²);
  Eq. 12 prints the opposite sign, which would make the Newton step ascend the data term.
- H follows Eq. 12: EP(1 ⊖ S(Λ ⊕ EP(I))) ⊛ EP(F), reusing S(Λ ⊕ EP(I)) from F (as Eq. 23 does).
- S(·) ("Convs") is 1×1 conv → ReLU → 1×1 conv; Wκ comes from a small network on the input.
"""
from __future__ import annotations

import torch
from torch import nn

from .epblock import EPBlock, conv1x1

F_FORMS = ("additive", "subtractive")


def frob_normalize(m: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Divide each (batch, channel) matrix by its Frobenius norm (the paper's Norm / ‖·‖₂)."""
    return m / (m.flatten(2).norm(dim=-1)[..., None, None] + eps)


NORM_SCALES = ("unit", "learned", "residual")


class MatrixNorm(nn.Module):
    """The paper's Norm(·) of Eqs. 11 and 13: each (batch, channel) matrix divided by its
    Frobenius norm. Two readings of ours beside the paper's ``scale="unit"``:

    - ``"learned"``: a learned per-channel gain ρ (init 1, so a fresh model is unchanged),
      A = ρ·M/‖M‖. With unit-norm A and B, A·I·B is about a rank-one projection of I and the data
      term ‖A·I·B − z‖ cannot be descended (measured: the relative residual of the shipped n = 2
      model rises over the iterations); ρ lets A·I·B match z's scale, but not its rank.
    - ``"residual"``: identity plus a learned low-rank part, A = 1 + γ·M/‖M‖ with a per-channel
      γ (init 0, so A and B start as the identity and A·I·B = I). The matrices the DMUM builds
      (Eq. 13) have effective rank ≈ 1; this reading keeps A full rank, so A·I·B can come close
      to z and the data term means "explain the input", with the degradation as the low-rank
      departure from the identity.
    """

    def __init__(self, channels: int, scale: str = "unit") -> None:
        super().__init__()
        if scale not in NORM_SCALES:
            raise ValueError(f"norm_scale must be one of {NORM_SCALES}, got {scale!r}")
        self.scale = scale
        init = {"unit": None, "learned": 1.0, "residual": 0.0}[scale]
        self.gain = None if init is None else nn.Parameter(torch.full((channels,), init))

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        m = frob_normalize(m)
        if self.gain is None:
            return m
        m = m * self.gain.view(1, -1, 1, 1).to(m.dtype)
        if self.scale == "residual":
            m = m + torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
        return m


class Shrinkage(nn.Module):
    """S(·), the learned shrinkage ("Convs"): 1×1 conv, ReLU, 1×1 conv."""

    def __init__(self, channels: int, expand: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels * expand, 1)
        self.conv2 = nn.Conv2d(channels * expand, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv1x1(self.conv2, torch.relu_(conv1x1(self.conv1, x)))


class KappaWeight(nn.Module):
    """Wκ: per-channel weights from the current input (GAP → MLP → 2·sigmoid, starts at 1)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.sigmoid(self.fc2(torch.relu_(self.fc1(x.mean((2, 3), keepdim=True)))))


class InitModule(nn.Module):
    """Eq. 11: I0 = z, Λ0 = f1(I0) + I0, A0 = Norm(I0 I0ᵀ), B0 = Norm(I0ᵀ I0)."""

    def __init__(self, channels: int, norm_scale: str = "unit") -> None:
        super().__init__()
        self.f1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm_a = MatrixNorm(channels, norm_scale)
        self.norm_b = MatrixNorm(channels, norm_scale)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        I0 = z
        Lambda0 = self.f1(I0) + I0
        A0 = self.norm_a(I0 @ I0.mT)
        B0 = self.norm_b(I0.mT @ I0)
        return I0, A0, B0, Lambda0


class RESM(nn.Module):
    """Restoration equation solver module (Eq. 12): one semi-smooth Newton step on I."""

    def __init__(self, channels: int, kernel_size: int = 3, conv_type: str = "explain",
                 f_form: str = "additive", eta: float = 0.01) -> None:
        super().__init__()
        if f_form not in F_FORMS:
            raise ValueError(f"f_form must be one of {F_FORMS}, got {f_form!r}")
        self.f_form = f_form
        self.ep_v = EPBlock(channels, kernel_size, conv_type)       # V(I) = EP(I)
        self.shrink = Shrinkage(channels)                           # S(Λ ⊕ EP(I))
        self.kappa = KappaWeight(channels) if f_form == "additive" else None  # Wκ
        self.ep_f = EPBlock(channels, kernel_size, conv_type)       # outer EP of F
        self.ep_h_gate = EPBlock(channels, kernel_size, conv_type)  # EP(1 ⊖ S(·))
        self.ep_h_f = EPBlock(channels, kernel_size, conv_type)     # EP(F)
        self.eta = nn.Parameter(torch.tensor(float(eta)))

    @staticmethod
    def data_gradient(I: torch.Tensor, A: torch.Tensor, B: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Aᵀ(A·I·B − z)Bᵀ, the gradient of ½‖A·I·B − z‖²."""
        return A.mT @ (A @ I @ B).sub_(z) @ B.mT

    def F(self, I: torch.Tensor, A: torch.Tensor, B: torch.Tensor, Lambda: torch.Tensor,
          z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # Eq. 31 (additive) / Eq. 28
        u = Lambda + self.ep_v(I)                                   # Λ ⊕ EP(I)
        s = self.shrink(u)                                          # Convs(Λ ⊕ EP(I))
        if self.f_form == "additive":
            prior = self.ep_f(torch.addcmul(u, self.kappa(u), s))   # EP(EP(I) ⊕ Λ ⊕ Wκ·Convs(·))
        else:
            prior = self.ep_f(u - s)
        return self.data_gradient(I, A, B, z).add_(prior), s

    def H(self, F_I: torch.Tensor, A: torch.Tensor, B: torch.Tensor, s: torch.Tensor) -> torch.Tensor:  # Eq. 12
        return torch.addcmul(A.mT @ A @ F_I @ B @ B.mT, self.ep_h_gate(1.0 - s), self.ep_h_f(F_I))

    def forward(self, I: torch.Tensor, A: torch.Tensor, B: torch.Tensor, Lambda: torch.Tensor,
                z: torch.Tensor) -> torch.Tensor:
        F_I, s = self.F(I, A, B, Lambda, z)
        return torch.addcmul(I, self.H(F_I, A, B, s), self.eta, value=-1.0)  # Eq. 12/24: I1 = I0 − ηH(I0)


class DMUM(nn.Module):
    """Degradation matrix update module (Eq. 13)."""

    def __init__(self, channels: int, kernel_size: int = 3, conv_type: str = "explain",
                 norm_scale: str = "unit") -> None:
        super().__init__()
        self.ep_a = EPBlock(2 * channels, kernel_size, conv_type)
        self.ep_b = EPBlock(2 * channels, kernel_size, conv_type)
        self.norm_a = MatrixNorm(channels, norm_scale)
        self.norm_b = MatrixNorm(channels, norm_scale)

    def update_A(self, I: torch.Tensor, B: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # Eq. 13, rows 1-2
        a0, a1 = self.ep_a(torch.cat([I @ B, z], dim=1)).chunk(2, dim=1)
        return self.norm_a(a0 @ a1.mT)

    def update_B(self, I: torch.Tensor, A: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # Eq. 13, rows 3-4
        b0, b1 = self.ep_b(torch.cat([A @ I, z], dim=1)).chunk(2, dim=1)
        return self.norm_b(b0.mT @ b1)

    def forward(self, I: torch.Tensor, B: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        A_new = self.update_A(I, B, z)
        return A_new, self.update_B(I, A_new, z)


class MUM(nn.Module):
    """Multiplier update module (Eq. 14): Λ1 = Λ0 ⊕ EP(I1) ⊖ S(Λ0 ⊕ EP(I1))."""

    def __init__(self, channels: int, kernel_size: int = 3, conv_type: str = "explain") -> None:
        super().__init__()
        self.ep = EPBlock(channels, kernel_size, conv_type)
        self.shrink = Shrinkage(channels)

    def forward(self, I: torch.Tensor, Lambda: torch.Tensor) -> torch.Tensor:  # Eq. 14
        u = Lambda + self.ep(I)
        return u - self.shrink(u)


class IPBlock(nn.Module):
    """Interpretability block: RESM (I), DMUM (A, B), MUM (Λ)."""

    def __init__(self, channels: int, kernel_size: int = 3, conv_type: str = "explain",
                 f_form: str = "additive", eta: float = 0.01, norm_scale: str = "unit") -> None:
        super().__init__()
        self.resm = RESM(channels, kernel_size, conv_type, f_form, eta)
        self.dmum = DMUM(channels, kernel_size, conv_type, norm_scale)
        self.mum = MUM(channels, kernel_size, conv_type)

    def forward(self, I: torch.Tensor, A: torch.Tensor, B: torch.Tensor, Lambda: torch.Tensor,
                z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        I = self.resm(I, A, B, Lambda, z)
        A, B = self.dmum(I, B, z)
        Lambda = self.mum(I, Lambda)
        return I, A, B, Lambda
