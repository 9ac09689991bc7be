"""The explorer's layout: components wired to :class:`app.handlers.Explorer` methods."""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import gradio as gr

from interir.errors import InterIRError
from viz import text as T
from viz.hover import HOVER_JS
from viz.viewer import CHANGE_LABEL, FRAME_LABEL, SHOW_K_JS, VIEWER_CSS, VIEWER_JS, iteration_viewer

from .handlers import DEFAULT_NEIGHBOURS, Explorer, Session
from .session import check_upload, drop_session

log = logging.getLogger("interir.app")

CSS = """
.gradio-container {max-width: 1400px !important}
#title h1 {margin-bottom: 0}
.panel-text {font-size: 0.95em; color: var(--body-text-color-subdued)}
#model-info {font-size: 0.9em}
#restore-btn, #degrade-btn {min-height: 44px}
#why-image img {cursor: crosshair}
""" + VIEWER_CSS

# System fonts only: the page must not fetch anything from the internet (no Google Fonts).
THEME = gr.themes.Soft(primary_hue="orange", secondary_hue="blue", neutral_hue="slate",
                       font=["ui-sans-serif", "system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Consolas", "monospace"])
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
# gradio's client replaces EventSource with a fetch stream whose close() only logs "Method not
# implemented." (gradio/js/client), once per finished event: drop exactly that message.
QUIET_JS = """(function () { const warn = console.warn;
  console.warn = function (...a) { if (a.length === 1 && a[0] === 'Method not implemented.') { return; }
    return warn.apply(console, a); }; })();"""
HEAD = f"<script>{QUIET_JS}</script><script>{HOVER_JS}</script><script>{VIEWER_JS}</script>"
STATE_TTL_S = 3600
# Moves the selected-iteration markers ("sel:<curve>" traces) and the dashed "k-line" shapes of
# the iteration curves (viz.plots.iteration_curves) to k, with the plotly.js gradio loaded, in
# one Plotly.update (a single redraw).
MARK_K_JS = """(k) => { const gd = document.querySelector('#curves .js-plotly-plot'); const P = window.Plotly;
  if (!gd || !P || !gd.data) { return; }
  k = Math.round(Number(k)); const idx = [], xs = [], ys = [], lay = {};
  gd.data.forEach((t, i) => { if (typeof t.name === 'string' && t.name.startsWith('sel:')) {
    const src = gd.data.find(u => u.name === t.name.slice(4));
    idx.push(i); xs.push([k]); ys.push([src && src.y ? src.y[k] : null]); } });
  (gd.layout.shapes || []).forEach((s, i) => { if (s.name === 'k-line') {
    lay['shapes[' + i + '].x0'] = k; lay['shapes[' + i + '].x1'] = k; } });
  const moved = idx.every(i => gd.data[i].x && gd.data[i].x[0] === k);  // (input and change both call)
  if (idx.length && !moved) { P.update(gd, {x: xs, y: ys}, lay, idx); }
}"""
# The iteration slider steps in the browser (no request): show iteration k's frames and step
# line (viz.viewer), then, after that paint, move the curves' marker.
STEP_JS = f"""(k) => {{ ({SHOW_K_JS})(k);
  requestAnimationFrame(() => setTimeout(() => ({MARK_K_JS})(k), 0)); return []; }}"""


class RobustImage(gr.Image):
    """``gr.Image`` whose upload pre-processing never fails with a traceback.

    With ``type="filepath"`` and ``image_mode=None`` gradio hands over the uploaded file as is
    (so interir's reader handles 16-bit, CMYK, EXIF, ...); a file that is not an image at all
    becomes a one-line ``gr.Error``.
    """

    is_template = True  # render with gradio's own Image front end

    def preprocess(self, payload: Any) -> Any:  # noqa: D102
        name = getattr(payload, "orig_name", None) or "the uploaded file"
        try:
            if getattr(payload, "path", None):
                check_upload(payload.path, name)  # size and decompression bombs, from the header
            return super().preprocess(payload)
        except InterIRError as exc:
            log.info("upload refused: %s", exc)
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001
            log.info("upload refused: %s: %s", name, type(exc).__name__)
            raise gr.Error(f"{name}: not a recognised image file ({type(exc).__name__})",
                           print_exception=False) from None


def _md(value: str = "", **kw: Any) -> gr.Markdown:
    """gr.Markdown with inline ``$...$`` maths."""
    return gr.Markdown(value, latex_delimiters=LATEX, **kw)


