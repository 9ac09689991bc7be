"""Synthetic haze, rain and noise (the paper's Table 6 degradation levels).

Everything is vectorised over the batch, runs on any device and draws all randomness from
the given :class:`torch.Generator` (same seed -> bit-identical output on CPU). Randomness is
drawn on the generator's device and moved to the image's device, so a CPU generator can
drive a GPU batch.

Levels (docs/design.md "Degradation levels"):

* haze ``h`` in [0, 150]: atmospheric scattering ``I*t + a*(1-t)``, ``t = exp(-beta*d)``,
  ``beta = BETA_MAX * h / 150``, ``d`` a smooth random depth proxy in [0.3, 1] (a bicubic
  upsampled low-resolution random field mixed with a vertical gradient, far at the top),
  ``a`` a near-white, slightly tinted airlight drawn per sample.
* rain ``r`` in [0, 300]: sparse random seeds (density proportional to ``r``) motion-blurred
  along a per-image angle (within +-30 degrees of vertical) and length (10-40 px at 256^2,
  scaled with sqrt of the image size), blended additively and clipped.
* noise ``s`` in [0, 50]: additive Gaussian with sigma ``s / 255``.

Applied in the order haze -> rain -> noise. A level of 0 leaves the image untouched by that
component (bit-exact when all three are 0).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InterIRError

COMBOS: tuple[str, ...] = ("haze_rain_noise", "haze_rain", "haze_noise", "rain_noise",
                           "haze", "rain", "noise")
RANGES: dict[str, tuple[float, float]] = {"haze": (0.0, 150.0), "rain": (0.0, 300.0),
                                          "noise": (0.0, 50.0)}
COMPONENTS: tuple[str, ...] = ("haze", "rain", "noise")

#: Scattering coefficient at the top haze level (h = 150): t = exp(-BETA_MAX * d), so the
#: farthest point keeps about 20 % of the scene and the nearest about 62 %.
BETA_MAX = 1.6
#: Fraction of pixels that seed a rain streak at r = 300 (the count is proportional to r).
RAIN_SEED_DENSITY = 0.008
#: Streak length range (pixels) at 256x256, and the largest tilt from vertical (degrees).
RAIN_LENGTH = (10.0, 40.0)
RAIN_MAX_ANGLE = 30.0
#: Streak brightness multiplier range per image (before clipping).
RAIN_INTENSITY = (0.55, 0.9)


def combo_levels(combo: str) -> tuple[bool, bool, bool]:
    """Which of (haze, rain, noise) are active in ``combo`` (one of :data:`COMBOS`)."""
    if combo not in COMBOS:
        raise InterIRError(f"unknown degradation combo {combo!r}; use one of {', '.join(COMBOS)}")
    parts = combo.split("_")
    return ("haze" in parts, "rain" in parts, "noise" in parts)


def _gen_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    return generator.device if generator is not None else fallback


def sample_levels(batch: int, combos: Sequence[str] = COMBOS,
                  generator: torch.Generator | None = None, device: str | torch.device = "cpu",
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw per-sample levels: returns ``(haze, rain, noise, combo_idx)``, each of shape (B,).

    The combo is uniform among ``combos``; its active components are uniform in their
    :data:`RANGES`, inactive ones exactly 0. ``combo_idx`` indexes :data:`COMBOS`.
    """
    combos = list(combos)
    if not combos:
        raise InterIRError("sample_levels: the list of combos is empty")
    active = torch.tensor([combo_levels(c) for c in combos], dtype=torch.bool)  # (n, 3)
    lo = torch.tensor([RANGES[c][0] for c in COMPONENTS])
    hi = torch.tensor([RANGES[c][1] for c in COMPONENTS])
    gdev = _gen_device(generator, torch.device("cpu"))
    pick = torch.randint(len(combos), (batch,), generator=generator, device=gdev).cpu()
    u = torch.rand(batch, 3, generator=generator, device=gdev).cpu()
    levels = torch.where(active[pick], lo + u * (hi - lo), torch.zeros(()))
    combo_idx = torch.tensor([COMBOS.index(c) for c in combos], dtype=torch.long)[pick]
    levels = levels.to(device)
    return levels[:, 0], levels[:, 1], levels[:, 2], combo_idx.to(device)


