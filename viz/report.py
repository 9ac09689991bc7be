"""A static, self-contained HTML report of one traced image (used by ``interir report`` and the
app's Export panel). Figures are plotly (plotly.js inlined once, so it works offline) and PNG
images embedded as data URIs."""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from interir.fileio import atomic_write_text
from interir.reference import Placement, Reference, place
from interir.trace import jsonable

from . import text
from .compact import CompactTrace, parse_layer
from .hover import HOVER_JS
from .images import (change_frame, change_scales, channel_grid, fit_pca, jpeg_data_uri, mask_overlay, pca_rgb,
                     png_data_uri, resize_max, thumbnail, upscale_to)
from .plots import (attention_figure, channel_rank_figure, combo_label, embedding_figure,
                    iteration_curves, matrices_figure)

__all__ = ["build_report", "write_report", "lambda_basis"]

CSS = """
body{font-family:Inter,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:24px auto;
padding:0 16px;color:#212529;line-height:1.45}
h1{font-size:26px;margin-bottom:4px} h2{font-size:20px;margin-top:34px;border-bottom:2px solid #e9ecef;
padding-bottom:4px} .muted{color:#6c757d;font-size:13px} .row{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0} figcaption{font-size:12px;color:#495057;text-align:center}
img.px{image-rendering:pixelated} table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #dee2e6;padding:3px 8px;text-align:right} th{background:#f8f9fa}
.note{background:#fff4e6;border-left:4px solid #e8590c;padding:6px 10px;margin:8px 0}
.explain{background:#f1f3f5;padding:8px 12px;border-radius:6px;font-size:14px}
"""


def _img(arr: np.ndarray, caption: str = "", width: int | None = None, pixelated: bool = False,
         lossy: bool = False) -> str:
    """An <img> figure; ``lossy`` uses JPEG (previews), otherwise PNG (exact pixels)."""
    w = f' width="{width}"' if width else ""
    cls = ' class="px"' if pixelated else ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    src = jpeg_data_uri(arr) if lossy else png_data_uri(arr)
    return f'<figure><img src="{src}"{w}{cls} alt="{html.escape(caption)}">{cap}</figure>'


def _fig(fig: Any) -> str:
    import plotly.io as pio

    return pio.to_html(fig, full_html=False, include_plotlyjs=False, validate=False,
                       config={"displaylogo": False, "responsive": True})


_TEX = [("\\hat I", "Î"), ("\\eta", "η"), ("\\Lambda", "Λ"), ("\\tau", "τ"), ("\\|", "‖"),
        ("\\cdot", "·"), ("\\in", "∈"), ("\\mathbb{R}", "ℝ"), ("\\times ", "×"), ("\\times", "×"), ("\\ge", "≥"),
        ("\\le", "≤"), ("\\odot", "⊙"), ("\\oplus", "⊕"), ("\\,", " ")]


def _tex(expr: str) -> str:
    """The small LaTeX subset of viz.text as HTML (the report has no maths renderer)."""
    import re

    for a, b in _TEX:
        expr = expr.replace(a, b)
    expr = re.sub(r"_\{([^}]*)\}", r"<sub>\1</sub>", expr)
    expr = re.sub(r"\^\{([^}]*)\}", r"<sup>\1</sup>", expr)
    expr = re.sub(r"_(\w)", r"<sub>\1</sub>", expr)
    expr = re.sub(r"\^(\w)", r"<sup>\1</sup>", expr)
    return f"<i>{expr}</i>"