def _image_input(label: str, height: int = 320, elem_id: str | None = None) -> RobustImage:
    return RobustImage(label=label, type="filepath", image_mode=None, format="png",
                       sources=["upload", "clipboard"], height=height, elem_id=elem_id)


class Wiring:
    """The page's components by name, and events wired to handlers that return dicts keyed by
    those names (``@handler(name, outputs)`` in app.handlers)."""

    def __init__(self) -> None:
        self.c: dict[str, Any] = {}

    def __call__(self, name: str, component: Any) -> Any:
        """Register a component under ``name`` (the key handlers use) and return it."""
        if name in self.c:
            raise ValueError(f"two components named {name!r}")
        self.c[name] = component
        return component

    def _fn(self, fn: Callable[..., dict[str, Any]]) -> tuple[Callable[..., Any], list[Any]]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> dict[Any, Any]:
            return {self.c[n]: v for n, v in fn(*args, **kwargs).items()}
        return run, [self.c[n] for n in fn.outputs]

    def on(self, triggers: list[Any], fn: Callable[..., dict[str, Any]], inputs: list[str], **kw: Any) -> Any:
        """``gr.on(triggers, fn)`` with inputs by name and the outputs fn declares."""
        run, outputs = self._fn(fn)
        return gr.on(triggers, run, [self.c[n] for n in inputs], outputs, **kw)

    def then(self, dep: Any, fn: Callable[..., dict[str, Any]], inputs: list[str], **kw: Any) -> Any:
        """Run ``fn`` after ``dep`` succeeded."""
        run, outputs = self._fn(fn)
        return dep.success(run, [self.c[n] for n in inputs], outputs, **kw)


def _on_upload(ex: Explorer) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """restore and panels for inp.change: a cleared input (None) changes nothing, shows no error."""
    def restore_auto(image: Any, reference: Any, session: Any, progress: gr.Progress = gr.Progress()) -> Any:
        return {} if image is None else ex.restore(image, reference, session, progress)

    def panels_auto(image: Any, session: Any) -> Any:
        return {} if image is None or session is None or session.trace is None else ex.panels(session)

    def more_auto(image: Any, session: Any) -> Any:
        return {} if image is None or session is None or session.trace is None else ex.panels_more(session)

    restore_auto.outputs = ex.restore.outputs  # type: ignore[attr-defined]
    panels_auto.outputs = ex.panels.outputs  # type: ignore[attr-defined]
    more_auto.outputs = ex.panels_more.outputs  # type: ignore[attr-defined]
    return restore_auto, panels_auto, more_auto


def _input_column(ex: Explorer, w: Wiring) -> None:
    _md("## 1 · Input\n" + T.INPUT, elem_classes="panel-text")
    with gr.Tabs():
        with gr.Tab("Upload", id="upload"):
            inp = w("inp", _image_input("Degraded image", elem_id="input-image"))
            if ex.example_paths():
                gr.Examples(examples=[[p] for p in ex.example_paths()], inputs=[inp],
                            label="Examples (degraded from public-domain photos; clean references known)",
                            examples_per_page=8)
            with gr.Accordion("Clean reference (optional, for PSNR / SSIM)", open=False):
                w("ref_inp", _image_input("Clean reference, same size as the image", 220, "reference-image"))
        with gr.Tab("Degradation lab", id="lab"):
            _md("Degrade a clean image with the training degradations (haze → rain → noise, seeded); the "
                "clean image becomes the reference.", elem_classes="panel-text")
            clean = w("clean_inp", _image_input("Clean image", 260, "clean-image"))
            if ex.clean_example_paths():
                gr.Examples(examples=[[p] for p in ex.clean_example_paths()], inputs=[clean],
                            label="Clean photos (public domain / CC0)", examples_per_page=8)
            with gr.Row():
                w("haze", gr.Slider(0, 150, value=60, step=1, label="Haze level h (0–150)"))
                w("rain", gr.Slider(0, 300, value=120, step=1, label="Rain level r (0–300)"))
            with gr.Row():
                w("noise", gr.Slider(0, 50, value=15, step=1, label="Noise σ (0–50, on 0–255)"))
                w("seed", gr.Number(value=0, precision=0, minimum=0, label="Seed"))
            w("degrade_btn", gr.Button("Degrade, then restore", variant="primary", elem_id="degrade-btn"))
            w("lab_md", _md(elem_id="lab-info"))
    w("restore_btn", gr.Button("Restore", variant="primary", elem_id="restore-btn"))