def _levels(value: torch.Tensor | float, batch: int, device: torch.device, dtype: torch.dtype,
            name: str) -> torch.Tensor:
    """Scalar or (B,) level -> (B,) tensor on ``device``; negative values are an error."""
    if isinstance(value, torch.Tensor):
        t = value.detach().to(device=device, dtype=dtype)
        if t.ndim == 0:
            t = t.expand(batch)
        elif t.shape != (batch,):
            raise ValueError(f"{name} level must be a scalar or shape ({batch},), "
                             f"got {tuple(t.shape)}")
        return t.clamp_min(0)
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise InterIRError(f"{name} level must be a finite number >= 0, got {value!r}")
    return torch.full((batch,), v, device=device, dtype=dtype)


def _rand(shape: Sequence[int], generator: torch.Generator | None, gdev: torch.device,
          device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, device=gdev, dtype=dtype).to(device)


def _bspline_matrix(n_out: int, n_nodes: int, device: torch.device, dtype: torch.dtype
                    ) -> torch.Tensor:
    """(n_out, n_nodes + 2) cubic B-spline interpolation weights: a smooth upsampling of a
    low-resolution field (with one extra node each side) as a matrix product."""
    pos = torch.linspace(0, n_nodes - 1, n_out, device=device, dtype=dtype).view(-1, 1)
    j = torch.arange(-1, n_nodes + 1, device=device, dtype=dtype).view(1, -1)
    t = (pos - j).abs()
    w = torch.where(t < 1, (4 - 6 * t ** 2 + 3 * t ** 3) / 6,
                    torch.where(t < 2, (2 - t).clamp_min(0) ** 3 / 6, torch.zeros_like(t)))
    return w / w.sum(dim=1, keepdim=True)


def _depth_proxy(b: int, hh: int, ww: int, generator: torch.Generator | None,
                 gdev: torch.device, dev: torch.device, dt: torch.dtype) -> torch.Tensor:
    """Smooth random depth (B, 1, H, W) in [0.3, 1]: a B-spline upsampled low-resolution random
    field mixed with a vertical gradient (top = far) with a random weight per sample."""
    gh = max(2, min(6, round(4 * hh / max(hh, ww))))
    gw = max(2, min(6, round(4 * ww / max(hh, ww))))
    field = _rand((b, gh + 2, gw + 2), generator, gdev, dev, dt)
    d = _bspline_matrix(hh, gh, dev, dt) @ field @ _bspline_matrix(ww, gw, dev, dt).T
    lo = d.amin(dim=(1, 2), keepdim=True)
    hi = d.amax(dim=(1, 2), keepdim=True)
    d = ((d - lo) / (hi - lo).clamp_min(1e-6)).unsqueeze(1)
    g = 0.3 + 0.5 * _rand((b, 1, 1, 1), generator, gdev, dev, dt)
    ramp = torch.linspace(1.0, 0.0, hh, device=dev, dtype=dt).view(1, 1, hh, 1)
    return 0.3 + 0.7 * ((1 - g) * d + g * ramp)


def _haze(x: torch.Tensor, h: torch.Tensor, generator: torch.Generator | None,
          gdev: torch.device) -> torch.Tensor:
    b, _, hh, ww = x.shape
    dev, dt = x.device, x.dtype
    d = _depth_proxy(b, hh, ww, generator, gdev, dev, dt)
    # airlight: near white, slightly tinted per sample
    base = 0.8 + 0.2 * _rand((b, 1, 1, 1), generator, gdev, dev, dt)
    tint = 0.06 * (_rand((b, 3, 1, 1), generator, gdev, dev, dt) - 0.5)
    a = (base + tint).clamp(0, 1)
    beta = (BETA_MAX / RANGES["haze"][1]) * h.view(b, 1, 1, 1)
    t = torch.exp(-beta * d)
    # x*t + a*(1-t); exactly x where h == 0 (t == 1)
    return torch.addcmul(a * (1 - t), x, t)


