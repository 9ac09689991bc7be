"""Figures for "why this pixel?" (:mod:`interir.attribution`): pure functions, results in, plotly
figure dicts out (the :mod:`viz.plots` conventions; no model, no torch, no gradio).

- :func:`attribution_figure`: the attribution map over the degraded input, the region outlined,
  the method named in the title and the completeness check under it;
- :func:`iteration_change_figure`: per-iteration change of the region beside the whole image's;
- :func:`channels_figure` and :func:`channels_table`: the most active explainable-conv channels.

Every function accepts the dataclasses of :mod:`interir.attribution` or their ``to_dict()``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .images import jpeg_data_uri
from .plots import ACCENT, BLUE, Fig, _axis, _layout, empty_figure, typed_array

__all__ = ["attribution_figure", "iteration_change_figure", "channels_figure", "channels_table",
           "region_shape", "CHANNEL_COLUMNS"]

#: transparent at zero, then inferno-like: the input shows through where nothing is attributed
HEAT = [[0.0, "rgba(0,0,4,0)"], [0.05, "rgba(40,11,84,0.35)"], [0.3, "rgba(120,28,109,0.7)"],
        [0.6, "rgba(212,72,66,0.85)"], [0.85, "rgba(250,150,30,0.95)"], [1.0, "rgba(252,255,164,1)"]]
CHANNEL_COLUMNS = ["layer", "channel", "active in region (%)", "active in image (%)", "lift (pp)", "τ"]


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _region_dict(region: Any) -> dict[str, Any]:
    return dict(region) if isinstance(region, Mapping) else region.to_dict()


def region_shape(region: Any, color: str = "#20c997") -> dict[str, Any]:
    """A plotly shape outlining a region (point + radius: circle; box: rectangle) in pixel coordinates."""
    r = _region_dict(region)
    line = {"color": color, "width": 2.5}
    if r.get("kind", "box" if "x0" in r else "point") == "point":
        rad = float(r.get("radius", 0.0)) + 0.5
        return {"type": "circle", "xref": "x", "yref": "y", "x0": r["x"] - rad, "x1": r["x"] + rad,
                "y0": r["y"] - rad, "y1": r["y"] + rad, "line": line}
    return {"type": "rect", "xref": "x", "yref": "y", "x0": r["x0"] - 0.5, "x1": r["x1"] - 0.5,
            "y0": r["y0"] - 0.5, "y1": r["y1"] - 0.5, "line": line}


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over f×f blocks of the first two axes (edges padded by replication)."""
    if f <= 1:
        return a
    h, w = a.shape[:2]
    hh, ww = -(-h // f) * f, -(-w // f) * f
    pad = [(0, hh - h), (0, ww - w)] + [(0, 0)] * (a.ndim - 2)
    b = np.pad(a.astype(np.float32), pad, mode="edge")
    return b.reshape(hh // f, f, ww // f, f, *a.shape[2:]).mean(axis=(1, 3))


def _footnote(attribution: Any, percentile: float) -> str:
    """The completeness check and the parameters, in two lines."""
    nan = float("nan")
    delta = float(_get(attribution, "f_input", nan)) - float(_get(attribution, "f_baseline", nan))
    gap = float(_get(attribution, "completeness_gap", nan))
    params = _get(attribution, "params", {}) or {}
    res = params.get("resolution")
    check = (f"completeness: Σ attributions = {float(_get(attribution, 'total', nan)):.4g} vs "
             f"f(input) − f(baseline) = {delta:.4g} (gap {100 * gap:.1f} %)")
    how = (f"{params.get('steps', '?')} steps, blur σ = {params.get('blur_sigma', '?')} px"
           + (f", computed at {res[1]}×{res[0]}" if res else "")
           + f"; {100 * float(_get(attribution, 'inside_share', 0.0)):.0f} % of the mass inside the region"
           + f"; colours saturate at the {percentile:g}th percentile")
    return check + "<br>" + how


def attribution_figure(image: np.ndarray, attribution: Any, region: Any, max_side: int = 256,
                       percentile: float = 99.5) -> Fig:
    """The attribution map (``attribution.map``, (H, W)) over the degraded input ``image``
    ((H, W, 3) uint8), the region outlined; colours saturate at the map's ``percentile``."""
    amap = np.asarray(_get(attribution, "map"), dtype=np.float32)
    img = np.asarray(image)
    if amap.ndim != 2 or img.ndim != 3 or img.shape[:2] != amap.shape:
        return empty_figure("No attribution map for this image.")
    H, W = amap.shape
    f = max(1, math.ceil(max(H, W) / max_side))
    shown = _block_mean(np.nan_to_num(amap), f)
    finite = shown[shown > 0]
    top = float(np.percentile(finite, percentile)) if finite.size else 1.0
    small = _block_mean(img, f).clip(0, 255).astype(np.uint8) if f > 1 else img.astype(np.uint8)
    off = (f - 1) / 2.0
    data = [{"type": "image", "source": jpeg_data_uri(np.ascontiguousarray(small)), "x0": off, "y0": off,
             "dx": f, "dy": f, "hoverinfo": "skip", "name": "degraded input"},
            {"type": "heatmap", "z": typed_array(shown), "x0": off, "y0": off, "dx": f, "dy": f,
             "zmin": 0.0, "zmax": top if top > 0 else 1.0, "colorscale": HEAT, "name": "attribution",
             "colorbar": {"title": {"text": "|attr|", "side": "top"}, "thickness": 10},
             "hovertemplate": "x %{x:.0f}, y %{y:.0f}<br>|attribution| %{z:.3g}<extra></extra>"}]
    title = (f"{_get(attribution, 'method', 'attribution')}"
             f"<br><sup>target: the restored output summed over the region (outlined)</sup>")
    lay = _layout(min(640, 110 + int(460 * H / max(W, 1))), title={"text": title, "font": {"size": 13}, "x": 0.01},
                  shapes=[region_shape(region)],
                  xaxis={"visible": False, "range": [-0.5, W - 0.5], "constrain": "domain"},
                  yaxis={"visible": False, "range": [H - 0.5, -0.5], "scaleanchor": "x", "constrain": "domain"},
                  margin={"l": 10, "r": 10, "t": 64, "b": 52},
                  annotations=[{"text": _footnote(attribution, percentile), "x": 0, "y": -0.02, "xref": "paper",
                                "yref": "paper", "xanchor": "left", "yanchor": "top", "showarrow": False,
                                "font": {"size": 10, "color": "#666"}}])
    return {"data": data, "layout": lay}


def iteration_change_figure(change: Any, selected: int | None = None) -> Fig:
    """Mean |image_k − image_{k−1}| per iteration k: over the region and over the whole image."""
    reg = np.asarray(_get(change, "region", []), dtype=np.float64)
    whole = np.asarray(_get(change, "image", []), dtype=np.float64)
    if reg.size == 0:
        return empty_figure("No iterations recorded.")
    labels = ["0 (vs input)"] + [str(k) for k in range(1, reg.size)]
    colors = [ACCENT if k == selected else BLUE for k in range(reg.size)]
    data = [{"type": "bar", "x": labels, "y": [float(v) * 255 for v in reg], "name": "region",
             "marker": {"color": colors}, "hovertemplate": "k = %{x}<br>region: %{y:.2f} / 255<extra></extra>"}]
    if whole.size == reg.size:
        data.append({"type": "bar", "x": labels, "y": [float(v) * 255 for v in whole], "name": "whole image",
                     "marker": {"color": "#ced4da"},
                     "hovertemplate": "k = %{x}<br>whole image: %{y:.2f} / 255<extra></extra>"})
    lay = _layout(300, showlegend=True, barmode="group", bargap=0.25,
                  title={"text": "How much iteration k changed the region: mean |image<sub>k</sub> − "
                                 "image<sub>k−1</sub>|", "font": {"size": 13}, "x": 0.01},
                  legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
                  xaxis=_axis(title={"text": "iteration k (early-exit decodes)"}, type="category"),
                  yaxis=_axis(title={"text": "mean change (of 255)"}, rangemode="tozero"),
                  margin={"l": 50, "r": 20, "t": 70, "b": 40})
    return {"data": data, "layout": lay}


def _channel_label(item: Any) -> str:
    return f"{_get(item, 'layer')} · ch {int(_get(item, 'channel'))}"


def channels_table(channels: Sequence[Any]) -> list[list[Any]]:
    """Rows (see :data:`CHANNEL_COLUMNS`) for a table of the ranked channels."""
    rows = []
    for c in channels:
        reg, img = float(_get(c, "region")), float(_get(c, "image"))
        tau = float(_get(c, "tau", float("nan")))
        rows.append([str(_get(c, "layer")), int(_get(c, "channel")), round(100 * reg, 1), round(100 * img, 1),
                     round(100 * (reg - img), 1), round(tau, 4) if np.isfinite(tau) else None])
    return rows


def channels_figure(channels: Sequence[Any]) -> Fig:
    """Horizontal bars: each listed channel's mask activation in the region and in the whole
    image (M = 1[x ≥ τ]), ranked top to bottom as given."""
    if not channels:
        return empty_figure("No explainable convolutions in this model (standard-conv twin).")
    labels = [_channel_label(c) for c in channels]
    reg = [100 * float(_get(c, "region")) for c in channels]
    img = [100 * float(_get(c, "image")) for c in channels]
    tau = [float(_get(c, "tau", float("nan"))) for c in channels]
    custom = [[t if np.isfinite(t) else None] for t in tau]
    data = [{"type": "bar", "orientation": "h", "y": labels, "x": reg, "name": "in the region",
             "marker": {"color": ACCENT}, "customdata": custom,
             "hovertemplate": "%{y}<br>active in region %{x:.1f} %<br>τ = %{customdata[0]:.4f}<extra></extra>"},
            {"type": "bar", "orientation": "h", "y": labels, "x": img, "name": "in the whole image",
             "marker": {"color": "#ced4da"},
             "hovertemplate": "%{y}<br>active in image %{x:.1f} %<extra></extra>"}]
    lay = _layout(120 + 34 * len(labels), showlegend=True, barmode="group", bargap=0.25,
                  title={"text": "Explainable-conv channels most active in the region (mask M = 1[x ≥ τ])",
                         "font": {"size": 13}, "x": 0.01},
                  legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
                  xaxis=_axis(title={"text": "positions with M = 1 (%)"}, range=[0, 100]),
                  yaxis=_axis(autorange="reversed", type="category", tickfont={"size": 10}),
                  margin={"l": 60, "r": 20, "t": 70, "b": 40})
    return {"data": data, "layout": lay}