def _iterations_tab(n: int, w: Wiring) -> None:
    _md(T.ITERATIONS, elem_classes="panel-text")
    with gr.Row():
        w("k_slider", gr.Slider(0, n, value=n, step=1, label="Iteration k", scale=5, elem_id="k-slider"))
        w("play_btn", gr.Button("▶ Play", scale=1, size="sm", elem_id="play-btn"))
        w("timer", gr.Timer(0.8, active=False))
    # every k's frames and step line at once (filled by /panels); STEP_JS shows one
    w("iter_view", gr.HTML(iteration_viewer([], []), js_on_load=None, apply_default_css=False,
                           elem_id="iter-viewer"))
    # /step's outputs, for gradio_client users (the page does not call /step)
    w("img_k", gr.Image(label=FRAME_LABEL, type="filepath", interactive=False, visible=False))
    w("diff_k", gr.Image(label=CHANGE_LABEL, type="filepath", interactive=False, visible=False))
    w("step_md", _md(visible=False))
    w("step_api", gr.Button("step", visible=False))
    w("curves", gr.Plot(label="Per-iteration curves", show_label=False, elem_id="curves"))
    w("curves_md", _md(elem_id="curves-info"))


def _matrices_tab(n: int, w: Wiring) -> None:
    _md(T.MATRICES, elem_classes="panel-text")
    with gr.Row():
        w("mat_k", gr.Slider(0, n, value=n, step=1, label="Iteration k", scale=3))
        w("mat_ch", gr.Dropdown(choices=[("mean over channels", "mean")], value="mean", label="Channel",
                                scale=2, allow_custom_value=True))
    w("mat_plot", gr.Plot(label="A_k and B_k", show_label=False, elem_id="matrices-plot"))
    with gr.Row():
        w("lam_grid", gr.Image(label="Λ_k per channel (red > 0 > blue)", type="filepath", interactive=False,
                               height=420))
        w("lam_pca", gr.Image(label="Λ_k: first 3 principal components as RGB", type="filepath",
                              interactive=False, height=420))
    w("mat_md", _md(elem_id="matrices-info"))


def _explain_tab(w: Wiring) -> None:
    _md(T.EXPLAIN, elem_classes="panel-text")
    with gr.Row():
        # choices depend on the session's trace: values are validated by the handler
        w("m_group", gr.Dropdown(label="Block", choices=[], scale=2, allow_custom_value=True))
        w("m_layer", gr.Dropdown(label="Explainable conv", choices=[], scale=2, allow_custom_value=True))
        w("m_chan", gr.Dropdown(label="Channel (#rank by activation)", choices=[], scale=2,
                                allow_custom_value=True))
        w("m_opacity", gr.Slider(0, 1, value=0.6, step=0.05, label="Mask opacity", scale=2))
    with gr.Row(equal_height=False):
        w("m_overlay", gr.Image(label="Mask M over the input", type="filepath", interactive=False, height=420,
                                scale=5, elem_id="mask-overlay"))
        with gr.Column(scale=6):
            w("m_att", gr.Plot(label="Attention", show_label=False, elem_id="attention-plot"))
    w("m_rank", gr.Plot(label="Channels", show_label=False, elem_id="rank-plot"))
    w("m_md", _md(elem_id="masks-info"))


def _embedding_tab(ex: Explorer, w: Wiring) -> None:
    _md(T.EMBEDDING, elem_classes="panel-text")
    with gr.Row(equal_height=False):
        with gr.Column(scale=7):
            w("emb_plot", gr.Plot(label="t-SNE of the reference set", show_label=False, elem_id="embedding-plot"))
        with gr.Column(scale=4):
            n_max = len(ex.reference) if ex.reference is not None else DEFAULT_NEIGHBOURS
            w("emb_k", gr.Slider(1, max(n_max, 2), value=DEFAULT_NEIGHBOURS, step=1,
                                 label="Neighbours in the vote (k)", elem_id="emb-k"))
            w("emb_md", _md(elem_id="embedding-info"))
            # no label or buttons: on a one-row gallery they covered the thumbnails (the text
            # above says what they are)
            w("emb_gallery", gr.Gallery(label="Nearest reference images", show_label=False, buttons=[],
                                        columns=4, height="auto", object_fit="contain", allow_preview=False,
                                        elem_id="emb-gallery"))


