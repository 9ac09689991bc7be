"""Plotly figures from a :class:`~viz.compact.CompactTrace` (pure functions, no model, no gradio).

Every function returns a plain plotly figure **dict** (``{"data": [...], "layout": {...}}``),
built directly rather than through ``plotly.graph_objects``: validating graph objects costs
0.1–0.6 s per figure on a small CPU, too slow for a slider. Arrays are embedded as plotly.js
typed arrays (base64). :func:`to_json` serialises a figure, :func:`to_figure` turns it into a
``go.Figure`` and ``plotly.io.to_html(fig, validate=False)`` renders it.
"""
from __future__ import annotations

import base64
import json
from typing import Any, Sequence

import numpy as np

from .compact import CompactTrace
from .images import _pool_to

__all__ = ["COMBO_COLORS", "combo_label", "to_json", "to_figure", "typed_array", "from_typed_array",
           "iteration_curves", "iteration_curves_json", "matrix_view", "singular_values",
           "matrices_figure", "attention_figure", "channel_rank_figure", "embedding_figure", "empty_figure"]

Fig = dict
FONT = {"family": "Inter, Segoe UI, Helvetica, Arial, sans-serif", "size": 12, "color": "#343a40"}
GRID = "#e9ecef"
ACCENT = "#e8590c"
BLUE = "#1c7ed6"

#: One colour per degradation combination (same order as interir.data.degrade.COMBOS).
COMBO_COLORS = {
    "haze_rain_noise": "#6f42c1", "haze_rain": "#1c7ed6", "haze_noise": "#0ca678",
    "rain_noise": "#f08c00", "haze": "#74c0fc", "rain": "#e64980", "noise": "#868e96",
}
VIRIDIS = "Viridis"
#: blue < 0 < red, as matplotlib's RdBu_r used for the Λ channel grid
DIVERGING = [[0.0, "#2166ac"], [0.25, "#92c5de"], [0.5, "#f7f7f7"], [0.75, "#f4a582"], [1.0, "#b2182b"]]


def combo_label(combo: str) -> str:
    """``haze_rain_noise`` -> ``H + R + N`` (the paper's Table 1 header style)."""
    parts = [p for p in str(combo).split("_") if p]
    known = {"haze": "H", "rain": "R", "noise": "N"}
    if parts and all(p in known for p in parts):
        return " + ".join(known[p] for p in parts)
    return str(combo)


# ----------------------------------------------------------------------------- helpers
def typed_array(a: Any, dtype: str = "f4") -> dict[str, str]:
    """A numpy array as a plotly.js typed-array spec (base64), NaN kept (shown as gaps)."""
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.dtype(dtype)))
    spec = {"dtype": dtype, "bdata": base64.b64encode(arr.tobytes()).decode("ascii")}
    if arr.ndim > 1:
        spec["shape"] = ", ".join(str(s) for s in arr.shape)
    return spec


def from_typed_array(spec: Any) -> np.ndarray:
    """Inverse of :func:`typed_array` (lists pass through as float arrays)."""
    if isinstance(spec, dict) and "bdata" in spec:
        out = np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.dtype(spec["dtype"]))
        if "shape" in spec:
            out = out.reshape([int(s) for s in str(spec["shape"]).split(",")])
        return out
    return np.asarray(spec, dtype=float)


def _num(v: Any) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def to_json(fig: Fig) -> str:
    """Compact JSON of a figure dict (what gradio's Plot sends to the browser)."""
    return json.dumps(fig, separators=(",", ":"), allow_nan=False)


def to_figure(fig: Fig) -> Any:
    """A ``plotly.graph_objects.Figure`` of a figure dict (slow; for notebooks and tests)."""
    import plotly.graph_objects as go

    return go.Figure(json.loads(to_json(fig)))


def _axis(**kw: Any) -> dict[str, Any]:
    base = {"gridcolor": GRID, "zerolinecolor": GRID, "linecolor": "#ced4da", "showline": True,
            "ticks": "outside", "tickcolor": "#ced4da", "automargin": True}
    base.update(kw)
    return base


