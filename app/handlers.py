"""What every event of the explorer does. No layout here (see :mod:`app.ui`).

The model runs once per input (``restore``); the compact trace then lives in the session's
``gr.State`` (a :class:`Session`) and every slider or selector reads from it. Only the
interventions rerun the model, on request, and their results are cached in the session.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
from gradio.components.plot import PlotData

from interir.data.degrade import RANGES as LEVEL_RANGES
from interir.errors import InterIRError
from interir.imageio import load_image, to_uint8
from viz.compact import CompactTrace, compact_trace, parse_layer
from viz.embedding import Placement, Reference, place
from viz.images import (channel_grid, diff_image, heat_overlay, mask_overlay, pca_rgb, png_bytes,
                        png_data_uri, resize_max, thumbnail, upscale_to)
from viz.plots import (attention_figure, channel_rank_figure, combo_label, embedding_figure,
                       empty_figure, iteration_curves_json, matrices_figure, to_json)
from viz.report import build_report, lambda_basis, write_report

from .runtime import ModelHolder, trim_memory

log = logging.getLogger("interir.app")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"
MAX_SIDE = int(os.environ.get("INTERIR_APP_MAX_SIDE", "1024"))
DEFAULT_NEIGHBOURS = 8
NO_TRACE = "Restore an image first (upload one, pick an example or use the degradation lab)."

#: (handler name, seconds) of the most recent calls (server-side timings, for debugging)
TIMINGS: deque[tuple[str, float]] = deque(maxlen=2000)


# ----------------------------------------------------------------------------- session state
@dataclass
class LabRef:
    """A degraded image made in the lab and the clean image it came from."""

    key: str
    clean: np.ndarray
    levels: tuple[float, float, float]
    seed: int


@dataclass
class Session:
    """Per-browser-session state (kept in ``gr.State``; never shared between users)."""

    trace: CompactTrace | None = None
    x: np.ndarray | None = None                      # float32 model input (for interventions)
    lab: LabRef | None = None
    interventions: dict[str, np.ndarray] = field(default_factory=dict)
    placement: Placement | None = None
    workdir: Path | None = None
    reference_source: str = ""
    info: list[str] = field(default_factory=list)

    def dir(self) -> Path:
        """This session's folder for the PNGs and exports it hands to gradio (which copies them
        into its own cache). Removed when the session is deleted or garbage-collected (gradio
        drops the oldest sessions beyond ``state_session_capacity`` without a callback)."""
        if self.workdir is None or not self.workdir.is_dir():
            root = Path(tempfile.gettempdir()) / "interir-app"
            root.mkdir(parents=True, exist_ok=True)
            self.workdir = Path(tempfile.mkdtemp(prefix="session-", dir=root))
            weakref.finalize(self, shutil.rmtree, str(self.workdir), True)
        return self.workdir

    def clear_files(self) -> None:
        """Delete the files of the previous image (gradio already holds its own copies)."""
        if self.workdir is not None and self.workdir.is_dir():
            for p in self.workdir.iterdir():
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)


def clean_stale_sessions(max_age_s: float = 24 * 3600) -> None:
    """Remove session folders left behind by a server that was killed (older than a day)."""
    root = Path(tempfile.gettempdir()) / "interir-app"
    if not root.is_dir():
        return
    now = time.time()
    for d in root.glob("session-*"):
        try:
            if now - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def drop_session(session: Any) -> None:
    """gr.State delete callback: remove the session's temporary files."""
    if isinstance(session, Session) and session.workdir is not None:
        shutil.rmtree(session.workdir, ignore_errors=True)


def pixel_key(img: np.ndarray) -> str:
    """Identity of an 8-bit image's pixels (used to recognise lab images and examples)."""
    u8 = img if img.dtype == np.uint8 else to_uint8(img)
    return hashlib.sha1(repr(u8.shape).encode() + np.ascontiguousarray(u8).tobytes()).hexdigest()