def _why_tab(w: Wiring) -> None:
    _md(T.WHY, elem_classes="panel-text")
    with gr.Row():
        w("why_mode", gr.Radio([("point (a square around the click)", "point"),
                                ("box (click two corners)", "box")], value="point", label="Region",
                               scale=3))
        for key, label in (("why_x0", "x (or x0)"), ("why_y0", "y (or y0)"), ("why_x1", "x1 (box)"),
                           ("why_y1", "y1 (box)")):
            w(key, gr.Number(label=label, precision=0, minimum=0, scale=1))
        w("why_btn", gr.Button("Explain this region", scale=1, elem_id="why-btn"))
    with gr.Row(equal_height=False):
        w("why_img", gr.Image(label="Restored image: click to choose the region", type="filepath",
                              interactive=False, height=420, elem_id="why-image"))
        w("why_attr", gr.Plot(label="(a) attribution over the degraded input", show_label=False,
                              elem_id="why-attr"))
    w("why_md", _md(elem_id="why-info"))
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            w("why_iter", gr.Plot(label="(b) change per iteration", show_label=False, elem_id="why-iter"))
        with gr.Column(scale=6):
            w("why_chan", gr.Plot(label="(c) most active explainable-conv channels", show_label=False,
                                  elem_id="why-chan"))