def _layout(height: int, **kw: Any) -> dict[str, Any]:
    lay = {"height": height, "font": FONT, "paper_bgcolor": "white", "plot_bgcolor": "white",
           "margin": {"l": 50, "r": 20, "t": 40, "b": 40}, "hoverlabel": {"font": {"size": 12}},
           "showlegend": False}
    lay.update(kw)
    return lay


def _title(text: str, x: float, y: float) -> dict[str, Any]:
    return {"text": text, "x": x, "y": y, "xref": "paper", "yref": "paper", "showarrow": False,
            "xanchor": "center", "yanchor": "bottom", "font": {"size": 12}}


def _domains(n: int, gap: float, widths: Sequence[float] | None = None) -> list[list[float]]:
    widths = list(widths) if widths else [1.0] * n
    total = (1.0 - gap * (n - 1)) / sum(widths)
    out, x = [], 0.0
    for w in widths:
        out.append([x, x + w * total])
        x += w * total + gap
    out[-1][1] = 1.0
    return out


def empty_figure(message: str, height: int = 260) -> Fig:
    """A blank figure that says why there is nothing to show."""
    return {"data": [], "layout": _layout(height, xaxis={"visible": False}, yaxis={"visible": False},
                                          annotations=[{"text": message, "x": 0.5, "y": 0.5, "xref": "paper",
                                                        "yref": "paper", "showarrow": False,
                                                        "font": {"size": 14, "color": "#555"}}])}


def _positive(v: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(v)) and np.all(v > 0))


# ----------------------------------------------------------------------------- iterations
def _curve_values(ct: CompactTrace, key: str) -> np.ndarray:
    return {"fidelity": ct.fidelity, "step": ct.step_norm, "psnr": ct.psnr, "ssim": ct.ssim}[key]


def iteration_curves(ct: CompactTrace, k: int) -> Fig:
    """Per-iteration data fidelity, step norm and (if a reference is known) PSNR / SSIM, k marked."""
    ct.complete_ssim()
    k = int(np.clip(k, 0, ct.n_iter - 1))
    ks = list(range(ct.n_iter))
    panels: list[tuple[str, str, float | None]] = [
        ("Data fidelity ‖A<sub>k</sub> I<sub>k+1</sub> B<sub>k</sub> − z‖² / N", "fidelity", None),
        ("Relative step ‖I<sub>k+1</sub> − I<sub>k</sub>‖ / ‖I<sub>k</sub>‖", "step", None)]
    if ct.psnr is not None:
        panels.append(("PSNR vs clean reference (dB; dotted: the degraded input)", "psnr", ct.input_psnr))
        if ct.ssim is not None:
            panels.append(("SSIM vs clean reference (dotted: the degraded input)", "ssim", ct.input_ssim))
    rows = 1 if len(panels) <= 2 else 2
    xd = _domains(2, 0.12)
    yd = _domains(rows, 0.22)[::-1]
    data, shapes, notes, layout = [], [], [], {}
    for i, (title, key, baseline) in enumerate(panels):
        r, c = divmod(i, 2)
        ax = "" if i == 0 else str(i + 1)
        values = np.asarray(_curve_values(ct, key), dtype=np.float64)
        ys = [_num(v) for v in values]
        data.append({"type": "scatter", "x": ks, "y": ys, "xaxis": f"x{ax}", "yaxis": f"y{ax}", "name": key,
                     "mode": "lines+markers", "line": {"color": BLUE, "width": 2}, "marker": {"size": 6},
                     "hovertemplate": "k=%{x}<br>%{y:.4g}<extra></extra>"})
        data.append({"type": "scatter", "x": [k], "y": [ys[k]], "xaxis": f"x{ax}", "yaxis": f"y{ax}",
                     "name": f"sel:{key}", "mode": "markers",
                     "marker": {"size": 13, "color": ACCENT, "line": {"color": "white", "width": 2}},
                     "hovertemplate": "k=%{x} (selected)<br>%{y:.4g}<extra></extra>"})
        shapes.append({"type": "line", "name": "k-line", "xref": f"x{ax}", "yref": f"y{ax} domain", "x0": k,
                       "x1": k, "y0": 0, "y1": 1, "line": {"color": ACCENT, "width": 1, "dash": "dash"}})
        if baseline is not None and np.isfinite(baseline):  # named in the title: no label to collide
            shapes.append({"type": "line", "xref": f"x{ax} domain", "yref": f"y{ax}", "x0": 0, "x1": 1,
                           "y0": baseline, "y1": baseline, "line": {"color": "#868e96", "dash": "dot"}})
        notes.append(_title(title, sum(xd[c]) / 2, yd[r][1] + 0.01))
        layout[f"xaxis{ax}"] = _axis(domain=xd[c], anchor=f"y{ax}", dtick=1 if ct.n_iter <= 20 else None,
                                     title={"text": "iteration k"}, range=[-0.3, ct.n_iter - 0.7])
        layout[f"yaxis{ax}"] = _axis(domain=yd[r], anchor=f"x{ax}",
                                     type="log" if key in ("fidelity", "step") and _positive(values) else "linear")
    return {"data": data, "layout": _layout(320 if rows == 1 else 580, shapes=shapes, annotations=notes,
                                            margin={"l": 50, "r": 20, "t": 60, "b": 40}, **layout)}


