""""Why this pixel?": what the explorer shows for one region of the restored image.

(a) the attribution map over the degraded input comes from :mod:`interir.attribution` (it reruns
the model, with gradients, under the model lock); (b) and (c) are read from the session's trace.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from interir.errors import InterIRError
from viz.compact import CompactTrace
from viz.images import heat_overlay, mask_overlay, resize_max, upscale_to
from viz.plots import region_change_figure

from .runtime import ModelHolder
from .session import Outputs, Session, plot_json, save_png, save_pngs

#: side of the square around a clicked point (pixels of the restored image)
POINT_BOX = 17
TOP_CHANNELS = 6


def region(ct: CompactTrace, x0: Any, y0: Any, x1: Any = None, y1: Any = None) -> tuple[int, int, int, int]:
    """A box (x0, y0, x1, y1), end-exclusive, inside the image: a clicked point becomes a
    ``POINT_BOX`` square around it."""
    H, W = ct.input.shape[:2]
    try:
        vals = [None if v in (None, "") else float(v) for v in (x0, y0, x1, y1)]
    except (TypeError, ValueError):
        raise InterIRError(f"region coordinates must be numbers, got {(x0, y0, x1, y1)!r}") from None
    if vals[0] is None or vals[1] is None or not all(np.isfinite(v) for v in vals if v is not None):
        raise InterIRError("give a point (x, y) on the restored image, or a box (x0, y0, x1, y1)")
    if vals[2] is None or vals[3] is None:
        cx, cy, r = int(vals[0]), int(vals[1]), POINT_BOX // 2
        box = (cx - r, cy - r, cx + r + 1, cy + r + 1)
    else:
        xa, xb = sorted((vals[0], vals[2]))
        ya, yb = sorted((vals[1], vals[3]))
        box = (int(xa), int(ya), int(np.ceil(xb)) + 1, int(np.ceil(yb)) + 1)
    bx0, by0 = max(0, box[0]), max(0, box[1])
    bx1, by1 = min(W, box[2]), min(H, box[3])
    if bx0 >= bx1 or by0 >= by1:
        raise InterIRError(f"the region {box} is outside the {W}×{H} image")
    return bx0, by0, bx1, by1


def region_change(ct: CompactTrace, box: tuple[int, int, int, int]) -> np.ndarray:
    """Mean |I_k − I_(k−1)| over the region and RGB for every k (k = 0: from the input), in [0, 1]."""
    x0, y0, x1, y1 = box
    prev = ct.input[y0:y1, x0:x1].astype(np.int16)
    out = []
    for k in range(ct.n_iter):
        cur = ct.images[k][y0:y1, x0:x1].astype(np.int16)
        out.append(float(np.abs(cur - prev).mean()) / 255.0)
        prev = cur
    return np.array(out)


def active_channels(ct: CompactTrace, box: tuple[int, int, int, int], top: int = TOP_CHANNELS
                    ) -> list[tuple[str, int, float, float]]:
    """(layer, channel, fraction of the region's feature cells with M = 1, the same over the whole
    image) of the explainable-conv channels most active in the region, most active first (ties:
    the larger excess over the channel's image-wide rate)."""
    H, W = ct.input.shape[:2]
    x0, y0, x1, y1 = box
    rows = []
    for layer in ct.layers:
        m = ct.mask(layer)
        _, h, w = m.shape
        fy, fx = max(1, round(H / h)), max(1, round(W / w))  # as viz.images.upsample_nearest
        sub = m[:, min(y0 // fy, h - 1):min(h, -(-y1 // fy)), min(x0 // fx, w - 1):min(w, -(-x1 // fx))]
        inside = sub.reshape(sub.shape[0], -1).mean(axis=1)
        for c in range(m.shape[0]):
            rows.append((layer, c, float(inside[c]), float(ct.mask_rate[layer][c])))
    rows.sort(key=lambda r: (-r[2], -(r[2] - r[3])))
    return rows[:top]


def _draw_box(img: np.ndarray, box: tuple[int, int, int, int], scale: float) -> np.ndarray:
    from PIL import Image, ImageDraw

    x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
    im = Image.fromarray(img)
    ImageDraw.Draw(im).rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=(0, 255, 255), width=2)
    return np.asarray(im)


def _attribution(holder: ModelHolder, x: np.ndarray, box: tuple[int, int, int, int], progress: Any
                 ) -> tuple[np.ndarray | None, str]:
    """(|attribution| per input pixel (H, W), the method's name) from interir.attribution, or
    (None, why not)."""
    try:
        from interir import attribution
    except ImportError:
        return None, "The attribution map needs `interir.attribution`, which this build does not have."
    with holder.lock:
        res = attribution.attribute_region(holder.model, holder.to_tensor(x), box, progress=progress)
    amap = np.abs(np.asarray(res.map, dtype=np.float32))
    return (amap.sum(axis=-1) if amap.ndim == 3 else amap), str(res.method)


def explain_region(holder: ModelHolder, ct: CompactTrace, session: Session, x0: Any, y0: Any,
                   x1: Any, y1: Any, progress: Any) -> Outputs:
    """The "Why this pixel?" panel for one region (see the module docstring)."""
    box = region(ct, x0, y0, x1, y1)
    amap, method = _attribution(holder, session.x, box, progress)
    shown = upscale_to(resize_max(ct.input, 768), 480)
    scale = shown.shape[0] / ct.input.shape[0]
    gray = (0.35 * shown + 0.65 * shown.mean(axis=2, keepdims=True)).astype(np.uint8)
    if amap is not None:
        top = float(np.percentile(amap, 99.5)) or float(amap.max()) or 1.0
        attr = _draw_box(heat_overlay(gray, np.clip(amap / top, 0, 1), 0.7), box, scale)
        inside = float(amap[box[1]:box[3], box[0]:box[2]].sum() / max(amap.sum(), 1e-12))
        attr_md = (f"**(a) Attribution** ({method}): |attribution| of each degraded-input pixel to the "
                   f"region's output (bright = more; scale: 99.5th percentile). {inside:.0%} of it lies "
                   "inside the region itself.")
    else:
        attr, attr_md = _draw_box(gray, box, scale), f"**(a) Attribution:** {method}"
    change = region_change(ct, box)
    k_max = int(np.argmax(change))
    chans = active_channels(ct, box)
    items = [(_draw_box(mask_overlay(gray, ct.mask(layer)[c], 0.6), box, scale), f"why_mask_{i}")
             for i, (layer, c, _, _) in enumerate(chans)]
    paths = save_pngs(session, items)
    gallery = [(p, f"{layer} · ch {c} · {inside:.0%} active here ({overall:.0%} overall)")
               for p, (layer, c, inside, overall) in zip(paths, chans)]
    x0_, y0_, x1_, y1_ = box
    md = (f"Region x {x0_}–{x1_ - 1}, y {y0_}–{y1_ - 1} ({x1_ - x0_}×{y1_ - y0_} px).  \n{attr_md}  \n"
          f"**(b)** Iteration k = {k_max} changed this region most ({change[k_max] * 255:.2f}/255 on "
          f"average; k = 0 is measured from the input).  \n")
    md += (f"**(c)** The {len(chans)} explainable-conv channels with the largest share of mask M = 1 in the "
           "region (cyan box) are shown below, most active first." if chans else
           "**(c)** This model has no explainable convolutions: no masks to show.")
    return {"why_attr": save_png(session, attr, "why_attribution"),
            "why_iter": plot_json(region_change_figure(change, "(b) change in the region per iteration")),
            "why_chan": gallery, "why_md": md}


__all__ = ["explain_region", "region", "region_change", "active_channels", "POINT_BOX"]