def _line_kernels(length: torch.Tensor, theta: torch.Tensor, ry: int, rx: int) -> torch.Tensor:
    """Anti-aliased line kernels (B, 1, 2ry+1, 2rx+1), centred, of the given lengths (px) and
    angles from vertical (radians), each normalised to sum 1."""
    dev, dt = length.device, length.dtype
    ys = torch.arange(-ry, ry + 1, device=dev, dtype=dt).view(1, -1, 1)
    xs = torch.arange(-rx, rx + 1, device=dev, dtype=dt).view(1, 1, -1)
    s, c = torch.sin(theta).view(-1, 1, 1), torch.cos(theta).view(-1, 1, 1)
    along = xs * s + ys * c
    perp = (xs * c - ys * s).abs()
    half = (length / 2).view(-1, 1, 1)
    w = (1 - perp).clamp_min(0) * (half + 0.5 - along.abs()).clamp(0, 1)
    w = w / w.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return w.unsqueeze(1)


#: Kernel columns per conv2d call on the CPU (see :func:`_grouped_conv`).
_CPU_CONV_COLUMNS = 13


def _grouped_conv(y: torch.Tensor, k: torch.Tensor, target_groups: int = 16) -> torch.Tensor:
    """Per-sample 'same' 2-D correlation of ``y`` (B, H, W) with ``k`` (B, 1, Ky, Kx), odd
    sizes, zero padding: grouped conv2d with the batch folded into the groups.

    Two exact rearrangements keep PyTorch's CPU depthwise path fast (measured on a 1-thread
    Xeon, torch 2.13): small batches are cut into horizontal strips (with Ky//2-row halos) that
    become extra groups (one 256^2 image: 11 -> 0.8 ms), and on the CPU kernels wider than 13
    columns are applied as several column slices whose results are summed (the fast path takes
    at most 13 columns; a 1024^2 image with a 43x23 kernel: 1.6 s -> 0.09 s).
    """
    b, hh, ww = y.shape
    ky, kx = k.shape[-2], k.shape[-1]
    ry, rx = ky // 2, kx // 2
    strips = max(1, min(math.ceil(target_groups / b), hh // 16))
    sh = math.ceil(hh / strips)
    yp = F.pad(y, (rx, rx, ry, ry + strips * sh - hh))  # (B, S*sh + 2ry, W + 2rx)
    if strips > 1:
        st = yp.unfold(1, sh + 2 * ry, sh)  # (B, S, W + 2rx, sh + 2ry)
        st = st.permute(0, 1, 3, 2).reshape(1, b * strips, sh + 2 * ry, ww + 2 * rx)
        k = k.repeat_interleave(strips, 0)
    else:
        st = yp.unsqueeze(0)
    step = _CPU_CONV_COLUMNS if y.device.type == "cpu" else kx
    out = None
    for c0 in range(0, kx, step):
        c1 = min(kx, c0 + step)
        o = F.conv2d(st[..., c0:c0 + ww + c1 - c0 - 1], k[..., c0:c1], groups=b * strips)
        out = o if out is None else out + o
    return out.view(b, strips * sh, ww)[:, :hh]


def rain_length_scale(height: int, width: int) -> float:
    """Streak lengths are RAIN_LENGTH at 256 px (short side) and scale with its square root."""
    return min(3.0, max(0.2, math.sqrt(min(height, width) / 256.0)))


def _rain_layer(b: int, hh: int, ww: int, r: torch.Tensor, generator: torch.Generator | None,
                gdev: torch.device, dev: torch.device, dt: torch.dtype) -> torch.Tensor:
    """The additive rain layer (B, 1, H, W), >= 0; exactly 0 where r == 0."""
    scale = rain_length_scale(hh, ww)
    lo, hi = RAIN_LENGTH
    length = (lo + (hi - lo) * _rand((b,), generator, gdev, dev, dt)) * scale
    length = length.clamp_min(2.0)
    theta = math.radians(RAIN_MAX_ANGLE) * (2 * _rand((b,), generator, gdev, dev, dt) - 1)
    alpha = RAIN_INTENSITY[0] + (RAIN_INTENSITY[1] - RAIN_INTENSITY[0]) * _rand(
        (b,), generator, gdev, dev, dt)
    # seeds: round(p*H*W) random positions (p proportional to r; exact count dithered),
    # brightness 0.4..1; positions that collide keep the brighter seed
    npix = hh * ww
    expected = (RAIN_SEED_DENSITY / RANGES["rain"][1]) * r * npix
    count = torch.floor(expected + _rand((b,), generator, gdev, dev, dt))
    kmax = max(1, int(math.ceil(float(expected.max()))) + 1)
    pos = torch.randint(npix, (b, kmax), generator=generator, device=gdev).to(dev)
    val = 0.4 + 0.6 * _rand((b, kmax), generator, gdev, dev, dt)
    val = torch.where(torch.arange(kmax, device=dev).view(1, -1) < count.view(-1, 1), val,
                      torch.zeros((), device=dev, dtype=dt))
    seeds = torch.zeros(b, npix, device=dev, dtype=dt).scatter_reduce_(1, pos, val, "amax")
    # Motion blur: two passes of a half-length line kernel = a line of the full length with a
    # tapered (triangular) brightness profile. Each pass is one grouped conv2d with the batch
    # folded into the groups; half-length kernels stay narrow, which keeps the CPU conv fast.
    half = length / 2
    ry = int(math.ceil(float(half.max()) / 2)) + 1
    rx = int(math.ceil(float((half / 2 * torch.sin(theta).abs()).max()))) + 1
    k = _line_kernels(half, theta, ry, rx).to(dt)
    y = _grouped_conv(_grouped_conv(seeds.view(b, hh, ww), k), k)
    # the two unit-mass passes spread a seed's mass over a triangle of peak ~1/half: scale by
    # half so a streak's core is about as bright as its seed (times the per-image alpha)
    layer = y.view(b, 1, hh, ww) * (half * alpha).view(b, 1, 1, 1)
    return layer.clamp_min(0)


def degrade(clean: torch.Tensor, haze: torch.Tensor | float = 0, rain: torch.Tensor | float = 0,
            noise: torch.Tensor | float = 0, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """Apply haze -> rain -> noise to ``clean`` (B,3,H,W) in [0,1]; returns the same shape,
    device and dtype, clipped to [0,1]. Levels are scalars or (B,) tensors."""
    if not isinstance(clean, torch.Tensor) or clean.ndim != 4 or clean.shape[1] != 3:
        got = tuple(clean.shape) if isinstance(clean, torch.Tensor) else type(clean).__name__
        raise ValueError(f"degrade expects a (B,3,H,W) tensor, got {got}")
    if not clean.is_floating_point():
        raise ValueError(f"degrade expects a float tensor in [0,1], got {clean.dtype}")
    b, _, hh, ww = clean.shape
    dev = clean.device
    dt = clean.dtype if clean.dtype in (torch.float32, torch.float64) else torch.float32
    gdev = _gen_device(generator, dev)
    h = _levels(haze, b, dev, dt, "haze")
    r = _levels(rain, b, dev, dt, "rain")
    s = _levels(noise, b, dev, dt, "noise")
    if b == 0:
        return clean.clone()
    x = clean.to(dt)
    touched = False
    if bool((h > 0).any()):
        x = _haze(x, h, generator, gdev)
        touched = True
    if bool((r > 0).any()):
        x = x + _rain_layer(b, hh, ww, r, generator, gdev, dev, dt)
        touched = True
    if bool((s > 0).any()):
        n = torch.randn(b, 3, hh, ww, generator=generator, device=gdev, dtype=dt).to(dev)
        x = x + n * (s / 255.0).view(b, 1, 1, 1)
        touched = True
    if not touched:
        return clean.clone()
    x = x.clamp(0, 1)
    # samples with all levels 0 are returned exactly as given
    untouched = ((h == 0) & (r == 0) & (s == 0)).view(b, 1, 1, 1)
    return torch.where(untouched, clean.to(dt), x).to(clean.dtype)


def degrade_image(img: np.ndarray, haze: float = 0, rain: float = 0, noise: float = 0,
                  seed: int = 0) -> np.ndarray:
    """Degrade one float32 (H,W,3) [0,1] image on the CPU with a generator seeded by ``seed``.

    The CLI ``degrade`` command and ``make-testset`` both use this, so a manifest row of
    ``make-testset`` can be reproduced from its target image with ``interir degrade``.
    """
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    g = torch.Generator().manual_seed(int(seed))
    y = degrade(x, float(haze), float(rain), float(noise), generator=g)
    return y[0].permute(1, 2, 0).numpy()