def iteration_curves_json(ct: CompactTrace, k: int) -> str:
    """:func:`iteration_curves` as JSON, fast: built once per trace (cached on it), then only
    the k marker and line move (the slider's hot path)."""
    base = ct.memo("curves_fig", lambda: iteration_curves(ct, 0))  # forgotten when metrics change
    k = int(np.clip(k, 0, ct.n_iter - 1))
    data = []
    for tr in base["data"]:
        if str(tr.get("name", "")).startswith("sel:"):
            v = np.asarray(_curve_values(ct, tr["name"][4:]), dtype=np.float64)[k]
            tr = dict(tr, x=[k], y=[_num(v)])
        data.append(tr)
    layout = dict(base["layout"])
    layout["shapes"] = [dict(s, x0=k, x1=k) if s.get("name") == "k-line" else s for s in layout["shapes"]]
    return to_json({"data": data, "layout": layout})


# ----------------------------------------------------------------------------- matrices
def matrix_view(ct: CompactTrace, which: str, k: int, channel: int | None) -> np.ndarray:
    """A_k or B_k of one channel, or the mean over channels (``channel=None``), as float32."""
    arr = getattr(ct, which)[int(k)]
    if channel is None:
        return arr.astype(np.float32).mean(axis=0)
    return arr[int(channel)].astype(np.float32)


def singular_values(m: np.ndarray) -> np.ndarray:
    """Singular values of a square matrix, descending."""
    return np.linalg.svd(np.nan_to_num(m.astype(np.float64)), compute_uv=False)


def _spectrum(ct: CompactTrace, which: str, k: int, channel: int | None) -> np.ndarray:
    key = ("sv", which, int(k), channel)
    return ct.memo(key, lambda: singular_values(matrix_view(ct, which, k, channel)))


