"""What every event of the explorer does. No layout here (see :mod:`app.ui`).

Every handler returns a dict keyed by component name (declared with ``@handler(name, outputs)``);
``app.ui`` creates the components under those names and wires them. After a restore,
:meth:`Explorer.panels` calls every ``@fills`` method, so a new panel is one handler (plus its
``@fills``) here and one layout place in ``app/ui.py``.

The model runs once per input (``restore``); the compact trace then lives in the session's
``gr.State`` (a :class:`Session`) and every slider or selector reads from it. Only the
interventions, the standard-conv twin and "Why this pixel?" rerun a model, on request.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from interir.data.degrade import RANGES as LEVEL_RANGES
from interir.errors import InterIRError
from interir.fileio import atomic_write_text
from interir.imageio import load_image, to_uint8
from interir.memory import trim as trim_memory
from interir.reference import Reference, place
from interir.trace import jsonable
from viz import text as T
from viz.compact import CompactTrace, parse_layer
from viz.images import (change_frame, channel_grid, diff_image, heat_overlay, mask_overlay, pca_rgb,
                        png_data_uri, pretty_bytes, resize_max, thumbnail, upscale_to)
from viz.plots import (attention_figure, channel_rank_figure, combo_label, embedding_figure, empty_figure,
                       iteration_curves_json, matrices_figure)
from viz.report import build_report, lambda_basis, write_report
from viz.viewer import frame_uris, iteration_viewer

from .runtime import ModelHolder
from .session import (Outputs, Session, downscale, fills, handler, pixel_key, plot_json, pool, read_image,
                      save_png, save_pngs)
from .why import explain_region

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"
DEFAULT_NEIGHBOURS = 8
SLIDER_WIDTH = 690  # px: the before/after slider's width in the page (app.ui's 7/12 column)
NO_TRACE = "Restore an image first (upload one, pick an example or use the degradation lab)."

RESTORE_OUT = ("slider", "download", "info_md", "session")
STEP_OUT = ("img_k", "diff_k", "step_md")  # /step's reply (API only: the page steps in the browser)
MAT_OUT = ("mat_plot", "lam_grid", "lam_pca", "mat_md")
MASK_OUT = ("m_group", "m_layer", "m_chan", "m_overlay", "m_att", "m_rank", "m_md")
EMB_OUT = ("emb_plot", "emb_md", "emb_gallery")
TWIN_OUT = ("twin_gallery", "twin_md")
WHY_OUT = ("why_attr", "why_iter", "why_chan", "why_md")


def _choice_channel(value: Any) -> int | None:
    if value in (None, "", "mean"):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InterIRError(f"channel must be 'mean' or an integer, got {value!r}") from None


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InterIRError(f"{what} must be an integer, got {value!r}") from None


def _metrics(img: np.ndarray, ref: np.ndarray | None) -> tuple[str, str]:
    """(PSNR, SSIM) of an 8-bit image against a reference, as table cells."""
    from interir.metrics import psnr, ssim

    if ref is None:
        return "–", "–"
    s = f"{ssim(img, ref):.3f}" if min(img.shape[:2]) >= 11 else "–"
    return f"{psnr(img, ref):.2f} dB", s


class Explorer:
    """All handlers, bound to one served model, its reference set and (optionally) its
    standard-convolution twin."""

    def __init__(self, holder: ModelHolder, reference: Reference | None, reference_note: str = "",
                 twin: ModelHolder | None = None, twin_note: str = "") -> None:
        self.holder = holder
        self.reference = reference
        self.reference_note = reference_note
        self.twin = twin
        self.twin_note = twin_note
        self.ref_thumbs = [png_data_uri(t) for t in reference.thumbs] if reference is not None else []
        self.examples = self._load_examples()

    # ---- examples with known clean references
    def _load_examples(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        manifest = EXAMPLES_DIR / "examples.json"
        if not manifest.is_file():
            return out
        try:
            for e in json.loads(manifest.read_text()):
                deg = load_image(EXAMPLES_DIR / e["file"])
                out[pixel_key(deg)] = dict(e, path=str(EXAMPLES_DIR / e["file"]),
                                           clean_path=str(EXAMPLES_DIR / e["clean"]))
        except (InterIRError, OSError, KeyError, ValueError) as exc:
            from .session import log

            log.warning("examples manifest unusable: %s", exc)
        return out

    def example_paths(self) -> list[str]:
        return [e["path"] for e in self.examples.values()]

    def clean_example_paths(self) -> list[str]:
        return sorted(str(p) for p in (EXAMPLES_DIR / "clean").glob("*.png"))

    def model_markdown(self) -> str:
        s = f"**Model:** {self.holder.describe()}."
        if not self.holder.trained:
            s = ("⚠️ **No trained checkpoint was found, so this is a randomly initialised model**: "
                 "every panel works, but the restorations are meaningless. " + s)
        if self.reference is None:
            s += f" Degradation embedding unavailable ({self.reference_note})."
        return s

    # ---- degradation lab
    @handler("degrade", ("inp", "lab_md", "session"))
    def degrade(self, clean_path: str | None, haze: float, rain: float, noise: float, seed: float,
                session: Session | None) -> Outputs:
        """Degrade a clean image; the clean one is kept as the reference for metrics."""
        from interir.data.degrade import degrade_image

        from .session import LabRef

        session = session or Session()
        if clean_path is None:
            raise InterIRError("choose a clean image for the degradation lab first")
        levels = {"haze": haze, "rain": rain, "noise": noise}
        for k, v in levels.items():
            lo, hi = LEVEL_RANGES[k]
            if v is None or not np.isfinite(float(v)) or not lo <= float(v) <= hi:
                raise InterIRError(f"{k} level must be between {lo:g} and {hi:g}, got {v!r}")
        seed_i = _int(seed, "seed")
        if not 0 <= seed_i < 2**63:
            raise InterIRError(f"seed must be between 0 and 2^63 - 1, got {seed_i}")
        clean, name, notes = read_image(clean_path, "clean image")
        clean, note = downscale(clean)
        clean_u8 = to_uint8(clean)
        clean = clean_u8.astype(np.float32) / 255.0
        out = to_uint8(degrade_image(clean, float(haze), float(rain), float(noise), seed=seed_i))
        session.lab = LabRef(pixel_key(out), clean_u8, (float(haze), float(rain), float(noise)), seed_i)
        stem = Path(name).stem[:40] or "image"
        path = save_png(session, out, f"{stem}_degraded_h{haze:g}_r{rain:g}_n{noise:g}_s{seed_i}", 6)
        label = combo_label("_".join(k for k, v in levels.items() if v > 0)) or "no degradation"
        md = (f"Made **{label}** (haze {haze:g}, rain {rain:g}, noise {noise:g}, seed {seed_i}); the clean "
              "image is kept as the reference.") + "".join(f" {n}" for n in [note, *notes] if n)
        return {"inp": path, "lab_md": md, "session": session}

    # ---- restore
    def _reference_for(self, img: np.ndarray, orig_shape: tuple[int, ...], ref_path: str | None,
                       session: Session) -> tuple[np.ndarray | None, str, list[str]]:
        if ref_path:
            ref, rname, _ = read_image(ref_path, "reference image")
            if ref.shape[:2] != orig_shape:
                return None, "", [f"The clean reference {rname} is {ref.shape[1]}×{ref.shape[0]} px but "
                                  f"the image is {orig_shape[1]}×{orig_shape[0]}: reference ignored."]
            ref, _ = downscale(ref)
            return to_uint8(ref), f"uploaded reference {rname}", []
        key = pixel_key(img)
        if session.lab is not None and session.lab.key == key:
            return session.lab.clean, "degradation lab", []
        ex = self.examples.get(key)
        if ex is not None:
            clean = to_uint8(load_image(ex["clean_path"]))
            if clean.shape == img.shape:
                return clean, f"shipped example ({ex['combo'].replace('_', ' + ')})", []
        return None, "", []

    @handler("restore", RESTORE_OUT)
    def restore(self, image_path: str | None, reference_path: str | None = None,
                session: Session | None = None, progress: gr.Progress = gr.Progress()) -> Outputs:
        """Run the model once on the image, keep its compact trace in the session."""
        from viz.compact import compact_trace

        session = session or Session()
        if image_path is None:
            raise InterIRError("no image: upload one, pick an example or make one in the degradation lab")
        t0 = time.perf_counter()
        progress(0.02, desc="Reading the image")
        img, name, notes = read_image(image_path, "image")
        orig_shape = img.shape[:2]
        img, note = downscale(img)
        reference, ref_source, ref_notes = self._reference_for(img, orig_shape, reference_path, session)
        n = int(self.holder.config.get("n_blocks", 1))

        def on_iteration(k: int, total: int) -> None:  # called by the recorder as each RESM ends
            progress((k + 1) / (total + 1), desc=f"Unfolding: iteration k = {k} of {total - 1} done")

        progress(0.5 / (n + 2), desc=f"Unfolding: {n} IPBlocks + final RESM")
        t1 = time.perf_counter()
        tr = self.holder.trace(img, progress=on_iteration)
        t_model = time.perf_counter() - t1
        notes = [n_ for n_ in [*notes, note, *ref_notes] if n_]
        ct = compact_trace(tr, name=name, notes=notes)
        del tr
        if reference is not None:
            ct.with_reference(reference)
            ct.complete_ssim(last_only=True)  # the output's SSIM now, the other iterations later
        if session.new_trace(ct, img) is not None:
            # the previous trace's arrays go back to the OS, not just to malloc (off the response path)
            pool("trim").submit(trim_memory)
        session.reference_source = ref_source
        before, after = save_pngs(session, [(ct.input, "input"),
                                            (ct.output, f"{Path(name).stem[:40] or 'image'}_restored")])
        h, w = ct.input.shape[:2]
        lines = [f"**Restored** {w}×{h} px: model + trace {t_model:.2f} s "
                 f"(total {time.perf_counter() - t0:.2f} s)."]
        lines.append(self._metric_line(ct, ref_source) if ct.psnr is not None else
                     "No clean reference, so no PSNR/SSIM (use the degradation lab, an example, or attach "
                     "a reference).")
        lines.append(T.brightness_line(ct.input, ct.output, ct.reference))
        lines += [f"⚠️ {n_}" for n_ in notes]
        session.info = lines
        # the before/after slider as tall as the image at the column's width (~690 px): a wide
        # image leaves no empty bands and the divider stays on the image
        height = int(np.clip(round(SLIDER_WIDTH * h / w), 120, 480))
        return {"slider": gr.update(value=(before, after), height=height), "download": after,
                "info_md": "  \n".join(lines), "session": session}

    @staticmethod
    def _metric_line(ct: CompactTrace, ref_source: str) -> str:
        m = f"PSNR {ct.input_psnr:.2f} → **{ct.psnr[-1]:.2f} dB**"
        if ct.ssim is not None and ct.input_ssim is not None and np.isfinite(ct.ssim[-1]):
            m += f", SSIM {ct.input_ssim:.3f} → **{ct.ssim[-1]:.3f}**"
        elif ct.ssim is None:
            m += " (SSIM needs at least 11×11 px)"
        return f"{m} against the clean reference ({ref_source})."

    def _trace(self, session: Session | None) -> CompactTrace:
        if session is None or session.trace is None:
            raise InterIRError(NO_TRACE)
        return session.trace

    # ---- iterations
    def _encode_frame(self, ct: CompactTrace, session: Session, k: int) -> tuple[str, str]:
        diff, _ = change_frame(ct, k)
        tag = f"{id(ct):x}"
        return (save_png(session, ct.images[k], f"iteration_{k}_{tag}"),
                save_png(session, diff, f"change_{k}_{tag}"))

    def _frame(self, ct: CompactTrace, session: Session, k: int) -> tuple[str, str]:
        """The two PNG paths of iteration k (for /step), each encoded once per trace (a future in
        the session, so concurrent requests for one k encode it once)."""
        fut = session.frames.get(k)
        if fut is None:
            fut = session.frames[k] = pool("frames").submit(self._encode_frame, ct, session, k)
        paths = fut.result()
        if not all(Path(p).is_file() for p in paths):  # the session folder was cleaned
            session.frames.pop(k, None)
            paths = self._encode_frame(ct, session, k)
        return paths

    @handler("step", STEP_OUT)
    def step(self, k: float, session: Session | None) -> Outputs:
        """The decoded image at iteration k and its change from k − 1 (PNG files), and the step
        line. The page itself steps in the browser (:meth:`fill_iterations`); this is the API."""
        ct = self._trace(session)
        k = int(np.clip(_int(k or 0, "k"), 0, ct.n_iter - 1))
        img_path, diff_path = self._frame(ct, session, k)
        return {"img_k": img_path, "diff_k": diff_path, "step_md": T.step_text(ct, k)}

    @fills("k_slider", "iter_view", "curves", "curves_md", first=True)
    def fill_iterations(self, session: Session) -> Outputs:
        """The iteration viewer with every k's frames and step line at once (the slider and ▶ Play
        then step in the browser, app.ui), and the curves."""
        ct = self._trace(session)
        n = ct.n_iter - 1
        jobs = [pool("frames").submit(frame_uris, ct, k) for k in range(n + 1)]
        ct.complete_ssim()  # deferred from restore so the restored image shows sooner
        view = iteration_viewer([j.result() for j in jobs], [T.step_text(ct, k) for k in range(n + 1)], n)
        return {"k_slider": gr.update(maximum=n, value=n), "iter_view": view,
                "curves": plot_json(iteration_curves_json(ct, n)), "curves_md": T.curve_notes(ct)}

    @handler("play", ("playing", "timer", "play_btn"))
    def play_toggle(self, playing: bool, session: Session | None) -> Outputs:
        """Start or stop stepping through the iterations."""
        self._trace(session)
        playing = not bool(playing)
        return {"playing": playing, "timer": gr.Timer(active=playing),
                "play_btn": gr.update(value="⏸ Pause" if playing else "▶ Play")}

    @handler("play_tick", ("k_slider", "timer", "play_btn", "playing"))
    def play_tick(self, k: float, session: Session | None) -> Outputs:
        """One frame of the animation: k + 1 (from 0 again after the last), stop at the last. The
        slider's change event shows that k in the browser."""
        if session is None or session.trace is None:
            return {"timer": gr.Timer(active=False), "play_btn": gr.update(value="▶ Play"), "playing": False}
        last = session.trace.n_iter - 1
        k = int(k or 0)
        k_next = k + 1 if k < last else 0
        done = k_next >= last
        return {"k_slider": k_next, "timer": gr.Timer(active=not done),
                "play_btn": gr.update(value="▶ Play" if done else "⏸ Pause"), "playing": not done}

    # ---- matrices
    @handler("matrices", MAT_OUT)
    def matrices(self, k: float, channel: Any, session: Session | None) -> Outputs:
        """A_k, B_k (one channel or the mean) with spectra; Λ_k as a channel grid and PCA → RGB."""
        ct = self._trace(session)
        k = int(np.clip(_int(k or 0, "k"), 0, ct.n_iter - 1))
        ch = _choice_channel(channel)
        if ch is not None and not 0 <= ch < ct.channels:
            raise InterIRError(f"channel {ch} out of range 0..{ct.channels - 1}")
        lam = ct.Lambda[k].astype(np.float32)
        grid = channel_grid(lam, tile=max(48, 620 // int(np.ceil(np.sqrt(ct.channels)))))
        pca = upscale_to(pca_rgb(lam, lambda_basis(ct)), 480)
        h, w = ct.A.shape[-1], ct.B.shape[-1]
        md = (f"k = {k} · A is {h}×{h}, B is {w}×{w} per channel ({ct.channels} channels) · "
              f"Λ range [{float(lam.min()):.3g}, {float(lam.max()):.3g}]")
        grid_p, pca_p = save_pngs(session, [(grid, f"lambda_grid_{k}"), (pca, f"lambda_pca_{k}")])
        return {"mat_plot": plot_json(matrices_figure(ct, k, ch)), "lam_grid": grid_p, "lam_pca": pca_p,
                "mat_md": md}

    @fills("mat_k", "mat_ch", *MAT_OUT)
    def fill_matrices(self, session: Session) -> Outputs:
        ct = self._trace(session)
        n = ct.n_iter - 1
        chans = [("mean over channels", "mean")] + [(f"channel {c}", str(c)) for c in range(ct.channels)]
        return {"mat_k": gr.update(maximum=n, value=n), "mat_ch": gr.update(choices=chans, value="mean"),
                **self.matrices(n, "mean", session)}

    # ---- explainable convolution
    def mask_choices(self, ct: CompactTrace, group: str | None, layer: str | None
                     ) -> tuple[list[tuple[str, str]], str, list[tuple[str, str]], str, list[tuple[str, str]]]:
        groups = ct.groups()
        gnames = list(groups)
        n_blocks = sum(1 for g in gnames if parse_layer(groups[g][0]).index is not None)
        gchoices = []
        for g in gnames:
            idx = parse_layer(groups[g][0]).index
            gchoices.append((f"{g} · iteration {idx if idx is not None else n_blocks}", g))
        if group not in (None, "") and group not in groups:
            raise InterIRError(f"unknown block {group!r}; choose one of {', '.join(gnames)}")
        if layer not in (None, "") and layer not in ct.mask_bits:
            raise InterIRError(f"unknown explainable conv {layer!r} (e.g. {ct.layers[0]})")
        if group in (None, ""):
            group = parse_layer(layer).group if layer else gnames[0]
        lchoices = [(parse_layer(n).rest or n, n) for n in groups[group]]
        if layer not in groups[group]:
            layer = groups[group][0]
        rate, tau = ct.mask_rate[layer], ct.tau.get(layer)
        order = np.argsort(-rate, kind="stable")
        cchoices = [("mean over channels", "mean")] + [
            (f"#{r + 1} · ch {int(c)} · {rate[c]:.0%} active" + (f" · τ {tau[c]:+.3f}" if tau is not None else ""),
             str(int(c))) for r, c in enumerate(order)]
        return gchoices, group, lchoices, layer, cchoices

    @handler("masks", MASK_OUT)
    def masks(self, group: str | None, layer: str | None, channel: Any, opacity: float,
              session: Session | None) -> Outputs:
        """Mask M of one explainable conv (one channel or the mean) over the input, its K×K
        attention maps, channels ranked by activation and the learned τ."""
        ct = self._trace(session)
        if not ct.has_masks:
            msg = "This model uses standard convolutions (conv_type = standard): no masks or attention."
            none = gr.update(choices=[], value=None)
            return {"m_group": none, "m_layer": none, "m_chan": none, "m_overlay": None,
                    "m_att": plot_json(empty_figure(msg)), "m_rank": plot_json(empty_figure(msg)), "m_md": msg}
        gch, group, lch, layer, cch = self.mask_choices(ct, group, layer)
        if channel in (None, ""):  # default: the most informative binary mask, ~half active
            channel = str(int(np.argmin(np.abs(ct.mask_rate[layer] - 0.5))))
        ch = _choice_channel(channel)
        fallback = ""
        if ch is not None and not 0 <= ch < ct.mask_shape[layer][0]:
            fallback = f" (channel {ch} does not exist in this layer: showing the mean)"
            ch = None
        m = ct.mask(layer)
        rate, tau = ct.mask_rate[layer], ct.tau.get(layer)
        order = list(np.argsort(-rate, kind="stable"))
        base = upscale_to(resize_max(ct.input, 768), 560)
        base = (0.35 * base + 0.65 * base.mean(axis=2, keepdims=True)).astype(np.uint8)  # desaturated
        opacity = float(opacity if opacity is not None else 0.6)
        overlay = heat_overlay(base, m.mean(axis=0), opacity) if ch is None else mask_overlay(base, m[ch], opacity)
        att = attention_figure(ct.attention[layer], order, selected=ch, max_tiles=32,
                               title="K×K attention A per channel, ranked by activation (#1 = most active)")
        rank = channel_rank_figure(rate, tau, selected=ch, title="mask activation per channel (same ranking) "
                                                                 "and learned τ")
        C, hh, ww = m.shape
        if ch is None:
            what = "mean over channels (colour: fraction of channels with M = 1, dark 0 → bright yellow 1)"
        else:
            what = f"channel {ch}: {rate[ch]:.1%} of positions active" + (
                f", τ = {tau[ch]:+.4f}" if tau is not None else "")
        md = (f"`{layer}` · {C} channels at {ww}×{hh} · {what} · layer average "
              f"{float(rate.mean()):.1%} active{fallback}")
        return {"m_group": gr.update(choices=gch, value=group), "m_layer": gr.update(choices=lch, value=layer),
                "m_chan": gr.update(choices=cch, value="mean" if ch is None else str(ch)),
                "m_overlay": save_png(session, overlay, "mask_overlay"), "m_att": plot_json(att),
                "m_rank": plot_json(rank), "m_md": md}

    @fills(*MASK_OUT)
    def fill_masks(self, session: Session) -> Outputs:
        return self.masks(None, None, None, 0.6, session)

    # ---- embedding
    @handler("embedding", EMB_OUT)
    def embedding(self, n_neighbours: float, session: Session | None) -> Outputs:
        """The t-SNE reference map with this image placed in it and a k-NN diagnosis."""
        ct = self._trace(session)
        if self.reference is None:
            msg = f"No reference embedding set is available ({self.reference_note})."
            return {"emb_plot": plot_json(empty_figure(msg)), "emb_md": msg, "emb_gallery": []}
        kn = DEFAULT_NEIGHBOURS if n_neighbours is None else _int(n_neighbours, "number of neighbours")
        if not 1 <= kn <= len(self.reference):
            raise InterIRError(f"number of neighbours must be between 1 and {len(self.reference)}, got {kn}")
        if session.placement is None or len(session.placement.neighbours) != kn:
            session.placement = place(self.reference, ct.embedding, k=kn)
        p = session.placement
        ranked = sorted(p.probs.items(), key=lambda kv: -kv[1])
        top = " · ".join(f"{combo_label(c)} {v:.0%}" for c, v in ranked if v > 0)
        md = (f"### Diagnosis: {combo_label(p.combo)} ({p.confidence:.0%} confidence)\n"
              f"Weighted vote of the {len(p.neighbours)} nearest of {len(self.reference)} reference "
              f"images (all {len(p.neighbours)} shown below, nearest first, with their distance): {top}.")
        if p.out_of_distribution:
            md += ("\n\n⚠️ This image is far from every reference image (its nearest neighbour is "
                   "farther than 1.5× the usual spacing): treat the diagnosis with caution.")
        if not self.holder.trained:
            md += "\n\n⚠️ Random-init model: the embedding carries no learned meaning."
        items = [(thumbnail(self.reference.thumbs[j], 96), f"neighbour_{j}") for j in p.neighbours]
        paths = save_pngs(session, items, 6)
        gallery = [(path, f"{combo_label(self.reference.combos[int(self.reference.labels[j])])} ({d:.1f})")
                   for path, j, d in zip(paths, p.neighbours, p.distances)]
        return {"emb_plot": plot_json(embedding_figure(self.reference, p, self.ref_thumbs)), "emb_md": md,
                "emb_gallery": gallery}

    @fills("emb_k", *EMB_OUT)
    def fill_embedding(self, session: Session) -> Outputs:
        return {"emb_k": gr.update(value=DEFAULT_NEIGHBOURS), **self.embedding(DEFAULT_NEIGHBOURS, session)}

    # ---- the standard-convolution twin (the paper's Table 4 ablation on this image)
    @handler("twin", TWIN_OUT)
    def twin_run(self, session: Session | None) -> Outputs:
        """Run the standard-conv twin on the same input: both outputs, their difference, metrics."""
        if self.twin is None:  # says so (and how to add one) whether or not an image is restored
            return {"twin_gallery": [], "twin_md": self.twin_note}
        ct = self._trace(session)
        if "twin" not in session.reruns:
            session.reruns["twin"] = to_uint8(self.twin.run(session.x))
        other = session.reruns["twin"]
        diff, scale = diff_image(ct.output, other)
        names = [(ct.output, "twin_explainable"), (other, "twin_standard"), (diff, "twin_difference")]
        p_out, p_twin, p_diff = save_pngs(session, names)
        d = float(np.abs(ct.output.astype(np.int16) - other.astype(np.int16)).mean())
        rows = ["| model | PSNR | SSIM |", "|---|---|---|"]
        for label, img in (("degraded input", ct.input), (f"explainable ({self.holder.short_name})", ct.output),
                           (f"standard-conv twin ({self.twin.short_name})", other)):
            rows.append(f"| {label} | {' | '.join(_metrics(img, ct.reference))} |")
        md = "\n".join(rows) + (f"\n\nMean |explainable − twin| = {d:.2f}/255; the difference map's brightest "
                                f"colour is {scale * 255:.1f}/255 or more.")
        if self.twin_note:  # the pair is not in step
            md += "\n\n" + self.twin_note
        if ct.reference is None:
            md += " No clean reference, so no PSNR/SSIM (use the degradation lab, an example or a reference)."
        return {"twin_gallery": [(p_out, "explainable convolutions"), (p_twin, "standard convolutions (twin)"),
                                 (p_diff, "|difference|")], "twin_md": md}

    @fills(*TWIN_OUT)
    def fill_twin(self, session: Session) -> Outputs:
        note = self.twin_note if self.twin is None else (
            f"Twin: {self.twin.describe()}. Press the button to run it on this image."
            + (f"\n\n{self.twin_note}" if self.twin_note else ""))
        return {"twin_gallery": [], "twin_md": note}

    # ---- "Why this pixel?"
    @handler("why", WHY_OUT)
    def why(self, x0: float, y0: float, x1: float | None = None, y1: float | None = None,
            session: Session | None = None, progress: gr.Progress = gr.Progress()) -> Outputs:
        """For a region of the restored image (a point ± a few pixels, or a box): (a) attribution
        over the degraded input, (b) each iteration's change there, (c) the explainable-conv
        channels most active there."""
        ct = self._trace(session)
        return explain_region(self.holder, ct, session.x, x0, y0, x1, y1, progress)

    @handler("why_select", (*WHY_OUT, "why_x0", "why_y0", "why_x1", "why_y1", "why_corner"))
    def why_select(self, mode: str, corner: Any, session: Session | None, evt: gr.SelectData,
                   progress: gr.Progress = gr.Progress()) -> Outputs:
        """A click on the restored image: a point, or (box mode) the first or second corner."""
        ct = self._trace(session)
        x, y = (int(v) for v in evt.index[:2])
        if mode == "box" and corner is None:
            return {"why_corner": (x, y), "why_md": f"First corner ({x}, {y}): click the opposite corner.",
                    "why_x0": x, "why_y0": y, "why_x1": None, "why_y1": None}
        if mode == "box":
            box = (corner[0], corner[1], x, y)
        else:
            box = (x, y, None, None)
        out = explain_region(self.holder, ct, session.x, *box, progress)
        return {**out, "why_x0": box[0], "why_y0": box[1], "why_x1": box[2], "why_y1": box[3], "why_corner": None}

    @fills("why_img", *WHY_OUT)
    def fill_why(self, session: Session) -> Outputs:
        ct = self._trace(session)
        empty = plot_json(empty_figure(T.WHY_START))
        return {"why_img": save_png(session, ct.output, "why_restored"), "why_attr": empty, "why_iter": empty,
                "why_chan": empty, "why_md": T.WHY_START}

    # ---- interventions
    @handler("intervene", ("iv_gallery", "iv_md", "session"))
    def intervene(self, k_exit: float, session: Session | None, progress: gr.Progress = gr.Progress()) -> Outputs:
        """Early exit at k, uniform attention, Λ = 0 — each beside the normal result."""
        from interir.metrics import psnr

        ct = self._trace(session)
        k = int(np.clip(_int(k_exit or 0, "k"), 0, ct.n_iter - 1))
        variants: list[tuple[str, np.ndarray]] = [("Normal", ct.output), (f"Early exit at k = {k}", ct.images[k])]
        todo = [("uniform_attention", "Modulation off")] if self.holder.has_explainable else []
        todo.append(("zero_multiplier", "Λ = 0"))
        for i, (key, label) in enumerate(todo):
            if key not in session.reruns:
                progress((i + 0.5) / len(todo), desc=f"Rerunning: {label}")
                session.reruns[key] = to_uint8(self.holder.run(session.x, key))
            variants.append((label, session.reruns[key]))
        rows = ["| variant | PSNR | SSIM | mean abs. difference to normal (/255) | PSNR vs normal |",
                "|---|---|---|---|---|"]
        paths = save_pngs(session, [(img, f"intervention_{i}") for i, (_, img) in enumerate(variants)])
        gallery = []
        for path, (label, img) in zip(paths, variants):
            d = float(np.abs(img.astype(np.int16) - ct.output.astype(np.int16)).mean())
            pn = psnr(img, ct.output)
            p_, s_ = _metrics(img, ct.reference)
            rows.append(f"| {label} | {p_} | {s_} | {d:.2f} | {'identical' if not np.isfinite(pn) else f'{pn:.2f} dB'} |")
            gallery.append((path, label + (f" · {p_}" if ct.reference is not None else "")))
        if ct.reference is None:
            rows.append("\nNo clean reference: PSNR/SSIM columns need the degradation lab, an example or an "
                        "uploaded reference.")
        if not self.holder.has_explainable:
            rows.append("\nThis model uses standard convolutions: there is no modulation to switch off.")
        return {"iv_gallery": gallery, "iv_md": "\n".join(rows), "session": session}

    @fills("iv_k", "iv_gallery", "iv_md")
    def fill_interventions(self, session: Session) -> Outputs:
        n = self._trace(session).n_iter - 1
        return {"iv_k": gr.update(maximum=n, value=max(0, n // 2)), "iv_gallery": [], "iv_md": ""}

    # ---- export
    @handler("export", ("ex_files", "ex_md"))
    def export(self, session: Session | None) -> Outputs:
        """The trace bundle (.npz), its JSON summary and a static HTML report."""
        ct = self._trace(session)
        out = session.dir() / "export"
        out.mkdir(exist_ok=True)
        stem = Path(ct.name).stem[:40] or "image"
        npz = out / f"{stem}_trace.npz"
        ct.save_npz(npz)
        summary = out / f"{stem}_summary.json"
        atomic_write_text(summary, json.dumps(jsonable(ct.summary_dict()), indent=1))
        if self.reference is not None and session.placement is None:
            try:
                session.placement = place(self.reference, ct.embedding, k=DEFAULT_NEIGHBOURS)
            except InterIRError:
                pass
        html = build_report(ct, self.reference, placement=session.placement, reference_note=self.reference_note)
        report = write_report(html, out / f"{stem}_report.html")
        # the same units as gradio's file list (powers of 1024)
        sizes = ", ".join(f"{p.name} ({pretty_bytes(p.stat().st_size)})" for p in (npz, summary, report))
        return {"ex_files": [str(npz), str(summary), str(report)], "ex_md": f"Ready: {sizes}."}

    @fills("ex_files", "ex_md")
    def fill_export(self, session: Session) -> Outputs:
        return {"ex_files": None, "ex_md": ""}

    # ---- everything after a restore: the panel on screen first, then the others
    def _panels(self, session: Session | None) -> Outputs:
        """Fill the panels shown at once (the iterations) and the restore text's SSIM."""
        ct = self._trace(session)
        out: Outputs = {}
        for fill in FILLERS_FIRST:
            out.update(fill(self, session))
        info = list(session.info)
        if ct.psnr is not None and len(info) > 1:
            info[1] = self._metric_line(ct, session.reference_source)
        out["info_md"] = "  \n".join(info)
        return out

    def _panels_more(self, session: Session | None) -> Outputs:
        """Reset every other panel's selectors to the new trace and fill it."""
        self._trace(session)
        out: Outputs = {}
        for fill in FILLERS_MORE:
            out.update(fill(self, session))
        return out


def _outputs(fillers: list[Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for f in fillers for n in f.fills))


#: every ``@fills`` method, in class order: /panels runs the ``first`` ones, /panels_more the rest
FILLERS = [f for f in vars(Explorer).values() if hasattr(f, "fills")]
FILLERS_FIRST = [f for f in FILLERS if f.fills_first]
FILLERS_MORE = [f for f in FILLERS if not f.fills_first]
PANEL_OUT = _outputs(FILLERS_FIRST) + ("info_md",)
Explorer.panels = handler("panels", PANEL_OUT)(Explorer._panels)  # type: ignore[attr-defined]
Explorer.panels_more = handler("panels_more", _outputs(FILLERS_MORE))(Explorer._panels_more)  # type: ignore[attr-defined]

__all__ = ["Explorer", "Session", "DEFAULT_NEIGHBOURS", "EXAMPLES_DIR", "PANEL_OUT", "plot_json"]
