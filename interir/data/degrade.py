"""Synthetic haze, rain and noise (the paper's Table 6 degradation levels).

Everything is vectorised over the batch, runs on any device and draws all randomness from
the given :class:`torch.Generator` (same seed -> bit-identical output on CPU). Randomness is
drawn on the generator's device and moved to the image's device, so a CPU generator can
drive a GPU batch.

Levels (docs/design.md "Degradation levels"):

* haze ``h`` in [0, 150]: atmospheric scattering ``I*t + a*(1-t)``, ``t = exp(-beta*d)``,
  ``beta = BETA_MAX * h / 150``, ``d`` a smooth random depth proxy in [0.3, 1] (a bicubic
  upsampled low-resolution random field mixed with a vertical gradient, far at the top),
  ``a`` a slightly tinted light grey to white airlight drawn per sample (``HAZE_AIRLIGHT``).
* rain ``r`` in [0, 300]: rain accumulation, a light veil towards the rain colour that grows
  with ``r`` (as ``r^1.5``, so mostly at heavy rain) and with the depth proxy, then the streak
  layers of :data:`RAIN_LAYERS` (thin, wide, very wide and blurred), each at its own angle (a
  per-image angle within +-RAIN_MAX_ANGLE of vertical plus a per-layer jitter), with streak
  counts proportional to ``r`` and lengths and opacities from short and faint (far, many) to
  long and dense (near, few); alpha-blended (semi-transparent, never clipped) towards a
  near-white rain colour.
* noise ``s`` in [0, 50]: additive Gaussian with sigma ``s / 255``.

Applied in the order haze -> rain -> noise. A level of 0 leaves the image untouched by that
component (bit-exact when all three are 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
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
#: Airlight grey level range. Real fog and haze photos are exposed for the scene, so their
#: veil is often a mid to light grey, not white; an airlight always near white (0.8..1, as
#: before) makes every hazy input far brighter than its target (+47/255 on average over the
#: test photos), which teaches a dehazer to darken whatever looks hazy.
HAZE_AIRLIGHT = (0.5, 1.0)


@dataclass(frozen=True)
class RainLayer:
    """One layer of rain streaks; lengths are at 256 px (see :func:`rain_length_scale`)."""

    density: float                 # streaks per pixel at r = 300 (proportional to r)
    length: tuple[float, float]    # streak length range (px)
    opacity: tuple[float, float]   # peak optical depth range (longer streaks are denser)
    scale: float                   # drawn at 1/scale resolution: ~scale px wide, blurred


#: Streak layers: thin, wide, and very wide (blurred drops near the lens). Within a layer each
#: streak draws q = u^2 (u uniform): length and opacity go from the low to the high end with q,
#: so short faint (far) streaks outnumber long dense (near) ones.
RAIN_LAYERS: tuple[RainLayer, ...] = (
    RainLayer(density=0.010, length=(5.0, 45.0), opacity=(0.15, 1.0), scale=1.0),
    RainLayer(density=0.0012, length=(30.0, 90.0), opacity=(0.25, 0.9), scale=2.0),
    RainLayer(density=0.0002, length=(50.0, 120.0), opacity=(0.1, 0.3), scale=4.0),
)
#: Per-image factor 1 +- RAIN_IMAGE_JITTER on all streak lengths, and another on opacities.
RAIN_IMAGE_JITTER = 0.25
#: Largest tilt of a rain image's streaks from vertical, and each layer's extra tilt (degrees).
RAIN_MAX_ANGLE = 25.0
RAIN_ANGLE_JITTER = 6.0
#: Rain colour (grey level range, per image) and the veil's opacity at r = 300 (at the far end).
RAIN_COLOUR = (0.8, 1.0)
RAIN_VEIL = 0.3


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
    # airlight: a grey level in HAZE_AIRLIGHT, slightly tinted, per sample
    lo, hi = HAZE_AIRLIGHT
    base = lo + (hi - lo) * _rand((b, 1, 1, 1), generator, gdev, dev, dt)
    tint = 0.06 * (_rand((b, 3, 1, 1), generator, gdev, dev, dt) - 0.5)
    a = (base + tint).clamp(0, 1)
    beta = (BETA_MAX / RANGES["haze"][1]) * h.view(b, 1, 1, 1)
    t = torch.exp(-beta * d)
    # x*t + a*(1-t) = a + t*(x - a); exactly x where h == 0 (t == 1)
    return torch.lerp(a.expand_as(x), x, t)


def rain_length_scale(height: int, width: int) -> float:
    """Streak lengths are given at 256 px (short side) and scale with its square root."""
    return min(3.0, max(0.2, math.sqrt(min(height, width) / 256.0)))


_FIXED = 65536.0  # fixed-point scale of the streak frames (see _streaks)


def _streaks(b: int, hh: int, ww: int, r: torch.Tensor, theta: torch.Tensor,
             generator: torch.Generator | None, gdev: torch.device, dev: torch.device,
             dt: torch.dtype) -> torch.Tensor:
    """The streak layers of :data:`RAIN_LAYERS` as optical depth (B, 1, H, W) >= 0, summed over
    the layers; exactly 0 where r == 0. ``theta`` (B, L): each layer's angle from vertical.

    Each layer is drawn in a "rain frame" where its streaks are vertical: every streak is a
    seed lighting ``n`` rows downwards (+v at its row, -v ``n`` rows below, then one
    cumulative sum: a motion-blurred drop, at a cost independent of its length). One bilinear
    resampling maps the frame into the image, sheared to the layer's angle. A layer's frame
    has ``1 / scale`` of the image's resolution, so its streaks are ~``scale`` px wide. The
    layers' frames sit side by side in one (B, rows, columns) array: one call per step.
    """
    nl = len(RAIN_LAYERS)
    ls = rain_length_scale(hh, ww)
    scales = [sp.scale for sp in RAIN_LAYERS]
    tan = torch.tan(theta)
    tan_max = float(tan.abs().max())
    # frame rows: `pad` above the image (streaks enter from above), the image's, and a spare;
    # columns: the image's sheared footprint, wr = (W + H tan_max) / s, and one spare each side
    pad = math.ceil(max(sp.length[1] / sp.scale for sp in RAIN_LAYERS)
                    * (1 + RAIN_IMAGE_JITTER) * ls) + 1
    hr = pad + math.ceil(hh / min(scales)) + 2
    wr = [math.ceil((ww + hh * tan_max) / sc) for sc in scales]
    first = [1 + sum(w + 2 for w in wr[:i]) for i in range(nl)]  # each layer's first column
    wf = first[-1] + wr[-1] + 1
    seeded = [pad + math.ceil(hh / sc) for sc in scales]  # rows that get seeds

    # per-layer parameters, each (1, L, 1)
    par = torch.tensor([[sp.length[0], sp.length[1], sp.opacity[0], sp.opacity[1], sc, w, n_r, c]
                        for sp, sc, w, n_r, c in zip(RAIN_LAYERS, scales, wr, seeded, first)],
                       dtype=dt).to(dev).view(1, nl, 8, 1)
    len_lo, len_hi, op_lo, op_hi, sc, wr_t, seeded_t, first_t = par.unbind(2)
    jit = 1 + RAIN_IMAGE_JITTER * (2 * _rand((2, b, 1, 1), generator, gdev, dev, dt) - 1)
    # streak count: density * r / r_max per image pixel of the seeded area (dithered)
    area = [sp.density / RANGES["rain"][1] * n_r * w * sc * sc
            for sp, n_r, w, sc in zip(RAIN_LAYERS, seeded, wr, scales)]
    expected = r.view(b, 1) * torch.tensor(area, dtype=dt).to(dev)
    count = torch.floor(expected + _rand((b, nl), generator, gdev, dev, dt))
    kmax = max(1, int(math.ceil(float(expected.max()))) + 1)
    u = _rand((4, b, nl, kmax), generator, gdev, dev, dt)
    row = (u[0] * seeded_t).long()
    col = (u[1] * wr_t).long() + first_t.long()
    q = u[2] * u[2]
    length = (len_lo + (len_hi - len_lo) * q) * (jit[0] * ls)
    n = (length * torch.cos(theta).unsqueeze(-1) / sc).round().clamp_min(1).long()
    val = (op_lo + (op_hi - op_lo) * q) * jit[1] * (0.6 + 0.4 * u[3])
    val = torch.where(torch.arange(kmax, device=dev) < count.unsqueeze(-1), val,
                      torch.zeros((), device=dev, dtype=dt))
    # A streak is two nested segments of half its value each, [0, n) and [n/4, 3n/4) rows
    # from its seed: brightest in the middle, fading at the ends. Each segment is +v at its
    # first row and -v after its last (the spare row at the latest), summed as integers in
    # units of 2^-16 (exact, so streaks that share a cell add up in any order, on any device)
    # and integrated down the rows by one cumulative sum.
    qv = (val * (0.5 * _FIXED)).round().to(torch.int32).view(b, -1)
    i0, i1 = row + n // 4, row + n - n // 4
    last = hr - 1
    idx = torch.cat([(rr.clamp(max=last) * wf + col).view(b, -1)
                     for rr in (row, row + n, i0, i1)], dim=1)
    frame = torch.zeros(b, hr * wf, device=dev, dtype=torch.int32).scatter_add_(
        1, idx, torch.cat((qv, -qv, qv, -qv), dim=1))
    frame = frame.view(b, 1, hr, wf).cumsum(dim=2, dtype=torch.int32).to(dt).mul_(1 / _FIXED)
    # image pixel centre (x, y) of layer l -> frame column first + (x - (y - H/2) tan) / s +
    # H tan_max / (2 s), row y / s + pad; in grid_sample's normalised coordinates
    ys = torch.arange(hh, device=dev, dtype=dt).add_(0.5).view(1, 1, -1, 1)
    xs = torch.arange(ww, device=dev, dtype=dt).add_(0.5).view(1, 1, 1, -1)
    sc4 = sc.unsqueeze(-1)
    per_row = ((hh / 2 - ys) * tan.view(b, nl, 1, 1) + hh * tan_max / 2) / sc4 \
        + first_t.unsqueeze(-1)
    grid = torch.empty(b, nl, hh, ww, 2, device=dev, dtype=dt)
    torch.add((xs * (2 / wf)) / sc4, per_row * (2 / wf) - 1, out=grid[..., 0])
    grid[..., 1] = (ys / sc4 + pad) * (2 / hr) - 1
    out = F.grid_sample(frame, grid.view(b, nl * hh, ww, 2), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out.view(b, nl, hh, ww).sum(1, keepdim=True).clamp_min_(0)


def _rain(x: torch.Tensor, r: torch.Tensor, generator: torch.Generator | None,
          gdev: torch.device) -> torch.Tensor:
    """Rain on ``x`` (B,3,H,W): a veil (rain accumulation; grows with ``r`` and with a depth
    proxy) then the streak layers of :data:`RAIN_LAYERS`, alpha-blended towards a per-image
    near-white rain colour. Exactly ``x`` where r == 0."""
    b, _, hh, ww = x.shape
    dev, dt = x.device, x.dtype
    c_lo, c_hi = RAIN_COLOUR
    grey = c_lo + (c_hi - c_lo) * _rand((b, 1, 1, 1), generator, gdev, dev, dt)
    colour = (grey + 0.04 * (_rand((b, 3, 1, 1), generator, gdev, dev, dt) - 0.5)).clamp(0, 1)
    frac = (r / RANGES["rain"][1]).view(b, 1, 1, 1)
    veil = RAIN_VEIL * frac ** 1.5 * (0.6 + 0.4 * _rand((b, 1, 1, 1), generator, gdev, dev, dt))
    veil = veil * _depth_proxy(b, hh, ww, generator, gdev, dev, dt)
    # one angle per image, jittered per layer
    base = math.radians(RAIN_MAX_ANGLE) * (2 * _rand((b, 1), generator, gdev, dev, dt) - 1)
    jitter = math.radians(RAIN_ANGLE_JITTER) * (
        2 * _rand((b, len(RAIN_LAYERS)), generator, gdev, dev, dt) - 1)
    depth = _streaks(b, hh, ww, r, base + jitter, generator, gdev, dev, dt)
    # the veil, then the streaks over it (opacity 1 - exp(-depth): overlapping streaks never
    # saturate), both towards the rain colour: one blend with the combined opacity
    alpha = depth.neg_().exp_().mul_(veil - 1).add_(1)  # 1 - (1 - veil) exp(-depth)
    return torch.lerp(x, colour.expand_as(x), alpha)


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
        x = _rain(x, r, generator, gdev)
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
    if bool(untouched.any()):
        x = torch.where(untouched, clean.to(dt), x)
    return x.to(clean.dtype)


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
