"""InterIR (Sec. 3.1, Fig. 2): embed → init (Eq. 11) → n IPBlocks → final RESM → head, Î = IR + D."""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .epblock import CONV_TYPES
from .unfolding import F_FORMS, NORM_SCALES, RESM, InitModule, IPBlock
from .veil import VEILS, VeilEstimate

SCALE = 4  # the 4× PixelUnshuffle of the pipeline


class SolverStep(NamedTuple):
    """One solver iteration as the data term sees it: the new iterate I_{k+1}, the degradation
    matrices A_k, B_k its RESM used, and the embedded input z."""
    I: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    z: torch.Tensor

    def relative_residual(self) -> torch.Tensor:
        """``||A_k I_{k+1} B_k - z|| / ||z||`` per sample (float32), shape (batch,)."""
        r = (self.A @ self.I @ self.B - self.z).float().flatten(1)
        return r.norm(dim=1) / self.z.float().flatten(1).norm(dim=1).clamp_min(1e-12)

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's setting (Sec. 4.1: n = 16; C = 48 as DeepSN-Net).
    "paper": {"n_blocks": 16, "channels": 48, "kernel_size": 3},
    # The CPU models: two IPBlocks at the paper's width (checkpoints/interir-tiny); the shipped
    # default is this preset with n_blocks=6 (checkpoints/interir-n6). C = 48 keeps the 4×4
    # PixelUnshuffle lossless (3·4² = 48 values per cell); a narrower model (n = 4, C = 16,
    # session 1) could not even denoise the noise-only cases. n = 2 trains on one CPU core at
    # about 1.5 it/s (96², batch 8); n = 6 at about 0.5 it/s and serves a 512² image with its
    # trace in about 1 s on 2 vCPUs.
    "tiny": {"n_blocks": 2, "channels": 48, "kernel_size": 3},
}
DEFAULTS: dict[str, Any] = {"conv_type": "explain", "f_form": "additive", "eta": 0.01, "norm_scale": "unit"}
#: Options a config holds only when set away from their default, so the configs (and the weights
#: hashes of the reference sets) of models built before the option stay as they were.
OPTIONAL: dict[str, Any] = {"veil": "none"}