def _md(s: str) -> str:
    """The shared panel texts (bold, italics, code, ``$maths$``) as an HTML paragraph."""
    import re

    s = html.escape(s, quote=False)
    s = re.sub(r"\$(.+?)\$", lambda m: _tex(m.group(1)), s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
    s = re.sub(r"`(.+?)`", r"<code>\1</code>", s)
    s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", s)
    return f'<p class="explain">{s}</p>'


def lambda_basis(ct: CompactTrace) -> dict[str, np.ndarray]:
    """One PCA colour basis for Λ over all iterations (cached on the trace)."""
    return ct.memo("lambda_pca", lambda: fit_pca(ct.Lambda))


def _metric_line(ct: CompactTrace) -> str:
    if ct.psnr is None:
        return "No clean reference: PSNR/SSIM not available."
    s = f"PSNR {ct.input_psnr:.2f} dB → {ct.psnr[-1]:.2f} dB"
    if ct.ssim is not None:
        s += f"; SSIM {ct.input_ssim:.3f} → {ct.ssim[-1]:.3f}"
    return s


def _restore_section(ct: CompactTrace) -> list[str]:
    """The report's restore section."""
    parts: list[str] = []

    disp = 384
    row = [_img(resize_max(ct.input, 768), "degraded input", disp),
           _img(resize_max(ct.output, 768), "restored", disp)]
    if ct.reference is not None:
        row.append(_img(resize_max(ct.reference, 768), "clean reference", disp))
    parts += ["<h2>Restore</h2>", _md(text.RESTORE), f"<div class='row'>{''.join(row)}</div>",
              f"<p>{html.escape(_metric_line(ct))}</p>"]

    return parts


def _iterations_section(ct: CompactTrace) -> list[str]:
    """The report's iterations section."""
    parts: list[str] = []

    parts += ["<h2>Iterations</h2>", _md(text.ITERATIONS)]
    strip, diffs = [], []
    first, rest = change_scales(ct)
    for k in range(ct.n_iter):
        cap = f"k = {k}" + (f" · {ct.psnr[k]:.2f} dB" if ct.psnr is not None else "")
        strip.append(_img(resize_max(ct.images[k], 256), cap, 180, lossy=True))
        d, _ = change_frame(ct, k)
        diffs.append(_img(resize_max(d, 256), f"|I{k} − I{k - 1 if k else 'input'}|", 180, lossy=True))
    parts += [f"<div class='row'>{''.join(strip)}</div>",
              f"<p class='muted'>Change between consecutive decodes (mean |Δ| over RGB, square-root colour "
              f"scale; brightest = {first * 255:.1f}/255 or more for k = 0, measured from the input, and "
              f"{rest * 255:.1f}/255 or more for every k ≥ 1):</p>",
              f"<div class='row'>{''.join(diffs)}</div>", _fig(iteration_curves(ct, ct.n_iter - 1)),
              _md(text.curve_notes(ct))]

    return parts


def _matrices_section(ct: CompactTrace) -> list[str]:
    """The report's matrices section."""
    parts: list[str] = []

    k_last = ct.n_iter - 1
    basis = lambda_basis(ct)
    pcas = [_img(upscale_to(resize_max(pca_rgb(ct.Lambda[k], basis), 256), 200), f"Λ{k} PCA→RGB", 170, True)
            for k in range(ct.n_iter)]
    parts += ["<h2>Degradation matrices and multiplier</h2>", _md(text.MATRICES),
              _fig(matrices_figure(ct, k_last, None)),
              f"<div class='row'>{''.join(pcas)}</div>",
              _img(channel_grid(ct.Lambda[k_last].astype(np.float32)), f"Λ{k_last} per channel", None, True)]

    return parts


def _explain_section(ct: CompactTrace) -> list[str]:
    """The report's explain section."""
    parts: list[str] = []

    parts += ["<h2>Explainable convolution</h2>", _md(text.EXPLAIN)]
    if not ct.has_masks:
        parts.append("<div class='note'>This model uses standard convolutions "
                     "(conv_type = standard): there are no masks or attention maps to show.</div>")
    else:
        groups = ct.groups()
        names = list(groups)
        pick = sorted({0, len(names) // 2, len(names) - 1})
        base = resize_max(ct.input, 256)
        gray = (0.35 * base + 0.65 * base.mean(axis=2, keepdims=True)).astype(np.uint8)
        for gi in pick:
            g = names[gi]
            cells = []
            for lname in groups[g]:
                rate = ct.mask_rate[lname]
                c = int(np.argmin(np.abs(rate - 0.5)))  # the most informative binary mask
                cells.append(_img(mask_overlay(gray, ct.mask(lname)[c], 0.6),
                                  f"{parse_layer(lname).rest} · ch {c} ({rate[c]:.0%} active)", 170, lossy=True))
            parts += [f"<h3>{html.escape(g)} — mask M (orange: x ≥ τ) of the channel closest to half active, "
                      "per explainable conv</h3>",
                      f"<div class='row'>{''.join(cells)}</div>"]
        last = groups[names[-1]]
        top = max(last, key=lambda n: float(ct.mask_rate[n].mean()))
        rate = ct.mask_rate[top]
        order = list(np.argsort(-rate, kind="stable"))
        parts += [_fig(attention_figure(ct.attention[top], order, selected=int(order[0]),
                                        title=f"attention A per channel — {top} (ranked by activation)")),
                  _fig(channel_rank_figure(rate, ct.tau.get(top), selected=int(order[0]),
                                           title=f"mask activation and τ — {top}"))]
        rows = "".join(
            f"<tr><td style='text-align:left'>{html.escape(n)}</td><td>{ct.mask_shape[n][0]}</td>"
            f"<td>{float(ct.mask_rate[n].mean()):.1%}</td><td>{float(ct.tau[n].mean()):+.4f}</td>"
            f"<td>{float(ct.tau[n].min()):+.4f} … {float(ct.tau[n].max()):+.4f}</td></tr>"
            for n in ct.layers if n in ct.tau)
        parts.append("<details><summary>All explainable convolutions (activation, learned τ)</summary>"
                     "<table><tr><th>layer</th><th>channels</th><th>mask active</th><th>mean τ</th>"
                     f"<th>τ range</th></tr>{rows}</table></details>")

    return parts


def _embedding_section(ct: CompactTrace, reference: Reference | None, placement: Placement | None, reference_note: str) -> list[str]:
    """The report's embedding section."""
    parts: list[str] = []

    parts += ["<h2>Degradation embedding</h2>", _md(text.EMBEDDING)]
    if reference is not None:
        try:
            placement = placement or place(reference, ct.embedding)
        except Exception as exc:  # noqa: BLE001 - incompatible reference: say so, keep the report
            placement = None
            reference_note = reference_note or str(exc)
    if reference is not None and placement is not None:
        thumbs = [png_data_uri(t) for t in reference.thumbs]
        parts.append(_fig(embedding_figure(reference, placement, thumbs)))
        probs = sorted(placement.probs.items(), key=lambda kv: -kv[1])
        cells = "".join(f"<tr><td style='text-align:left'>{combo_label(c)}</td><td>{p:.0%}</td></tr>"
                        for c, p in probs if p > 0)
        parts.append(f"<p><b>Diagnosis: {combo_label(placement.combo)}</b> with confidence "
                     f"{placement.confidence:.0%} (weighted vote of {len(placement.neighbours)} nearest "
                     f"reference images).</p><table><tr><th>combination</th><th>weight</th></tr>{cells}</table>")
        if placement.out_of_distribution:
            parts.append("<div class='note'>This image is far from every reference image: "
                         "treat the diagnosis with caution.</div>")
        nbrs = [_img(thumbnail(reference.thumbs[j], 96), f"{combo_label(reference.combos[int(reference.labels[j])])}",
                     96) for j in placement.neighbours]
        parts.append(f"<p class='muted'>Nearest reference images:</p><div class='row'>{''.join(nbrs)}</div>")
    else:
        parts.append("<div class='note'>No reference embedding set for this model"
                     + (f": {html.escape(reference_note)}" if reference_note else "") + ".</div>")

    return parts


def build_report(ct: CompactTrace, reference: Reference | None = None, title: str | None = None,
                 placement: Placement | None = None, reference_note: str = "") -> str:
    """The whole report as one HTML string."""
    import plotly.offline

    ct.complete_ssim()
    cfg = ct.config
    title = title or f"InterIR report — {ct.name}"
    H, W = ct.input.shape[:2]
    parts: list[str] = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style>",
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>",
        f"<script>{HOVER_JS}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='muted'>{W}×{H} px · model: preset {html.escape(str(cfg.get('preset', '?')))}, "
        f"n = {cfg.get('n_blocks', '?')} IPBlocks, C = {cfg.get('channels', '?')}, "
        f"conv {html.escape(str(cfg.get('conv_type', '?')))}, F form {html.escape(str(cfg.get('f_form', '?')))}"
        f" · generated by InterIR Explorer</p>",
        _md(text.INTRO),
    ]
    for note in ct.notes:
        parts.append(f"<div class='note'>{html.escape(note)}</div>")

    parts += _restore_section(ct) + _iterations_section(ct) + _matrices_section(ct) + _explain_section(ct)
    parts += _embedding_section(ct, reference, placement, reference_note)
    # --- summary
    summary = json.dumps(jsonable(ct.summary_dict()), indent=1)
    parts += ["<h2>Summary</h2>", f"<details><summary>JSON summary</summary><pre>{html.escape(summary)}</pre></details>",
              "</body></html>"]
    return "\n".join(parts)


def write_report(html_text: str, path: str | os.PathLike) -> Path:
    """Write the report atomically (temporary file + rename)."""
    atomic_write_text(path, html_text)
    return Path(path)
