"""The explorer's layout: components wired to :class:`app.handlers.Explorer` methods."""
from __future__ import annotations

from typing import Any

import gradio as gr

from viz import text as T
from viz.hover import HOVER_JS

from .handlers import DEFAULT_NEIGHBOURS, Explorer, Session, drop_session

CSS = """
.gradio-container {max-width: 1400px !important}
#title h1 {margin-bottom: 0}
.panel-text {font-size: 0.95em; color: var(--body-text-color-subdued)}
#model-info {font-size: 0.9em}
#restore-btn, #degrade-btn {min-height: 44px}
"""

# System fonts only: the page must not fetch anything from the internet (no Google Fonts).
THEME = gr.themes.Soft(primary_hue="orange", secondary_hue="blue", neutral_hue="slate",
                       font=["ui-sans-serif", "system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Consolas", "monospace"])
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
HEAD = f"<script>{HOVER_JS}</script>"
STATE_TTL_S = 3600


class RobustImage(gr.Image):
    """``gr.Image`` whose upload pre-processing never fails with a traceback.

    With ``type="filepath"`` and ``image_mode=None`` gradio hands over the uploaded file as is
    (so interir's reader handles 16-bit, CMYK, EXIF, ...); a file that is not an image at all
    becomes a one-line ``gr.Error``.
    """

    is_template = True  # render with gradio's own Image front end

    def preprocess(self, payload: Any) -> Any:  # noqa: D102
        try:
            return super().preprocess(payload)
        except Exception as exc:  # noqa: BLE001
            name = getattr(payload, "orig_name", None) or "the uploaded file"
            raise gr.Error(f"{name}: not a recognised image file ({type(exc).__name__})",
                           print_exception=False) from None


def _md(value: str = "", **kw: Any) -> gr.Markdown:
    """gr.Markdown with inline ``$...$`` maths."""
    return gr.Markdown(value, latex_delimiters=LATEX, **kw)


def _image_input(label: str, height: int = 320, elem_id: str | None = None) -> RobustImage:
    return RobustImage(label=label, type="filepath", image_mode=None, format="png",
                       sources=["upload", "clipboard"], height=height, elem_id=elem_id)