# ----------------------------------------------------------------------------- helpers
def handler(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Time the call and turn user errors into a one-line ``gr.Error`` (never a traceback)."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except InterIRError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            except MemoryError:
                raise gr.Error("Out of memory: try a smaller image.", print_exception=False) from None
            except Exception as exc:  # noqa: BLE001 - log it, show one line
                log.exception("%s failed", name)
                raise gr.Error(f"Unexpected error in {name}: {type(exc).__name__}: {exc}",
                               print_exception=False) from None
            finally:
                TIMINGS.append((name, time.perf_counter() - t0))
        return wrapper
    return deco


def save_png(session: Session, img: np.ndarray, name: str, compress_level: int = 1) -> str:
    """Write an image into the session folder (fast PNG) and return its path for gradio."""
    path = session.dir() / f"{name}.png"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png_bytes(img, compress_level))
    os.replace(tmp, path)
    return str(path)


_POOLS: dict[str, Any] = {}
_FRAME_LOCK = threading.Lock()


def _pool(name: str) -> Any:
    """Small shared thread pools (PIL encodes PNGs without holding the GIL)."""
    if name not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[name] = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"interir-{name}")
    return _POOLS[name]


def save_pngs(session: Session, items: list[tuple[np.ndarray, str]], compress_level: int = 1) -> list[str]:
    """:func:`save_png` for several images at once, in parallel."""
    if len(items) == 1:
        return [save_png(session, items[0][0], items[0][1], compress_level)]
    futures = [_pool("png").submit(save_png, session, img, name, compress_level) for img, name in items]
    return [f.result() for f in futures]


def plot_json(fig: Any) -> PlotData:
    """A figure dict from viz.plots (or its JSON) as gradio plot data."""
    return PlotData(type="plotly", plot=fig if isinstance(fig, str) else to_json(fig))


def read_image(path: str | None, what: str) -> tuple[np.ndarray, str]:
    """Load an uploaded file with interir's robust reader; errors name the original file."""
    if path is None:
        raise InterIRError(f"no {what} given")
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InterIRError(f"{p.name}: cannot read the uploaded file ({exc.strerror or exc})") from None
    buf = io.BytesIO(data)
    buf.name = p.name
    return load_image(buf), p.name


def downscale(img: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, str | None]:
    """Area-downscale float (H, W, 3) so the long side is ≤ max_side; returns a notice if it did."""
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img, None
    import torch
    import torch.nn.functional as F

    s = max_side / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    y = F.interpolate(x, size=(nh, nw), mode="area")[0].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(y, dtype=np.float32), (
        f"The image is {w}×{h} px; it was downscaled to {nw}×{nh} (long side ≤ {max_side} px) "
        "to keep the CPU demo fast and within memory.")


def _choice_channel(value: Any) -> int | None:
    if value in (None, "", "mean"):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InterIRError(f"channel must be 'mean' or an integer, got {value!r}") from None


