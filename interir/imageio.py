"""Robust image reading and writing shared by the CLI, datasets and the app.

Any image a user might have is accepted: PNG/JPEG/TIFF/WebP/BMP/GIF, grayscale, RGBA/LA
(composited on white), palette, CMYK, 16-bit and float, EXIF-rotated (the displayed orientation
is restored). Anything else fails with an :class:`InterIRError` naming the file.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InterIRError
from .fileio import atomic_write_with, check_output_path

PathOrFile = Union[str, os.PathLike, BinaryIO, bytes]

#: Default largest image (in pixels) the CLI and the app accept; override with the
#: ``INTERIR_MAX_PIXELS`` environment variable or the CLI's ``--max-pixels``.
DEFAULT_MAX_PIXELS = 16_000_000

SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                ".webp": "WEBP", ".bmp": "BMP"}


def max_pixels_default() -> int:
    """The configured pixel limit (``INTERIR_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`)."""
    env = os.environ.get("INTERIR_MAX_PIXELS")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise InterIRError(f"INTERIR_MAX_PIXELS must be an integer, got {env!r}") from None
        if value <= 0:
            raise InterIRError("INTERIR_MAX_PIXELS must be positive")
        return value
    return DEFAULT_MAX_PIXELS


def _name(src: PathOrFile) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    return getattr(src, "name", "<uploaded image>")


def _to_float_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to float32 RGB in [0, 1]."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        if mode == "F":
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
            arr = np.nan_to_num(arr)
        else:
            peak = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
            arr = np.clip(arr / peak, 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=2).astype(np.float32)
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA")).astype(np.float32) / 255.0
        alpha = rgba[..., 3:4]
        return (rgba[..., :3] * alpha + (1.0 - alpha)).astype(np.float32)  # on white
    if mode == "1":
        img = img.convert("L")
    if mode != "RGB":
        img = img.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV
    return np.asarray(img).astype(np.float32) / 255.0


def _read_16bit_tiff(data: bytes) -> np.ndarray | None:
    """Fallback for multi-channel 16-bit/float TIFFs that Pillow cannot decode."""
    try:
        import tifffile  # optional, ships with scikit-image's dependencies
    except ImportError:
        return None
    try:
        arr = np.asarray(tifffile.imread(io.BytesIO(data)))
    except Exception:
        return None
    arr = np.squeeze(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3:
        return None
    if arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        arr = np.moveaxis(arr, 0, 2)
    arr = arr[..., :3].astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating) and arr.max() <= 1.0:
        return np.clip(arr, 0, 1).astype(np.float32)
    peak = 65535.0 if arr.max() > 255 else 255.0
    return np.clip(arr / peak, 0, 1).astype(np.float32)


def load_image(src: PathOrFile, max_pixels: int | None = None) -> np.ndarray:
    """Read an image as float32 RGB (H, W, 3) in [0, 1] in its displayed orientation.

    Raises :class:`InterIRError` for missing, unreadable, corrupt or oversized files.
    """
    name = _name(src)
    limit = max_pixels_default() if max_pixels is None else max_pixels
    try:
        if isinstance(src, bytes):
            data = src
        elif isinstance(src, (str, os.PathLike)):
            path = Path(src)
            if not path.exists():
                raise InterIRError(f"{name}: no such file")
            if path.is_dir():
                raise InterIRError(f"{name}: is a directory, not an image")
            data = path.read_bytes()
        else:
            data = src.read()
    except OSError as exc:
        raise InterIRError(f"{name}: cannot read file ({exc.strerror or exc})") from None
    if not data:
        raise InterIRError(f"{name}: file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > limit:
                raise InterIRError(
                    f"{name}: image is {w}x{h} = {w * h / 1e6:.1f} MP, above the limit of "
                    f"{limit / 1e6:.1f} MP (raise it with --max-pixels or INTERIR_MAX_PIXELS)")
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_float_rgb(img)
    except InterIRError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InterIRError(f"{name}: not a recognised image file (or too large to decode)") from None
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, IndexError) as exc:
        arr = _read_16bit_tiff(data) if data[:2] in (b"II", b"MM") else None
        if arr is not None:
            return arr
        raise InterIRError(f"{name}: corrupt or unsupported image ({exc})") from None


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float [0,1] (H,W,3) -> uint8 with rounding."""
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def downscale(img: np.ndarray, max_side: int) -> np.ndarray:
    """Area-downscale float (H, W, 3) so its long side is at most ``max_side`` (0: never).

    Images already small enough come back unchanged (the same array); the model input of the
    app and of ``interir report`` both go through here.
    """
    h, w = img.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return img
    import torch  # imageio is used without torch elsewhere (datasets' workers, the app's uploads)
    import torch.nn.functional as F

    s = max_side / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    y = F.interpolate(x, size=(nh, nw), mode="area")[0].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(y, dtype=np.float32)


def save_image(img: np.ndarray, path: str | os.PathLike) -> None:
    """Write float [0,1] (H,W,3) RGB; the format follows the extension (:data:`SAVE_FORMATS`).

    Writes to a temporary file and renames, so an existing file is never left half-written.
    """
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InterIRError(f"{path}: unknown output format {path.suffix or '(none)'}; "
                           f"use one of {', '.join(sorted(SAVE_FORMATS))}")
    check_output_path(path)
    kwargs = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    pil = Image.fromarray(to_uint8(img))
    try:  # not fsynced: images are cheap to rewrite, and make-testset writes hundreds
        atomic_write_with(path, lambda tmp: pil.save(tmp, format=fmt, **kwargs), durable=False)
    except OSError as exc:
        raise InterIRError(f"{path}: cannot write ({exc.strerror or exc})") from None