def build_demo(ex: Explorer) -> gr.Blocks:
    """The whole Blocks app for one :class:`Explorer`."""
    # every trace of the served model has n + 1 iterations, k = 0..n (sliders are validated
    # against their configured maximum, so it must be right from the start)
    n = int(ex.holder.config.get("n_blocks", 1))
    with gr.Blocks(title="InterIR Explorer", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        session = gr.State(None, time_to_live=STATE_TTL_S, delete_callback=drop_session)
        playing = gr.State(False)
        _md("# InterIR Explorer\n" + T.INTRO, elem_id="title")
        _md(ex.model_markdown(), elem_id="model-info")

        # ------------------------------------------------------------------ input + restore
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=360):
                _md("## 1 · Input\n" + T.INPUT, elem_classes="panel-text")
                with gr.Tabs():
                    with gr.Tab("Upload", id="upload"):
                        inp = _image_input("Degraded image", elem_id="input-image")
                        if ex.example_paths():
                            gr.Examples(examples=[[p] for p in ex.example_paths()], inputs=[inp],
                                        label="Examples (degraded from public-domain photos; clean "
                                              "references known)", examples_per_page=8)
                        with gr.Accordion("Clean reference (optional, for PSNR / SSIM)", open=False):
                            ref_inp = _image_input("Clean reference, same size as the image", 220, "reference-image")
                    with gr.Tab("Degradation lab", id="lab"):
                        _md("Degrade a clean image with the training degradations (haze → "
                                    "rain → noise, seeded); the clean image becomes the reference.",
                                    elem_classes="panel-text")
                        clean_inp = _image_input("Clean image", 260, "clean-image")
                        if ex.clean_example_paths():
                            gr.Examples(examples=[[p] for p in ex.clean_example_paths()], inputs=[clean_inp],
                                        label="Clean photos (public domain / CC0)", examples_per_page=8)
                        with gr.Row():
                            haze = gr.Slider(0, 150, value=60, step=1, label="Haze level h (0–150)")
                            rain = gr.Slider(0, 300, value=120, step=1, label="Rain level r (0–300)")
                        with gr.Row():
                            noise = gr.Slider(0, 50, value=15, step=1, label="Noise σ (0–50, on 0–255)")
                            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        degrade_btn = gr.Button("Degrade, then restore", variant="primary", elem_id="degrade-btn")
                        lab_md = _md(elem_id="lab-info")
                restore_btn = gr.Button("Restore", variant="primary", elem_id="restore-btn")
            with gr.Column(scale=7, min_width=420):
                _md("## 2 · Restore\n" + T.RESTORE, elem_classes="panel-text")
                slider = gr.ImageSlider(label="Before / after", type="filepath", height=480,
                                        interactive=False, elem_id="before-after")
                info_md = _md(elem_id="restore-info")
                download = gr.DownloadButton("Download the restored PNG", value=None, size="sm")

        # ------------------------------------------------------------------ panels
        with gr.Tabs(elem_id="panels"):
            with gr.Tab("3 · Iterations", id="iterations"):
                _md(T.ITERATIONS, elem_classes="panel-text")
                with gr.Row():
                    k_slider = gr.Slider(0, n, value=n, step=1, label="Iteration k", scale=5,
                                         elem_id="k-slider")
                    play_btn = gr.Button("▶ Play", scale=1, size="sm", elem_id="play-btn")
                    timer = gr.Timer(0.8, active=False)
                with gr.Row():
                    img_k = gr.Image(label="Decoded image at k (early exit)", type="filepath",
                                     interactive=False, height=380, elem_id="img-k")
                    diff_k = gr.Image(label="Change |I_k − I_(k−1)|", type="filepath",
                                      interactive=False, height=380, elem_id="diff-k")
                step_md = _md(elem_id="step-info")
                curves = gr.Plot(label="Per-iteration curves", show_label=False, elem_id="curves")
            with gr.Tab("4 · Degradation matrices", id="matrices"):
                _md(T.MATRICES, elem_classes="panel-text")
                with gr.Row():
                    mat_k = gr.Slider(0, n, value=n, step=1, label="Iteration k", scale=3)
                    mat_ch = gr.Dropdown(choices=[("mean over channels", "mean")], value="mean",
                                         label="Channel", scale=2, allow_custom_value=True)
                mat_plot = gr.Plot(label="A_k and B_k", show_label=False, elem_id="matrices-plot")
                with gr.Row():
                    lam_grid = gr.Image(label="Λ_k per channel (red > 0 > blue)", type="filepath",
                                        interactive=False, height=420)
                    lam_pca = gr.Image(label="Λ_k: first 3 principal components as RGB", type="filepath",
                                       interactive=False, height=420)
                mat_md = _md(elem_id="matrices-info")
            with gr.Tab("5 · Explainable convolution", id="explain"):
                _md(T.EXPLAIN, elem_classes="panel-text")
                with gr.Row():
                    # choices depend on the session's trace: values are validated by the handler
                    m_group = gr.Dropdown(label="Block", choices=[], scale=2, allow_custom_value=True)
                    m_layer = gr.Dropdown(label="Explainable conv", choices=[], scale=2,
                                          allow_custom_value=True)
                    m_chan = gr.Dropdown(label="Channel (ranked by activation)", choices=[], scale=2,
                                         allow_custom_value=True)
                    m_opacity = gr.Slider(0, 1, value=0.6, step=0.05, label="Mask opacity", scale=2)
                with gr.Row(equal_height=False):
                    m_overlay = gr.Image(label="Mask M over the input", type="filepath",
                                         interactive=False, height=420, scale=5, elem_id="mask-overlay")
                    with gr.Column(scale=6):
                        m_att = gr.Plot(label="Attention", show_label=False, elem_id="attention-plot")
                m_rank = gr.Plot(label="Channels", show_label=False, elem_id="rank-plot")
                m_md = _md(elem_id="masks-info")
            with gr.Tab("6 · Degradation embedding", id="embedding"):
                _md(T.EMBEDDING, elem_classes="panel-text")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=7):
                        emb_plot = gr.Plot(label="t-SNE of the reference set", show_label=False,
                                           elem_id="embedding-plot")
                    with gr.Column(scale=4):
                        n_max = len(ex.reference) if ex.reference is not None else DEFAULT_NEIGHBOURS
                        emb_k = gr.Slider(1, max(n_max, 2), value=DEFAULT_NEIGHBOURS, step=1,
                                          label="Neighbours in the vote (k)")
                        emb_md = _md(elem_id="embedding-info")
                        emb_gallery = gr.Gallery(label="Nearest reference images", columns=3, height="auto",
                                                 object_fit="contain", allow_preview=False)
            with gr.Tab("7 · Interventions", id="interventions"):
                _md(T.INTERVENTIONS, elem_classes="panel-text")
                with gr.Row():
                    iv_k = gr.Slider(0, n, value=max(0, n // 2), step=1, label="Early exit after iteration k", scale=4)
                    iv_btn = gr.Button("Run the interventions", variant="primary", scale=1, elem_id="iv-btn")
                iv_gallery = gr.Gallery(label="Side by side", columns=4, height=360, object_fit="contain",
                                        elem_id="iv-gallery")
                iv_md = _md(elem_id="iv-info")
            with gr.Tab("8 · Export", id="export"):
                _md(T.EXPORT, elem_classes="panel-text")
                ex_btn = gr.Button("Build the export files", variant="primary", elem_id="export-btn")
                ex_files = gr.File(label="Files", file_count="multiple", interactive=False, elem_id="export-files")
                ex_md = _md(elem_id="export-info")

        # ------------------------------------------------------------------ wiring
        step_out = [img_k, diff_k, curves, step_md]
        mat_out = [mat_plot, lam_grid, lam_pca, mat_md]
        mask_io = [m_group, m_layer, m_chan]
        mask_out = [*mask_io, m_overlay, m_att, m_rank, m_md]
        emb_out = [emb_plot, emb_md, emb_gallery]
        panel_out = [k_slider, *step_out, mat_k, mat_ch, *mat_out, *mask_out, emb_k, *emb_out,
                     iv_k, iv_gallery, iv_md, ex_files, ex_md, info_md]
        restore_out = [slider, download, info_md, session]

        def auto(image: Any, reference: Any, state: Any, progress: gr.Progress = gr.Progress()) -> Any:
            if image is None:  # cleared: nothing to do, no error toast
                return (gr.skip(),) * 4
            return ex.restore(image, reference, state, progress)

        def auto_panels(image: Any, state: Any) -> Any:
            if image is None or state is None or state.trace is None:
                return (gr.skip(),) * len(panel_out)
            return ex.panels(state)

        restore_btn.click(ex.restore, [inp, ref_inp, session], restore_out, api_name="restore",
                          concurrency_limit=2).success(ex.panels, [session], panel_out, api_name="panels")
        inp.change(auto, [inp, ref_inp, session], restore_out, api_name="restore_auto",
                   trigger_mode="always_last").success(auto_panels, [inp, session], panel_out, api_name="panels_auto")
        degrade_btn.click(ex.degrade, [clean_inp, haze, rain, noise, seed, session], [inp, lab_md, session],
                          api_name="degrade")  # writing inp triggers inp.change -> restore

        k_slider.input(ex.step, [k_slider, session], step_out, api_name="step", trigger_mode="always_last",
                       show_progress="hidden")
        play_btn.click(ex.play_toggle, [playing, session], [playing, timer, play_btn], api_name="play")
        timer.tick(ex.play_tick, [k_slider, session], [k_slider, *step_out, timer, play_btn, playing],
                   api_name="play_tick", show_progress="hidden")
        gr.on([mat_k.input, mat_ch.input], ex.matrices, [mat_k, mat_ch, session], mat_out,
              api_name="matrices", trigger_mode="always_last", show_progress="hidden")
        gr.on([m_group.input, m_layer.input, m_chan.input, m_opacity.release], ex.masks,
              [m_group, m_layer, m_chan, m_opacity, session], mask_out, api_name="masks",
              trigger_mode="always_last", show_progress="hidden")
        emb_k.release(ex.embedding, [emb_k, session], emb_out, api_name="embedding", show_progress="hidden")
        iv_btn.click(ex.intervene, [iv_k, session], [iv_gallery, iv_md, session], api_name="intervene",
                     concurrency_limit=2)
        ex_btn.click(ex.export, [session], [ex_files, ex_md], api_name="export")
    return demo


def launch_kwargs() -> dict[str, Any]:
    """Arguments of ``demo.launch`` shared by app.py, the tests and the benchmark."""
    from .handlers import EXAMPLES_DIR

    # state_session_capacity: at most this many sessions keep a trace (oldest dropped first);
    # a 512² trace of the tiny model is ~15 MB, a 1024² one ~60 MB.
    return dict(theme=THEME, css=CSS, head=HEAD, max_file_size="25mb", show_error=True,
                allowed_paths=[str(EXAMPLES_DIR)], footer_links=["api"], state_session_capacity=48)


__all__ = ["build_demo", "launch_kwargs", "RobustImage", "Session"]