def matrices_figure(ct: CompactTrace, k: int, channel: int | None, max_side: int = 128) -> Fig:
    """A_k and B_k heatmaps with their singular-value spectra (and those at k = 0, dashed)."""
    k = int(np.clip(k, 0, ct.n_iter - 1))
    which_label = "mean over channels" if channel is None else f"channel {channel}"
    xd = _domains(2, 0.1, [0.45, 0.55])
    yd = _domains(2, 0.2)[::-1]
    data, notes, layout, foot = [], [], {}, []
    for row, which in ((0, "A"), (1, "B")):
        hx, sx = ("", "2") if row == 0 else ("3", "4")
        m = matrix_view(ct, which, k, channel)
        f = int(np.ceil(m.shape[0] / max_side))
        shown = _pool_to(m, max_side) if f > 1 else m
        if f > 1:
            foot.append(f"{which} shown as {f}×{f} block means of {m.shape[0]}×{m.shape[0]}")
        lo, hi = float(np.nanmin(shown)), float(np.nanmax(shown))
        signed = lo < 0 < hi
        # colours span the 1st..99th percentile so one bright row/column doesn't flatten the rest
        if signed:
            m = float(np.nanpercentile(np.abs(shown), 99)) or max(abs(lo), abs(hi)) or 1.0
            zr = {"zmin": -m, "zmax": m}
        else:
            a, b = (float(v) for v in np.nanpercentile(shown, [1, 99]))
            zr = {"zmin": a, "zmax": b if b > a else a + 1e-12}
        clipped = zr["zmin"] > lo or zr["zmax"] < hi
        heat = {"type": "heatmap", "z": typed_array(shown), "x0": 0, "dx": f, "y0": 0, "dy": f,
                "xaxis": f"x{hx}", "yaxis": f"y{hx}", "name": which, **zr,
                "colorscale": DIVERGING if signed else VIRIDIS,
                "colorbar": {"orientation": "h", "x": sum(xd[0]) / 2, "xanchor": "center",
                             "y": yd[row][0] - 0.035, "yanchor": "top", "len": 0.3, "thickness": 9,
                             "tickfont": {"size": 9}},
                "hovertemplate": "row %{y}, col %{x}<br>%{z:.3g}<extra></extra>"}
        if clipped:
            foot.append(f"{which}: colours clipped to the 1st–99th percentile (range {lo:.3g} … {hi:.3g})")
        data.append(heat)
        sv, sv0 = _spectrum(ct, which, k, channel), _spectrum(ct, which, 0, channel)
        idx = list(range(1, sv.size + 1))
        data.append({"type": "scatter", "x": idx, "y": typed_array(sv0, "f8"), "xaxis": f"x{sx}",
                     "yaxis": f"y{sx}", "mode": "lines", "name": "k = 0 (Eq. 11 init)", "legendgroup": "init",
                     "showlegend": row == 0, "line": {"color": "#adb5bd", "dash": "dash"}})
        data.append({"type": "scatter", "x": idx, "y": typed_array(sv, "f8"), "xaxis": f"x{sx}",
                     "yaxis": f"y{sx}", "mode": "lines+markers", "name": f"k = {k}", "legendgroup": "k",
                     "showlegend": row == 0, "line": {"color": ACCENT}, "marker": {"size": 3}})
        layout[f"xaxis{hx}"] = {"domain": xd[0], "anchor": f"y{hx}", "constrain": "domain",
                                "showticklabels": False, "showgrid": False, "zeroline": False}
        layout[f"yaxis{hx}"] = {"domain": yd[row], "anchor": f"x{hx}", "autorange": "reversed",
                                "scaleanchor": f"x{hx}", "constrain": "domain", "showgrid": False,
                                "zeroline": False}
        ylog = {}
        top = max(float(sv[0]), float(sv0[0])) if sv.size else 0.0
        if top > 0 and np.isfinite(top):
            ylog = {"type": "log", "range": [float(np.log10(top * 1e-6)), float(np.log10(top * 2))]}
        layout[f"xaxis{sx}"] = _axis(domain=xd[1], anchor=f"y{sx}", title={"text": "index i (σᵢ descending)"})
        layout[f"yaxis{sx}"] = _axis(domain=yd[row], anchor=f"x{sx}", **ylog)
        sub = "<sub>%d</sub>" % k
        notes.append(_title(f"{which}{sub} ({'h×h' if which == 'A' else 'w×w'}, {which_label})",
                            sum(xd[0]) / 2, yd[row][1] + 0.01))
        notes.append(_title(f"singular values of {which}{sub}", sum(xd[1]) / 2, yd[row][1] + 0.01))
    if foot:
        notes.append({"text": "<br>".join(foot), "x": 0, "y": -0.1, "yanchor": "top", "xref": "paper", "yref": "paper",
                      "showarrow": False, "xanchor": "left", "font": {"size": 10, "color": "#666"}})
    return {"data": data, "layout": _layout(680, annotations=notes, showlegend=True,
                                            legend={"x": 0.995, "xanchor": "right", "y": 0.985, "yanchor": "top",
                                                    "bgcolor": "rgba(255,255,255,0.8)", "font": {"size": 11}},
                                            margin={"l": 40, "r": 20, "t": 64, "b": 84}, **layout)}