def make_config(preset: str = "tiny", **overrides: Any) -> dict[str, Any]:
    """A full, validated model config from a preset plus overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = {"preset": preset, **PRESETS[preset], **DEFAULTS}
    unknown = set(overrides) - set(cfg) - set(OPTIONAL)
    if unknown:
        raise ValueError(f"unknown model option(s): {', '.join(sorted(unknown))}")
    cfg.update(overrides)
    if not (isinstance(cfg["n_blocks"], int) and cfg["n_blocks"] >= 1):
        raise ValueError("n_blocks must be an integer >= 1")
    if not (isinstance(cfg["channels"], int) and cfg["channels"] >= 1):
        raise ValueError("channels must be an integer >= 1")
    if not (isinstance(cfg["kernel_size"], int) and cfg["kernel_size"] % 2 == 1):
        raise ValueError("kernel_size must be an odd integer")
    if cfg["conv_type"] not in CONV_TYPES:
        raise ValueError(f"conv_type must be one of {CONV_TYPES}")
    if cfg["f_form"] not in F_FORMS:
        raise ValueError(f"f_form must be one of {F_FORMS}")
    if cfg["norm_scale"] not in NORM_SCALES:
        raise ValueError(f"norm_scale must be one of {NORM_SCALES}")
    if cfg.get("veil", "none") not in VEILS:
        raise ValueError(f"veil must be one of {VEILS}")
    for key, default in OPTIONAL.items():
        if cfg.get(key) == default:
            del cfg[key]
    cfg["eta"] = float(cfg["eta"])
    return cfg


class InterIR(nn.Module):
    """The InterIR network. ``forward(x)``: (B, 3, H, W) in [0, 1], any H, W ≥ 1 → same shape."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        c, k = config["channels"], config["kernel_size"]
        kw = dict(kernel_size=k, conv_type=config["conv_type"])
        self.embed = nn.Sequential(nn.PixelUnshuffle(SCALE), nn.Conv2d(3 * SCALE ** 2, c, 3, padding=1))
        norm_scale = config.get("norm_scale", "unit")   # configs written before the option: unit
        self.init = InitModule(c, norm_scale)
        self.blocks = nn.ModuleList(
            IPBlock(c, f_form=config["f_form"], eta=config["eta"], norm_scale=norm_scale, **kw)
            for _ in range(config["n_blocks"]))
        self.final_resm = RESM(c, f_form=config["f_form"], eta=config["eta"], **kw)
        self.head = nn.Sequential(nn.Conv2d(c, 3 * SCALE ** 2, 3, padding=1), nn.PixelShuffle(SCALE))
        # ours, optional: a smooth brightness offset read from the input (interir/model/veil.py)
        self.veil = VeilEstimate() if config.get("veil", "none") == "pooled" else None

    @staticmethod
    def pad(x: torch.Tensor) -> torch.Tensor:
        """Pad H, W up to multiples of 4 (reflect; replicate where the image is too small)."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % SCALE, (-w) % SCALE
        if ph == 0 and pw == 0:
            return x
        mode = "reflect" if (ph < h and pw < w) else "replicate"
        return F.pad(x, (0, pw, 0, ph), mode=mode)

    def decode(self, I: torch.Tensor, x_pad: torch.Tensor) -> torch.Tensor:
        """Output head: Î = IR + D with IR = PixelShuffle(Conv3×3(I)) (+ V with ``veil: pooled``)."""
        out = self.head(I) + x_pad
        return out if self.veil is None else out + self.veil(x_pad)

    def unfold_steps(self, x_pad: torch.Tensor) -> Iterator[SolverStep]:
        """Run the solver on a padded input; after every RESM (n + 1 times) yield I_{k+1} with
        the A_k, B_k that step used and the embedded input z."""
        z = self.embed(x_pad)
        I, A, B, Lambda = self.init(z)
        for block in self.blocks:
            A_k, B_k = A, B
            I, A, B, Lambda = block(I, A, B, Lambda, z)
            yield SolverStep(I, A_k, B_k, z)
        yield SolverStep(self.final_resm(I, A, B, Lambda, z), A, B, z)

    def unfold(self, x_pad: torch.Tensor) -> Iterator[torch.Tensor]:
        """Run the solver on a padded input and yield I_{k+1} after every RESM (n + 1 values)."""
        for step in self.unfold_steps(x_pad):
            yield step.I

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        h, w = x.shape[-2:]
        x_pad = self.pad(x)
        for I in self.unfold(x_pad):
            pass
        return self.decode(I, x_pad)[..., :h, :w]

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Early-exit decodes after every RESM: n + 1 images like ``x``; the last is ``forward(x)``.

        For deep supervision (a loss on every iteration); the trace decodes lazily instead."""
        self._check_input(x)
        h, w = x.shape[-2:]
        x_pad = self.pad(x)
        return [self.decode(I, x_pad)[..., :h, :w] for I in self.unfold(x_pad)]

    def stages_and_residuals(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """:meth:`stages` plus each sample's relative data residual after every iteration,
        ``||A_k I_{k+1} B_k - z|| / ||z||`` as a (batch, n + 1) tensor (the quantity the
        evaluation reports from a trace; for the descent option of training)."""
        self._check_input(x)
        h, w = x.shape[-2:]
        x_pad = self.pad(x)
        images, residuals = [], []
        for step in self.unfold_steps(x_pad):
            images.append(self.decode(step.I, x_pad)[..., :h, :w])
            residuals.append(step.relative_residual())
        return images, torch.stack(residuals, dim=1)

    def resms(self) -> list[RESM]:
        """The n + 1 RESMs in order (one per recorded iteration)."""
        return [b.resm for b in self.blocks] + [self.final_resm]


def build_model(preset: str = "tiny", **overrides: Any) -> InterIR:
    """Build a freshly initialised InterIR from a preset (``"paper"`` or ``"tiny"``)."""
    return InterIR(make_config(preset, **overrides))
