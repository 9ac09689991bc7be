"""What the handlers share: per-browser-session state, its files, reading uploads, and the
:func:`handler` decorator (named outputs, one log line per request, one-line errors)."""
from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
import weakref
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
from gradio.components.plot import PlotData

from interir.errors import InterIRError
from interir.fileio import atomic_write_with
from interir import imageio
from interir.imageio import load_image, to_uint8
from interir.reference import Placement
from viz.compact import CompactTrace
from viz.images import png_bytes

log = logging.getLogger("interir.app")

#: The largest upload the explorer decodes (pixels); images longer than MAX_SIDE are then downscaled.
MAX_PIXELS = int(os.environ.get("INTERIR_APP_MAX_PIXELS", str(16_000_000)))
MAX_SIDE = int(os.environ.get("INTERIR_APP_MAX_SIDE", "1024"))

#: (handler name, seconds) of the most recent calls (server-side timings, for benchmarks)
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
    x: np.ndarray | None = None                      # float32 model input (for reruns)
    lab: LabRef | None = None
    reruns: dict[str, np.ndarray] = field(default_factory=dict)  # interventions, twin: uint8 outputs
    placement: Placement | None = None
    frames: dict[int, Future] = field(default_factory=dict)      # k -> future of (image, change) PNGs
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

    def new_trace(self, ct: CompactTrace, x: np.ndarray) -> CompactTrace | None:
        """Replace the trace (and everything derived from it); returns the previous one."""
        old = self.trace
        if self.workdir is not None and self.workdir.is_dir():  # gradio holds its own copies
            for p in self.workdir.iterdir():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        self.trace, self.x = ct, x
        self.reruns, self.placement, self.frames = {}, None, {}
        return old


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


# ----------------------------------------------------------------------------- files
_POOLS: dict[str, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def pool(name: str) -> ThreadPoolExecutor:
    """Small shared thread pools (PIL encodes PNGs without holding the GIL)."""
    with _POOL_LOCK:
        if name not in _POOLS:
            _POOLS[name] = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"interir-{name}")
        return _POOLS[name]


def save_png(session: Session, img: np.ndarray, name: str, compress_level: int = 1) -> str:
    """Write an image into the session folder (fast PNG) and return its path for gradio."""
    path = session.dir() / f"{name}.png"
    # temporary files for gradio: atomic (a frame may be re-read while rewritten), not fsynced
    atomic_write_with(path, lambda tmp: tmp.write_bytes(png_bytes(img, compress_level)), durable=False)
    return str(path)


def save_pngs(session: Session, items: list[tuple[np.ndarray, str]], compress_level: int = 1) -> list[str]:
    """:func:`save_png` for several images at once, in parallel."""
    futures = [pool("png").submit(save_png, session, img, name, compress_level) for img, name in items]
    return [f.result() for f in futures]


# ----------------------------------------------------------------------------- uploads
_BOMB = re.compile(r"\((\d+) pixels\)")


def check_upload(path: str | os.PathLike, name: str) -> list[str]:
    """Refuse what the explorer will not decode, from the header alone; returns notices
    (an animated image: only its first frame is used)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                frames = int(getattr(im, "n_frames", 1) or 1)
    except Image.DecompressionBombError as exc:
        m = _BOMB.search(str(exc))
        size = f"{int(m.group(1)) / 1e6:,.0f} MP" if m else "far too many pixels"
        raise InterIRError(f"{name}: refused as a decompression bomb (the image declares {size}); "
                           f"the explorer accepts up to {MAX_PIXELS / 1e6:.0f} MP") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return []  # load_image says what is wrong with it
    if w * h > MAX_PIXELS:
        raise InterIRError(f"{name}: image is {w}×{h} = {w * h / 1e6:.0f} MP; the explorer accepts "
                           f"up to {MAX_PIXELS / 1e6:.0f} MP")
    if frames > 1:
        return [f"{name} is animated ({frames} frames): only the first frame is used."]
    return []


def read_image(path: str | None, what: str) -> tuple[np.ndarray, str, list[str]]:
    """Load an uploaded file with interir's robust reader: (image, file name, notices)."""
    if path is None:
        raise InterIRError(f"no {what} given")
    p = Path(path)
    notes = check_upload(p, p.name)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InterIRError(f"{p.name}: cannot read the uploaded file ({exc.strerror or exc})") from None
    buf = io.BytesIO(data)
    buf.name = p.name
    return load_image(buf, max_pixels=MAX_PIXELS), p.name, notes