def _panel_tabs(ex: Explorer, n: int, w: Wiring) -> None:
    with gr.Tabs(elem_id="panels"):
        with gr.Tab("3 · Iterations", id="iterations"):
            _iterations_tab(n, w)
        with gr.Tab("4 · Matrices A, B, Λ", id="matrices"):
            _matrices_tab(n, w)
        with gr.Tab("5 · Explainable conv", id="explain"):
            _explain_tab(w)
        with gr.Tab("6 · Embedding", id="embedding"):
            _embedding_tab(ex, w)
        with gr.Tab("7 · Why this pixel?", id="why"):
            _why_tab(w)
        with gr.Tab("8 · Twin", id="twin"):
            _md(T.TWIN, elem_classes="panel-text")
            w("twin_btn", gr.Button("Run the twin on this image", variant="primary", elem_id="twin-btn"))
            # as tall as its tiles (a fixed height cut their captions off); each caption names its image
            w("twin_gallery", gr.Gallery(label="explainable · standard · |difference|", show_label=False,
                                         columns=3, height="auto", object_fit="contain", elem_id="twin-gallery"))
            w("twin_md", _md(elem_id="twin-info"))
        with gr.Tab("9 · Interventions", id="interventions"):
            _md(T.INTERVENTIONS, elem_classes="panel-text")
            with gr.Row():
                w("iv_k", gr.Slider(0, n, value=max(0, n // 2), step=1, label="Early exit after iteration k",
                                    scale=4))
                w("iv_btn", gr.Button("Run the interventions", variant="primary", scale=1, elem_id="iv-btn"))
            w("iv_gallery", gr.Gallery(label="Side by side", columns=4, height=360, object_fit="contain",
                                       elem_id="iv-gallery"))
            w("iv_md", _md(elem_id="iv-info"))
        with gr.Tab("10 · Export", id="export"):
            _md(T.EXPORT, elem_classes="panel-text")
            w("ex_btn", gr.Button("Build the export files", variant="primary", elem_id="export-btn"))
            w("ex_files", gr.File(label="Files", file_count="multiple", interactive=False, elem_id="export-files"))
            w("ex_md", _md(elem_id="export-info"))


def build_demo(ex: Explorer) -> gr.Blocks:
    """The whole Blocks app for one :class:`Explorer`."""
    # every trace of the served model has n + 1 iterations, k = 0..n (sliders are validated
    # against their configured maximum, so it must be right from the start)
    n = int(ex.holder.config.get("n_blocks", 1))
    w = Wiring()
    with gr.Blocks(title="InterIR Explorer", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        w("session", gr.State(None, time_to_live=STATE_TTL_S, delete_callback=drop_session))
        w("playing", gr.State(False))
        w("why_corner", gr.State(None))
        _md("# InterIR Explorer\n" + T.INTRO, elem_id="title")
        _md(ex.model_markdown(), elem_id="model-info")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=360):
                _input_column(ex, w)
            with gr.Column(scale=7, min_width=420):
                _md("## 2 · Restore\n" + T.RESTORE, elem_classes="panel-text")
                w("slider", gr.ImageSlider(label="Before / after", type="filepath", height=480,
                                           interactive=False, elem_id="before-after"))
                w("info_md", _md(elem_id="restore-info"))
                w("download", gr.DownloadButton("Download the restored PNG", value=None, size="sm"))
        _panel_tabs(ex, n, w)
        _wire(ex, w)
    return demo


def _wire(ex: Explorer, w: Wiring) -> None:
    c = w.c
    # the selectors' handlers take milliseconds: a direct request (no queue round trips) is
    # ~100 ms faster per step in the browser (benchmarks/browser_latency.py)
    fast = dict(show_progress="hidden", queue=False)
    restored = w.on([c["restore_btn"].click], ex.restore, ["inp", "ref_inp", "session"], api_name="restore",
                    concurrency_limit=2)
    w.then(w.then(restored, ex.panels, ["session"], api_name="panels"), ex.panels_more, ["session"],
           api_name="panels_more")
    restore_auto, panels_auto, more_auto = _on_upload(ex)
    auto = w.on([c["inp"].change], restore_auto, ["inp", "ref_inp", "session"], api_name="restore_auto",
                trigger_mode="always_last")
    w.then(w.then(auto, panels_auto, ["inp", "session"], api_name="panels_auto"), more_auto, ["inp", "session"],
           api_name="panels_more_auto")
    # writing inp triggers inp.change -> restore
    w.on([c["degrade_btn"].click], ex.degrade, ["clean_inp", "haze", "rain", "noise", "seed", "session"],
         api_name="degrade")
    # the iteration slider (dragged, or moved by ▶ Play or a new trace) steps in the browser;
    # /step serves the same frames to API clients
    gr.on([c["k_slider"].input, c["k_slider"].change], None, [c["k_slider"]], None, js=STEP_JS,
          show_progress="hidden", queue=False)
    w.on([c["step_api"].click], ex.step, ["k_slider", "session"], api_name="step", trigger_mode="always_last",
         **fast)
    w.on([c["play_btn"].click], ex.play_toggle, ["playing", "session"], api_name="play")
    w.on([c["timer"].tick], ex.play_tick, ["k_slider", "session"], api_name="play_tick", **fast)
    w.on([c["mat_k"].input, c["mat_ch"].input], ex.matrices, ["mat_k", "mat_ch", "session"], api_name="matrices",
         trigger_mode="always_last", **fast)
    w.on([c["m_group"].input, c["m_layer"].input, c["m_chan"].input, c["m_opacity"].release], ex.masks,
         ["m_group", "m_layer", "m_chan", "m_opacity", "session"], api_name="masks", trigger_mode="always_last",
         **fast)
    # release: dragging; input: typing a number in the box (and Enter)
    w.on([c["emb_k"].release, c["emb_k"].input], ex.embedding, ["emb_k", "session"], api_name="embedding",
         trigger_mode="always_last", **fast)
    w.on([c["why_img"].select], ex.why_select, ["why_mode", "why_corner", "session"], api_name="why_select")
    w.on([c["why_btn"].click], ex.why, ["why_x0", "why_y0", "why_x1", "why_y1", "session"], api_name="why",
         concurrency_limit=2)
    w.on([c["twin_btn"].click], ex.twin_run, ["session"], api_name="twin", concurrency_limit=2)
    w.on([c["iv_btn"].click], ex.intervene, ["iv_k", "session"], api_name="intervene", concurrency_limit=2)
    w.on([c["ex_btn"].click], ex.export, ["session"], api_name="export")


def launch_kwargs() -> dict[str, Any]:
    """Arguments of ``demo.launch`` shared by app.py, the tests and the benchmark."""
    from .handlers import EXAMPLES_DIR

    # state_session_capacity: at most this many sessions keep a trace (oldest dropped first);
    # a 512² trace of the tiny model is ~15 MB, a 1024² one ~60 MB.
    # run_history=False: gradio would otherwise copy every run's inputs and outputs into the
    # browser's localStorage, re-reading and re-writing that list on every message of every
    # event (0.5–0.9 s of the page's time per restore with the viewer's 3 MB of frames at n = 6)
    return dict(theme=THEME, css=CSS, head=HEAD, max_file_size="25mb", show_error=True,
                allowed_paths=[str(EXAMPLES_DIR)], footer_links=["api"], state_session_capacity=48,
                run_history=False)


__all__ = ["build_demo", "launch_kwargs", "RobustImage", "Session"]
