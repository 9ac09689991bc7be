"""The iteration viewer: every iteration's decoded image, change map and step line in one HTML
block, so that stepping through k happens in the browser (:data:`VIEWER_JS`'s ``show(k)`` shows
one k and hides the others) with no request to the server.

Frames are JPEG (quality 92, full-resolution colour: visually lossless, a fifth of a PNG's
size); change maps are lossless palette PNGs (the colour map's 256 levels). Pure functions, no
model, no gradio.
"""
from __future__ import annotations

import html
import re
from typing import Any, Sequence

from .images import change_levels, indexed_png_data_uri, jpeg_data_uri

__all__ = ["FRAME_LABEL", "CHANGE_LABEL", "VIEWER_CSS", "VIEWER_JS", "SHOW_K_JS", "frame_uris", "step_html",
           "iteration_viewer"]

FRAME_LABEL = "Decoded image at k (early exit)"
CHANGE_LABEL = "Change |I_k − I_(k−1)| (k = 0: from the input)"
FRAME_QUALITY = 92
EMPTY = "Restore an image to step through its iterations."

#: Styles of :func:`iteration_viewer` (gradio theme variables, with fallbacks for plain pages).
VIEWER_CSS = """
.iter-viewer {display: flex; flex-direction: column; gap: 10px}
.iter-viewer .iv-row {display: flex; flex-wrap: wrap; gap: var(--layout-gap, 16px)}
.iter-viewer .iv-pane {position: relative; flex: 1 1 320px; min-width: 0; height: 380px; margin: 0;
  overflow: hidden; background: var(--block-background-fill, #fff);
  border: var(--block-border-width, 1px) solid var(--block-border-color, #e5e7eb);
  border-radius: var(--block-radius, 8px); box-shadow: var(--block-shadow, none)}
.iter-viewer .iv-label {position: absolute; top: 0; left: 0; z-index: 1; margin: 0;
  padding: var(--block-label-padding, 4px 8px); line-height: 1.3;
  font-size: var(--block-label-text-size, 12px); font-weight: var(--block-label-text-weight, 400);
  color: var(--block-label-text-color, #4b5563); background: var(--block-label-background-fill, #fff);
  border-right: 1px solid var(--block-border-color, #e5e7eb);
  border-bottom: 1px solid var(--block-border-color, #e5e7eb);
  border-radius: 0 0 var(--block-label-radius, 6px) 0}
.iter-viewer .iv-pane img, .iter-viewer .iv-empty {position: absolute; top: 32px; left: 0;
  width: 100%; height: calc(100% - 40px)}
.iter-viewer .iv-pane img {display: block; object-fit: contain}
.iter-viewer .iv-empty {display: flex; align-items: center; justify-content: center;
  color: var(--body-text-color-subdued, #6b7280); font-size: var(--text-md, 14px)}
.iter-viewer .iv-text p {margin: 0; font-size: var(--text-md, 14px); line-height: 1.5;
  color: var(--body-text-color, #1f2937)}
.iter-viewer .iv-buttons {position: absolute; top: 4px; right: 4px; z-index: 2; display: flex; gap: 4px}
.iter-viewer .iv-btn {display: inline-flex; align-items: center; justify-content: center; width: 24px;
  height: 24px; padding: 0; cursor: pointer; color: var(--block-label-text-color, #4b5563);
  background: var(--block-background-fill, #fff); border: 1px solid var(--block-border-color, #e5e7eb);
  border-radius: var(--radius-sm, 4px)}
.iter-viewer .iv-btn:hover {color: var(--body-text-color, #1f2937)}
.iter-viewer .iv-pane:fullscreen {height: 100vh; border-radius: 0}
.iter-viewer [hidden] {display: none !important}
"""