def downscale(img: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, str | None]:
    """:func:`interir.imageio.downscale` to the explorer's size, with a notice if it did."""
    h, w = img.shape[:2]
    out = imageio.downscale(img, max_side)
    if out is img:
        return img, None
    nh, nw = out.shape[:2]
    return out, (f"The image is {w}×{h} px; it was downscaled to {nw}×{nh} (long side ≤ {max_side} px) "
                 "to keep the CPU demo fast and within memory.")


# ----------------------------------------------------------------------------- handlers
Outputs = dict[str, Any]


def plot_json(fig: Any) -> PlotData:
    """A figure dict from viz.plots (or its JSON) as gradio plot data."""
    from viz.plots import to_json

    return PlotData(type="plotly", plot=fig if isinstance(fig, str) else to_json(fig))


def _describe_input(args: tuple[Any, ...], result: Outputs | None) -> str:
    """The image size a request worked on (the session's trace), for the log."""
    for a in [*(result or {}).values(), *args]:
        if isinstance(a, Session) and a.trace is not None:
            h, w = a.trace.input.shape[:2]
            return f"{w}x{h}"
    return "-"


def handler(name: str, outputs: tuple[str, ...]) -> Callable[[Callable[..., Outputs]], Callable[..., Outputs]]:
    """An event handler whose result is a dict keyed by component name (``outputs`` lists the
    names it may fill; app.ui maps them to components). Logs one line per request (endpoint,
    image size, ms, outcome); user errors become a one-line ``gr.Error``, unexpected ones too,
    with their traceback in the log only."""
    def deco(fn: Callable[..., Outputs]) -> Callable[..., Outputs]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Outputs:
            t0 = time.perf_counter()
            outcome, result = "ok", None
            try:
                result = fn(*args, **kwargs)
                unknown = set(result) - set(outputs)
                if unknown:
                    raise RuntimeError(f"{name} returned undeclared outputs {sorted(unknown)}")
                return result
            except gr.Error as exc:
                outcome = f"refused: {exc.message}"
                raise
            except InterIRError as exc:
                outcome = f"refused: {exc}"
                raise gr.Error(str(exc), print_exception=False) from None
            except MemoryError:
                outcome = "out of memory"
                raise gr.Error("Out of memory: try a smaller image.", print_exception=False) from None
            except Exception as exc:  # noqa: BLE001 - traceback to the log, one line to the page
                outcome = f"failed: {type(exc).__name__}"
                log.exception("%s failed", name)
                raise gr.Error(f"Unexpected error in {name} ({type(exc).__name__}); the server log has "
                               "the details.", print_exception=False) from None
            finally:
                dt = time.perf_counter() - t0
                TIMINGS.append((name, dt))
                log.info("request /%s image=%s %.0f ms %s", name, _describe_input(args, result), dt * 1000, outcome)
        wrapper.outputs = tuple(outputs)  # type: ignore[attr-defined]
        return wrapper
    return deco


def fills(*outputs: str, first: bool = False) -> Callable[[Callable[..., Outputs]], Callable[..., Outputs]]:
    """Mark an ``Explorer`` method ``(self, session) -> dict`` that fills its panel for a new
    trace: ``first`` ones (the panel on screen) run in /panels right after the restore, the
    others in /panels_more just after."""
    def deco(fn: Callable[..., Outputs]) -> Callable[..., Outputs]:
        fn.fills = tuple(outputs)  # type: ignore[attr-defined]
        fn.fills_first = first  # type: ignore[attr-defined]
        return fn
    return deco


__all__ = ["Session", "LabRef", "handler", "fills", "read_image", "downscale", "save_png", "save_pngs",
           "pool", "plot_json", "pixel_key", "drop_session", "clean_stale_sessions", "TIMINGS", "MAX_PIXELS", "MAX_SIDE"]