# ----------------------------------------------------------------------------- explainable conv
def attention_figure(att: np.ndarray, order: Sequence[int] | None = None, selected: int | None = None,
                     max_tiles: int = 32, ncols: int = 8, title: str = "") -> Fig:
    """K×K attention maps (Eq. 18) of several channels tiled in one heatmap, row by row in the
    given (ranked) order, each tile labelled "#rank · ch c" as in :func:`channel_rank_figure`.
    A selected channel beyond ``max_tiles`` is added as one more tile, with its own rank."""
    c, kh, kw = att.shape
    order = list(range(c)) if order is None else [int(i) for i in order]
    rank = {ch: r + 1 for r, ch in enumerate(order)}
    shown = order[:max_tiles]
    if selected is not None and selected not in shown:
        shown = shown + [int(selected)]
    ncols = min(ncols, len(shown))
    nrows = int(np.ceil(len(shown) / ncols))
    gap = 1
    z = np.full((nrows * (kh + gap) - gap, ncols * (kw + gap) - gap), np.nan, np.float32)
    cd = np.full(z.shape, -1, np.int32)
    notes, shapes = [], []
    for t, ch in enumerate(shown):
        r, q = divmod(t, ncols)
        y, x = r * (kh + gap), q * (kw + gap)
        z[y:y + kh, x:x + kw] = att[ch]
        cd[y:y + kh, x:x + kw] = ch
        notes.append({"x": x + (kw - 1) / 2, "y": y - 0.5, "text": f"#{rank.get(ch, '?')} · ch {ch}",
                      "showarrow": False,
                      "yshift": 7, "font": {"size": 10, "color": ACCENT if ch == selected else "#444"}})
        if ch == selected:
            shapes.append({"type": "rect", "x0": x - 0.5, "x1": x + kw - 0.5, "y0": y - 0.5,
                           "y1": y + kh - 0.5, "line": {"color": ACCENT, "width": 3}})
    vals = att[shown]
    uniform = 1.0 / (kh * kw)
    heat = {"type": "heatmap", "z": typed_array(z), "customdata": typed_array(cd, "i4"), "colorscale": VIRIDIS,
            "zmin": float(min(vals.min(), uniform)), "zmax": float(max(vals.max(), uniform)),
            "colorbar": {"title": {"text": f"A<br>(uniform {uniform:.3f})", "side": "top"}, "thickness": 10},
            "hovertemplate": "channel %{customdata}<br>A = %{z:.4f}<extra></extra>"}
    lay = _layout(max(90 + nrows * 78, 200), annotations=notes, shapes=shapes,
                  xaxis={"visible": False, "constrain": "domain"},
                  yaxis={"visible": False, "autorange": "reversed", "scaleanchor": "x", "constrain": "domain"},
                  margin={"l": 10, "r": 10, "t": 50 if title else 24, "b": 10})
    if title:
        lay["title"] = {"text": title, "font": {"size": 13}, "x": 0.01, "xanchor": "left"}
    return {"data": [heat], "layout": lay}