#: A page script (for the head): ``window.interirViewer`` with ``show(k)`` (show iteration k in
#: every viewer on the page; nothing changes if a viewer has no k; idempotent, so a slider's
#: input and change events may both call it) and the panes' download and full-screen buttons.
VIEWER_JS = """(function () {
  if (window.interirViewer) { return; }
  function shown(fig) { return Array.from(fig.querySelectorAll('img[data-k]')).find((i) => !i.hidden); }
  window.interirViewer = {
    show: function (k) { k = String(Math.round(Number(k)));
      document.querySelectorAll('.iter-viewer').forEach((root) => {
        const items = Array.from(root.querySelectorAll('[data-k]'));
        if (!items.some((el) => el.dataset.k === k)) { return; }
        items.forEach((el) => { const off = el.dataset.k !== k; if (el.hidden !== off) { el.hidden = off; } });
      }); },
    download: function (a) { const i = shown(a.closest('figure')); if (!i) { return false; }
      const ext = i.src.startsWith('data:image/png') ? '.png' : '.jpg';
      a.href = i.src; a.download = a.dataset.name + '_k' + i.dataset.k + ext; return true; },
    fullscreen: function (b) { const f = b.closest('figure');
      if (document.fullscreenElement) { document.exitFullscreen(); }
      else if (f.requestFullscreen) { f.requestFullscreen(); } }
  };
})();"""

#: ``(k) => ...``: show iteration k (needs :data:`VIEWER_JS` in the page).
SHOW_K_JS = "(k) => { if (window.interirViewer) { window.interirViewer.show(k); } }"

_ICON = ('<svg viewBox="0 0 24 24" width="14" height="14" fill="none" stroke="currentColor" stroke-width="2" '
         'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="{}"/></svg>')
_BUTTONS = (
    '<div class="iv-buttons"><a class="iv-btn" href="#" role="button" title="Download this frame" '
    'data-name="{name}" onclick="return window.interirViewer.download(this)">'
    + _ICON.format("M12 4v11M7 10l5 5 5-5M5 20h14") + '</a>'
    '<button class="iv-btn" type="button" title="Full screen" onclick="window.interirViewer.fullscreen(this)">'
    + _ICON.format("M4 9V4h5M20 9V4h-5M4 15v5h5M20 15v5h-5") + '</button></div>')


def frame_uris(ct: Any, k: int) -> tuple[str, str]:
    """Iteration k's decoded image (JPEG) and change map (palette PNG) as data URIs."""
    levels, _ = change_levels(ct, k)
    return (jpeg_data_uri(ct.images[k], FRAME_QUALITY, full_chroma=True),
            indexed_png_data_uri(levels, "magma", compress_level=1))


def step_html(md: str) -> str:
    """A step line in the small Markdown :func:`viz.text.step_text` writes (``**bold**``) as HTML."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(md, quote=False))


def _pane(pane_id: str, label: str, uris: Sequence[str], what: str, name: str, k: int) -> str:
    # decoding="sync": a frame shown by show(k) is decoded before the next paint (no blank flash)
    body = "".join(f'<img data-k="{i}" src="{u}" alt="{what} at k = {i}" decoding="sync"'
                   f'{"" if i == k else " hidden"}>' for i, u in enumerate(uris))
    body = body + _BUTTONS.format(name=name) if body else f'<div class="iv-empty">{EMPTY}</div>'
    return (f'<figure class="iv-pane" id="{pane_id}"><figcaption class="iv-label">{html.escape(label)}'
            f'</figcaption>{body}</figure>')


def iteration_viewer(frames: Sequence[tuple[str, str]], texts: Sequence[str], k: int | None = None,
                     ids: tuple[str, str, str] = ("img-k", "diff-k", "step-info")) -> str:
    """The viewer's HTML: ``frames[k]`` = (image URI, change-map URI) and ``texts[k]`` (Markdown
    step lines) for every k, iteration k shown (default: the last), the others hidden until
    ``show(k)`` shows them. ``ids``: element ids of the image pane, the change pane and the
    step line. No frames: empty panes that say what to do. Needs :data:`VIEWER_CSS` and
    :data:`VIEWER_JS` in the page."""
    if len(frames) != len(texts):
        raise ValueError(f"{len(frames)} frames but {len(texts)} step lines")
    k = len(frames) - 1 if k is None else k
    lines = "".join(f'<p data-k="{i}"{"" if i == k else " hidden"}>{step_html(t)}</p>'
                    for i, t in enumerate(texts))
    return (f'<div class="iter-viewer" data-n="{len(frames)}"><div class="iv-row">'
            f'{_pane(ids[0], FRAME_LABEL, [f for f, _ in frames], "decoded image", "iteration", k)}'
            f'{_pane(ids[1], CHANGE_LABEL, [c for _, c in frames], "change map", "change", k)}</div>'
            f'<div class="iv-text" id="{ids[2]}">{lines}</div></div>')