# ----------------------------------------------------------------------------- the app
class Explorer:
    """All handlers, bound to one served model and its reference set."""

    def __init__(self, holder: ModelHolder, reference: Reference | None, reference_note: str = "") -> None:
        self.holder = holder
        self.reference = reference
        self.reference_note = reference_note
        self.ref_thumbs = [png_data_uri(t) for t in reference.thumbs] if reference is not None else []
        self.examples = self._load_examples()

    # ---- examples with known clean references
    def _load_examples(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        manifest = EXAMPLES_DIR / "examples.json"
        if not manifest.is_file():
            return out
        try:
            entries = json.loads(manifest.read_text())
            for e in entries:
                deg = load_image(EXAMPLES_DIR / e["file"])
                out[pixel_key(deg)] = dict(e, path=str(EXAMPLES_DIR / e["file"]),
                                           clean_path=str(EXAMPLES_DIR / e["clean"]))
        except (InterIRError, OSError, KeyError, ValueError) as exc:
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
    @handler("degrade")
    def degrade(self, clean_path: str | None, haze: float, rain: float, noise: float, seed: float,
                session: Session | None) -> tuple[str, str, Session]:
        """Degrade a clean image; the clean one is kept as the reference for metrics."""
        from interir.data.degrade import degrade_image

        session = session or Session()
        if clean_path is None:
            raise InterIRError("choose a clean image for the degradation lab first")
        levels = {"haze": haze, "rain": rain, "noise": noise}
        for k, v in levels.items():
            lo, hi = LEVEL_RANGES[k]
            if v is None or not np.isfinite(float(v)) or not lo <= float(v) <= hi:
                raise InterIRError(f"{k} level must be between {lo:g} and {hi:g}, got {v!r}")
        try:
            seed_i = int(seed)
        except (TypeError, ValueError):
            raise InterIRError(f"seed must be an integer, got {seed!r}") from None
        if not 0 <= seed_i < 2**63:
            raise InterIRError(f"seed must be between 0 and 2^63 - 1, got {seed_i}")
        clean, name = read_image(clean_path, "clean image")
        clean, note = downscale(clean)
        clean_u8 = to_uint8(clean)
        clean = clean_u8.astype(np.float32) / 255.0
        out = to_uint8(degrade_image(clean, float(haze), float(rain), float(noise), seed=seed_i))
        session.lab = LabRef(pixel_key(out), clean_u8, (float(haze), float(rain), float(noise)), seed_i)
        stem = Path(name).stem[:40] or "image"
        path = save_png(session, out, f"{stem}_degraded_h{haze:g}_r{rain:g}_n{noise:g}_s{seed_i}", 6)
        md = (f"Made **{combo_label('_'.join(k for k, v in levels.items() if v > 0)) or 'no degradation'}** "
              f"(haze {haze:g}, rain {rain:g}, noise {noise:g}, seed {seed_i}); the clean image is kept "
              "as the reference.") + (f" {note}" if note else "")
        return path, md, session

    # ---- restore
    def _reference_for(self, img: np.ndarray, orig_shape: tuple[int, int], ref_path: str | None,
                       session: Session) -> tuple[np.ndarray | None, str, list[str]]:
        notes: list[str] = []
        if ref_path:
            ref, rname = read_image(ref_path, "reference image")
            if ref.shape[:2] != orig_shape:
                notes.append(f"The clean reference {rname} is {ref.shape[1]}×{ref.shape[0]} px but the "
                             f"image is {orig_shape[1]}×{orig_shape[0]}: reference ignored.")
                return None, "", notes
            ref, _ = downscale(ref)
            return to_uint8(ref), f"uploaded reference {rname}", notes
        key = pixel_key(img)
        if session.lab is not None and session.lab.key == key:
            return session.lab.clean, "degradation lab", notes
        ex = self.examples.get(key)
        if ex is not None:
            clean = to_uint8(load_image(ex["clean_path"]))
            if clean.shape == img.shape:
                return clean, f"shipped example ({ex['combo'].replace('_', ' + ')})", notes
        return None, "", notes

    @handler("restore")
    def restore(self, image_path: str | None, reference_path: str | None, session: Session | None,
                progress: gr.Progress = gr.Progress()) -> tuple[Any, str, str, Session]:
        """Run the model once on the image, keep its compact trace in the session."""
        session = session or Session()
        if image_path is None:
            raise InterIRError("no image: upload one, pick an example or make one in the degradation lab")
        t0 = time.perf_counter()
        progress(0.05, desc="Reading the image")
        img, name = read_image(image_path, "image")
        orig_shape = img.shape[:2]
        img, note = downscale(img)
        # the model sees exactly the 8-bit-or-better pixels we keep for interventions
        reference, ref_source, ref_notes = self._reference_for(img, orig_shape, reference_path, session)
        n = self.holder.config.get("n_blocks", "?")
        progress(0.2, desc=f"Running the unfolding ({n} IPBlocks + final RESM)")
        t1 = time.perf_counter()
        tr = self.holder.trace(img)
        t_model = time.perf_counter() - t1
        progress(0.85, desc="Keeping the trace")
        notes = [n_ for n_ in [note, *ref_notes] if n_]
        ct = compact_trace(tr, name=name, notes=notes)
        del tr
        if reference is not None:
            ct.with_reference(reference)
        old = session.trace
        session.clear_files()
        session.trace, session.x = ct, img
        session.interventions, session.placement = {}, None
        if old is not None:
            del old
            trim_memory()  # the previous trace's arrays go back to the OS, not just to malloc
        session.reference_source = ref_source
        before, after = save_pngs(session, [(ct.input, "input"),
                                            (ct.output, f"{Path(name).stem[:40] or 'image'}_restored")])
        h, w = ct.input.shape[:2]
        lines = [f"**Restored** {w}×{h} px: model + trace {t_model:.2f} s "
                 f"(total {time.perf_counter() - t0:.2f} s)."]
        if ct.psnr is not None:
            lines.append(self._metric_line(ct, ref_source))
        else:
            lines.append("No clean reference, so no PSNR/SSIM (use the degradation lab, an example, "
                         "or attach a reference).")
        lines += [f"⚠️ {n_}" for n_ in notes]
        session.info = lines
        return (before, after), after, "  \n".join(lines), session

    @staticmethod
    def _metric_line(ct: CompactTrace, ref_source: str) -> str:
        m = f"PSNR {ct.input_psnr:.2f} → **{ct.psnr[-1]:.2f} dB**"
        if ct.ssim is not None and ct.input_ssim is not None and np.isfinite(ct.ssim[-1]):
            m += f", SSIM {ct.input_ssim:.3f} → **{ct.ssim[-1]:.3f}**"
        elif ct.ssim is not None:
            m += " (SSIM follows)"
        return f"{m} against the clean reference ({ref_source})."

    # ---- iterations
    def _trace(self, session: Session | None) -> CompactTrace:
        if session is None or session.trace is None:
            raise InterIRError(NO_TRACE)
        return session.trace

    def _diff_scale(self, ct: CompactTrace) -> float:
        if "diff_scale" not in ct._cache:
            prev, scale = ct.input, 1.0 / 255.0
            for k in range(ct.n_iter):
                d = np.abs(ct.images[k].astype(np.int16) - prev.astype(np.int16)).mean(axis=2)
                scale = max(scale, float(np.percentile(d, 99.5)) / 255.0)
                prev = ct.images[k]
            ct._cache["diff_scale"] = scale
        return ct._cache["diff_scale"]

    def _encode_frame(self, ct: CompactTrace, session: Session, k: int) -> tuple[str, str]:
        prev = ct.input if k == 0 else ct.images[k - 1]
        diff, _ = diff_image(ct.images[k], prev, scale=self._diff_scale(ct), gamma=0.5)
        tag = f"{id(ct):x}"
        return (save_png(session, ct.images[k], f"iteration_{k}_{tag}"),
                save_png(session, diff, f"change_{k}_{tag}"))

    def _frame(self, ct: CompactTrace, session: Session, k: int) -> Any:
        """A future of the two PNG paths of iteration k (a trace's frames never change, so each
        is encoded once; :meth:`panels` starts them all in the background)."""
        with _FRAME_LOCK:
            frames = ct._cache.setdefault("frames", {})
            if k not in frames:
                frames[k] = _pool("frames").submit(self._encode_frame, ct, session, k)
            return frames[k]

    @handler("step")
    def step(self, k: float, session: Session | None) -> tuple[str, str, PlotData, str]:
        """The decoded image at iteration k, its change from k − 1, the curves with k marked."""
        ct = self._trace(session)
        k = int(np.clip(int(k or 0), 0, ct.n_iter - 1))
        scale = self._diff_scale(ct)
        img_path, diff_path = self._frame(ct, session, k).result()
        if not (Path(img_path).is_file() and Path(diff_path).is_file()):  # session folder was cleaned
            with _FRAME_LOCK:
                ct._cache.get("frames", {}).pop(k, None)
            img_path, diff_path = self._frame(ct, session, k).result()
        curves = plot_json(iteration_curves_json(ct, k))
        last = " (the output)" if k == ct.n_iter - 1 else ""
        md = (f"**k = {k}{last}** · fidelity {ct.fidelity[k]:.4g} · relative step {ct.step_norm[k]:.4g}"
              f" · change: mean |Δ| over RGB, square-root colour scale, brightest = {scale * 255:.1f}/255"
              f" or more (same scale for every k{'; k = 0 is compared with the input' if k == 0 else ''})")
        if ct.psnr is not None:
            md += f" · PSNR {ct.psnr[k]:.2f} dB"
            if ct.ssim is not None:
                md += f" · SSIM {ct.ssim[k]:.3f}"
        return img_path, diff_path, curves, md

    @handler("play")
    def play_toggle(self, playing: bool, session: Session | None) -> tuple[bool, Any, Any]:
        """Start or stop stepping through the iterations."""
        self._trace(session)
        playing = not bool(playing)
        return playing, gr.Timer(active=playing), gr.update(value="⏸ Pause" if playing else "▶ Play")

    @handler("play_tick")
    def play_tick(self, k: float, session: Session | None) -> tuple[Any, ...]:
        """One frame of the animation: k + 1 (from 0 again after the last), stop at the last."""
        if session is None or session.trace is None:
            return (gr.skip(),) * 5 + (gr.Timer(active=False), gr.update(value="▶ Play"), False)
        last = session.trace.n_iter - 1
        k = int(k or 0)
        k_next = k + 1 if k < last else 0
        done = k_next >= last
        return (k_next, *self.step(k_next, session), gr.Timer(active=not done),
                gr.update(value="▶ Play" if done else "⏸ Pause"), not done)

    # ---- matrices
    @handler("matrices")
    def matrices(self, k: float, channel: Any, session: Session | None) -> tuple[PlotData, str, str, str]:
        """A_k, B_k (one channel or the mean) with spectra; Λ_k as a channel grid and PCA → RGB."""
        ct = self._trace(session)
        k = int(np.clip(int(k or 0), 0, ct.n_iter - 1))
        ch = _choice_channel(channel)
        if ch is not None and not 0 <= ch < ct.channels:
            raise InterIRError(f"channel {ch} out of range 0..{ct.channels - 1}")
        fig = matrices_figure(ct, k, ch)
        lam = ct.Lambda[k].astype(np.float32)
        grid = channel_grid(lam, tile=max(48, 620 // int(np.ceil(np.sqrt(ct.channels)))))
        pca = upscale_to(pca_rgb(lam, lambda_basis(ct)), 480)
        h, w = ct.A.shape[-1], ct.B.shape[-1]
        md = (f"k = {k} · A is {h}×{h}, B is {w}×{w} per channel ({ct.channels} channels) · "
              f"Λ range [{float(lam.min()):.3g}, {float(lam.max()):.3g}]")
        return (plot_json(fig), save_png(session, grid, f"lambda_grid_{k}"),
                save_png(session, pca, f"lambda_pca_{k}"), md)

    # ---- explainable convolution
    def mask_choices(self, ct: CompactTrace, group: str | None, layer: str | None
                     ) -> tuple[list[tuple[str, str]], str, list[tuple[str, str]], str, list[tuple[str, str]]]:
        groups = ct.groups()
        gnames = list(groups)
        n_blocks = sum(1 for g in gnames if parse_layer(groups[g][0]).index is not None)
        gchoices = []
        for g in gnames:
            idx = parse_layer(groups[g][0]).index
            label = f"{g} · iteration {idx}" if idx is not None else f"{g} · iteration {n_blocks}"
            gchoices.append((label, g))
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
            (f"ch {int(c)} · {rate[c]:.0%} active" + (f" · τ {tau[c]:+.3f}" if tau is not None else ""), str(int(c)))
            for c in order]
        return gchoices, group, lchoices, layer, cchoices

    @handler("masks")
    def masks(self, group: str | None, layer: str | None, channel: Any, opacity: float,
              session: Session | None) -> tuple[Any, ...]:
        """Mask M of one explainable conv (one channel or the mean) over the input, its K×K
        attention maps, channels ranked by activation and the learned τ."""
        ct = self._trace(session)
        if not ct.has_masks:
            msg = "This model uses standard convolutions (conv_type = standard): no masks or attention."
            return (gr.update(choices=[], value=None), gr.update(choices=[], value=None),
                    gr.update(choices=[], value=None), None, plot_json(empty_figure(msg)),
                    plot_json(empty_figure(msg)), msg)
        gch, group, lch, layer, cch = self.mask_choices(ct, group, layer)
        if channel in (None, ""):  # default: the most informative binary mask, ~half active
            channel = str(int(np.argmin(np.abs(ct.mask_rate[layer] - 0.5))))
        ch = _choice_channel(channel)
        fallback = ""
        if ch is not None and not 0 <= ch < ct.mask_shape[layer][0]:
            fallback = f" (channel {ch} does not exist in this layer: showing the mean)"
            ch = None
        channel = "mean" if ch is None else str(ch)
        m = ct.mask(layer)
        rate, tau = ct.mask_rate[layer], ct.tau.get(layer)
        order = list(np.argsort(-rate, kind="stable"))
        base = upscale_to(resize_max(ct.input, 768), 560)
        gray = base.mean(axis=2, keepdims=True)
        base = (0.35 * base + 0.65 * gray).astype(np.uint8)  # desaturated so the mask stands out
        opacity = float(opacity if opacity is not None else 0.6)
        if ch is None:  # fraction of channels with M = 1, colour-mapped on a fixed 0..1 scale
            overlay = heat_overlay(base, m.mean(axis=0), opacity)
        else:
            overlay = mask_overlay(base, m[ch], opacity)
        att = attention_figure(ct.attention[layer], order, selected=ch, max_tiles=32,
                               title="K×K attention A per channel (ranked by activation)")
        rank = channel_rank_figure(rate, tau, selected=ch, title="mask activation per channel and learned τ")
        C, hh, ww = m.shape
        if ch is None:
            what = "mean over channels (colour: fraction of channels with M = 1, dark 0 → bright yellow 1)"
        else:
            what = f"channel {ch}: {rate[ch]:.1%} of positions active" + (
                f", τ = {tau[ch]:+.4f}" if tau is not None else "")
        md = (f"`{layer}` · {C} channels at {ww}×{hh} · {what} · layer average "
              f"{float(rate.mean()):.1%} active{fallback}")
        return (gr.update(choices=gch, value=group), gr.update(choices=lch, value=layer),
                gr.update(choices=cch, value=channel), save_png(session, overlay, "mask_overlay"),
                plot_json(att), plot_json(rank), md)

    # ---- embedding
    @handler("embedding")
    def embedding(self, n_neighbours: float, session: Session | None) -> tuple[PlotData, str, list[tuple[str, str]]]:
        """The t-SNE reference map with this image placed in it and a k-NN diagnosis."""
        ct = self._trace(session)
        if self.reference is None:
            msg = f"No reference embedding set is available ({self.reference_note})."
            return plot_json(empty_figure(msg)), msg, []
        try:
            kn = int(n_neighbours) if n_neighbours is not None else DEFAULT_NEIGHBOURS
        except (TypeError, ValueError):
            raise InterIRError(f"number of neighbours must be an integer, got {n_neighbours!r}") from None
        if not 1 <= kn <= len(self.reference):
            raise InterIRError(f"number of neighbours must be between 1 and {len(self.reference)}, got {kn}")
        if session.placement is None or len(session.placement.neighbours) != kn:
            session.placement = place(self.reference, ct.embedding, k=kn)
        p = session.placement
        fig = embedding_figure(self.reference, p, self.ref_thumbs)
        ranked = sorted(p.probs.items(), key=lambda kv: -kv[1])
        top = " · ".join(f"{combo_label(c)} {v:.0%}" for c, v in ranked if v > 0)
        md = (f"### Diagnosis: {combo_label(p.combo)} ({p.confidence:.0%} confidence)\n"
              f"Weighted vote of the {len(p.neighbours)} nearest of {len(self.reference)} reference "
              f"images: {top}.")
        if p.out_of_distribution:
            md += ("\n\n⚠️ This image is far from every reference image (its nearest neighbour is "
                   "farther than 1.5× the usual spacing): treat the diagnosis with caution.")
        if not self.holder.trained:
            md += "\n\n⚠️ Random-init model: the embedding carries no learned meaning."
        gallery = []
        for j in p.neighbours[:6]:
            combo = self.reference.combos[int(self.reference.labels[j])]
            lv = self.reference.levels[j]
            path = save_png(session, thumbnail(self.reference.thumbs[j], 96), f"neighbour_{j}")
            gallery.append((path, combo_label(combo)))
        return plot_json(fig), md, gallery

    # ---- interventions
    @handler("intervene")
    def intervene(self, k_exit: float, session: Session | None,
                  progress: gr.Progress = gr.Progress()) -> tuple[list[tuple[str, str]], str, Session]:
        """Early exit at k, uniform attention, Λ = 0 — each beside the normal result."""
        from interir.metrics import psnr, ssim

        ct = self._trace(session)
        k = int(np.clip(int(k_exit or 0), 0, ct.n_iter - 1))
        variants: list[tuple[str, np.ndarray]] = [("Normal", ct.output),
                                                  (f"Early exit at k = {k}", ct.images[k])]
        todo = [("uniform_attention", "Modulation off")] if self.holder.has_explainable else []
        todo.append(("zero_multiplier", "Λ = 0"))
        for i, (key, label) in enumerate(todo):
            if key not in session.interventions:
                progress((i + 0.5) / len(todo), desc=f"Rerunning: {label}")
                session.interventions[key] = to_uint8(self.holder.run(session.x, key))
            variants.append((label, session.interventions[key]))
        rows = ["| variant | PSNR | SSIM | mean abs. difference to normal (/255) | PSNR vs normal |",
                "|---|---|---|---|---|"]
        gallery = []
        for i, (label, img) in enumerate(variants):
            d = float(np.abs(img.astype(np.int16) - ct.output.astype(np.int16)).mean())
            pn = psnr(img, ct.output)
            if ct.reference is not None:
                p_ = f"{psnr(img, ct.reference):.2f} dB"
                s_ = f"{ssim(img, ct.reference):.3f}" if min(img.shape[:2]) >= 11 else "–"
            else:
                p_ = s_ = "–"
            rows.append(f"| {label} | {p_} | {s_} | {d:.2f} | {'identical' if not np.isfinite(pn) else f'{pn:.2f} dB'} |")
            cap = label + (f" · {p_}" if ct.reference is not None else "")
            gallery.append((save_png(session, img, f"intervention_{i}"), cap))
        if ct.reference is None:
            rows.append("\nNo clean reference: PSNR/SSIM columns need the degradation lab, an example or an "
                        "uploaded reference.")
        if not self.holder.has_explainable:
            rows.append("\nThis model uses standard convolutions: there is no modulation to switch off.")
        return gallery, "\n".join(rows), session

    # ---- export
    @handler("export")
    def export(self, session: Session | None) -> tuple[list[str], str]:
        """The trace bundle (.npz), its JSON summary and a static HTML report."""
        ct = self._trace(session)
        out = session.dir() / "export"
        out.mkdir(exist_ok=True)
        stem = Path(ct.name).stem[:40] or "image"
        npz = out / f"{stem}_trace.npz"
        tmp = out / f".{stem}_trace.tmp.npz"
        ct.save_npz(tmp)
        os.replace(tmp, npz)
        summary = out / f"{stem}_summary.json"
        from viz.compact import _jsonable

        summary.write_text(json.dumps(_jsonable(ct.summary_dict()), indent=1))
        if self.reference is not None and session.placement is None:
            try:
                session.placement = place(self.reference, ct.embedding, k=DEFAULT_NEIGHBOURS)
            except InterIRError:
                pass
        html = build_report(ct, self.reference, placement=session.placement,
                            reference_note=self.reference_note)
        report = write_report(html, out / f"{stem}_report.html")
        sizes = ", ".join(f"{p.name} ({p.stat().st_size / 1e6:.1f} MB)" for p in (npz, summary, report))
        return [str(npz), str(summary), str(report)], f"Ready: {sizes}."

    # ---- everything after a restore
    @handler("panels")
    def panels(self, session: Session | None) -> tuple[Any, ...]:
        """Reset every selector to the new trace and fill every panel (one round trip)."""
        ct = self._trace(session)
        n = ct.n_iter - 1
        ct.complete_ssim()  # deferred from restore so the restored image shows sooner
        info = list(session.info)
        if ct.psnr is not None and len(info) > 1:
            info[1] = self._metric_line(ct, session.reference_source)
        self._diff_scale(ct)
        for k in range(n, -1, -1):  # encode every frame in the background, the shown one first
            self._frame(ct, session, k)
        step = self.step(n, session)
        chan_choices = [("mean over channels", "mean")] + [(f"channel {c}", str(c)) for c in range(ct.channels)]
        mats = self.matrices(n, "mean", session)
        masks = self.masks(None, None, None, 0.6, session)
        emb = self.embedding(DEFAULT_NEIGHBOURS, session)
        return (gr.update(maximum=n, value=n), *step,
                gr.update(maximum=n, value=n), gr.update(choices=chan_choices, value="mean"), *mats,
                *masks, gr.update(value=DEFAULT_NEIGHBOURS), *emb,
                gr.update(maximum=n, value=max(0, n // 2)), [], "", None, "", "  \n".join(info))