def channel_rank_figure(rate: np.ndarray, tau: np.ndarray | None, selected: int | None = None,
                        title: str = "") -> Fig:
    """Channels ranked by mask activation (fraction of positions with x ≥ τ) and their τ."""
    rate = np.asarray(rate, dtype=np.float64)
    order = np.argsort(-rate, kind="stable")
    labels = [f"#{r + 1} · ch {int(i)}" for r, i in enumerate(order)]
    data = [{"type": "bar", "x": labels, "y": [float(v) for v in rate[order] * 100.0], "name": "mask active (%)",
             "marker": {"color": [ACCENT if int(i) == selected else "#4dabf7" for i in order]},
             "hovertemplate": "%{x}<br>active %{y:.1f}%<extra></extra>"}]
    if tau is not None and np.asarray(tau).size == rate.size:
        data.append({"type": "scatter", "x": labels, "y": [float(v) for v in np.asarray(tau)[order]],
                     "yaxis": "y2", "mode": "markers", "name": "learned τ",
                     "marker": {"symbol": "diamond", "size": 7, "color": "#212529"},
                     "hovertemplate": "%{x}<br>τ = %{y:.4f}<extra></extra>"})
    lay = _layout(300, showlegend=True, bargap=0.15,
                  legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.15},
                  xaxis=_axis(title={"text": "rank · channel"}, type="category", tickangle=-60,
                              categoryorder="array", categoryarray=labels,
                              tickfont={"size": 8 if rate.size > 40 else 10}),
                  yaxis=_axis(title={"text": "positions with M = 1 (%)"}, range=[0, 100]),
                  yaxis2=_axis(title={"text": "τ"}, overlaying="y", side="right", showgrid=False,
                               tickformat=".2~f"))
    if title:
        lay["title"] = {"text": title, "font": {"size": 13}, "x": 0.01, "xanchor": "left"}
    return {"data": data, "layout": lay}


# ----------------------------------------------------------------------------- embedding
def embedding_figure(ref: Any, placement: Any | None = None, thumbs: Sequence[str] | None = None,
                     user_label: str = "your image") -> Fig:
    """The reference set's 2-D t-SNE map coloured by combination, the user's image as a star.

    ``ref`` is a :class:`interir.reference.Reference`; ``thumbs`` optional data URIs (one per
    reference point) put in ``customdata[0]`` for the hover-thumbnail script.
    """
    data = []
    labels = np.asarray(ref.labels)
    for ci, combo in enumerate(ref.combos):
        sel = np.nonzero(labels == ci)[0]
        if sel.size == 0:
            continue
        custom = [[thumbs[i] if thumbs else "", ref.sources[i],
                   f"haze {ref.levels[i][0]:.0f}, rain {ref.levels[i][1]:.0f}, noise {ref.levels[i][2]:.0f}"]
                  for i in sel]
        data.append({"type": "scatter", "x": [float(v) for v in ref.coords[sel, 0]],
                     "y": [float(v) for v in ref.coords[sel, 1]], "mode": "markers", "name": combo_label(combo),
                     "marker": {"size": 9, "color": COMBO_COLORS.get(combo, "#495057"), "opacity": 0.85,
                                "line": {"color": "white", "width": 0.5}},
                     "customdata": custom,
                     "hovertemplate": f"<b>{combo_label(combo)}</b><br>%{{customdata[1]}}<br>"
                                      "%{customdata[2]}<extra></extra>"})
    if placement is not None:
        x, y = placement.xy
        for j in placement.neighbours:
            data.append({"type": "scatter", "x": [x, float(ref.coords[j, 0])], "y": [y, float(ref.coords[j, 1])],
                         "mode": "lines", "line": {"color": "rgba(33,37,41,0.35)", "width": 1},
                         "showlegend": False, "hoverinfo": "skip"})
        data.append({"type": "scatter", "x": [x], "y": [y], "mode": "markers", "name": user_label,
                     "marker": {"symbol": "star", "size": 22, "color": "#212529",
                                "line": {"color": "white", "width": 2}},
                     "hovertemplate": f"<b>{user_label}</b><br>diagnosis: {combo_label(placement.combo)} "
                                      f"({placement.confidence:.0%})<extra></extra>"})
    # title on the left, below plotly's toolbar (top right)
    return {"data": data, "layout": _layout(500, showlegend=True, hovermode="closest",
                                            margin={"l": 50, "r": 20, "t": 70, "b": 40},
                                            title={"text": "Reference images by degradation combination "
                                                           "(t-SNE)", "font": {"size": 13}, "x": 0.01,
                                                   "xanchor": "left", "y": 0.97, "yanchor": "top"},
                                            legend={"title": {"text": "combination"}, "itemsizing": "constant"},
                                            xaxis=_axis(showticklabels=False, title={"text": "t-SNE 1"},
                                                        zeroline=False, ticks=""),
                                            yaxis=_axis(showticklabels=False, title={"text": "t-SNE 2"},
                                                        zeroline=False, ticks=""))}

