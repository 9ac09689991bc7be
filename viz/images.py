"""Image-producing views (numpy in, uint8 RGB out): differences, mask overlays, channel grids,
PCA colourings, thumbnails. Pure functions, no model, no gradio."""
from __future__ import annotations

import base64
import io
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["colormap", "apply_colormap", "diff_image", "upsample_nearest", "mask_overlay",
           "channel_grid", "fit_pca", "pca_rgb", "resize_max", "thumbnail", "png_data_uri",
           "png_bytes", "jpeg_data_uri", "label_image", "heat_overlay", "upscale_to", "change_scales",
           "change_frame", "change_levels", "colour_levels", "diff_levels", "indexed_png_data_uri",
           "pretty_bytes"]


@lru_cache(maxsize=16)
def colormap(name: str) -> np.ndarray:
    """A 256×3 uint8 lookup table of a matplotlib colormap."""
    from matplotlib import colormaps

    lut = colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    return (lut * 255.0 + 0.5).astype(np.uint8)


def colour_levels(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """A float array as uint8 indices into a 256-colour map: ``lo`` -> 0, ``hi`` -> 255."""
    span = hi - lo if hi > lo else 1.0
    return np.clip((np.nan_to_num(values.astype(np.float32)) - lo) / span * 255.0, 0, 255).astype(np.uint8)


def apply_colormap(values: np.ndarray, lo: float, hi: float, name: str = "magma") -> np.ndarray:
    """Map a 2-D float array to RGB with ``lo`` -> first colour, ``hi`` -> last colour."""
    return colormap(name)[colour_levels(values, lo, hi)]


def diff_levels(current: np.ndarray, previous: np.ndarray, scale: float | None = None,
                gamma: float = 1.0) -> tuple[np.ndarray, float]:
    """|current − previous| averaged over RGB (0–1 scale) as uint8 colour-map indices.

    ``scale`` is the value shown at full brightness (default: the 99.5th percentile, at least
    1/255); ``gamma`` < 1 brightens small changes (level = (d / scale) ** gamma). Returns the
    levels and the scale used, so a caption can state it.
    """
    a = current.astype(np.float32) / (255.0 if current.dtype == np.uint8 else 1.0)
    b = previous.astype(np.float32) / (255.0 if previous.dtype == np.uint8 else 1.0)
    d = np.abs(a - b).mean(axis=2)
    if scale is None:
        scale = max(float(np.percentile(d, 99.5)), 1.0 / 255.0)
    v = np.clip(d / scale, 0.0, 1.0)
    if gamma != 1.0:
        v = v ** gamma
    return colour_levels(v, 0.0, 1.0), float(scale)


def diff_image(current: np.ndarray, previous: np.ndarray, scale: float | None = None,
               cmap: str = "magma", gamma: float = 1.0) -> tuple[np.ndarray, float]:
    """:func:`diff_levels` colour-mapped: the RGB image and the scale used."""
    levels, scale = diff_levels(current, previous, scale, gamma)
    return colormap(cmap)[levels], scale


def upsample_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour upsampling of a (h, w) map to (height, width).

    The feature map of a 4×-downsampled (and bottom/right padded) image maps pixel row ``i`` to
    feature row ``i // f`` with ``f = round(height / h)`` (4 for InterIR).
    """
    h, w = mask.shape
    fy = max(1, int(round(height / h)))
    fx = max(1, int(round(width / w)))
    rows = np.minimum(np.arange(height) // fy, h - 1)
    cols = np.minimum(np.arange(width) // fx, w - 1)
    return mask[rows[:, None], cols[None, :]]


def mask_overlay(image: np.ndarray, mask: np.ndarray, opacity: float = 0.5,
                 color: tuple[int, int, int] = (255, 80, 0)) -> np.ndarray:
    """Blend ``color`` over ``image`` (uint8 H×W×3) where ``mask`` (h×w, any resolution) is set.

    ``mask`` may be binary or fractional (e.g. a mean over channels); it is upsampled to the
    image size by nearest neighbour.
    """
    opacity = float(np.clip(opacity, 0.0, 1.0))
    m = upsample_nearest(mask.astype(np.float32), image.shape[0], image.shape[1])[..., None]
    out = image.astype(np.float32) * (1.0 - opacity * m) + np.asarray(color, np.float32) * (opacity * m)
    return (out + 0.5).clip(0, 255).astype(np.uint8)


def heat_overlay(image: np.ndarray, values: np.ndarray, opacity: float = 0.6,
                 cmap: str = "inferno") -> np.ndarray:
    """Blend a colour-mapped map with values in [0, 1] (any resolution) over ``image``."""
    opacity = float(np.clip(opacity, 0.0, 1.0))
    v = upsample_nearest(np.clip(values.astype(np.float32), 0, 1), image.shape[0], image.shape[1])
    color = apply_colormap(v, 0.0, 1.0, cmap).astype(np.float32)
    out = image.astype(np.float32) * (1.0 - opacity) + color * opacity
    return (out + 0.5).clip(0, 255).astype(np.uint8)


def upscale_to(img: np.ndarray, min_side: int) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor so the long side reaches ~min_side."""
    f = max(1, int(min_side // max(img.shape[:2])))
    return np.repeat(np.repeat(img, f, axis=0), f, axis=1) if f > 1 else img


def _pool_to(arr: np.ndarray, max_side: int) -> np.ndarray:
    """Block-average a (..., h, w) array so that both sides are ≤ max_side."""
    h, w = arr.shape[-2:]
    f = int(np.ceil(max(h, w) / max_side))
    if f <= 1:
        return arr
    hh, ww = (h // f) * f, (w // f) * f
    a = arr[..., :hh, :ww].astype(np.float32)
    return a.reshape(*a.shape[:-2], hh // f, f, ww // f, f).mean(axis=(-3, -1))


def channel_grid(arr: np.ndarray, tile: int = 96, ncols: int | None = None, pad: int = 3,
                 cmap: str = "RdBu_r", symmetric: bool = True, labels: bool = True) -> np.ndarray:
    """Tile a (C, h, w) array into one RGB image, each channel scaled on its own.

    Each tile is at most ``tile`` px on its long side: larger maps are block-averaged, smaller
    ones enlarged by an integer factor (nearest neighbour). ``symmetric``: map [−m, m] with
    m = max|x| of the channel (diverging maps, signed data); otherwise [min, max]. Channel
    numbers are written in the corner of each tile.
    """
    c = arr.shape[0]
    ncols = ncols or int(np.ceil(np.sqrt(c)))
    nrows = int(np.ceil(c / ncols))
    pooled = _pool_to(arr, tile).astype(np.float32)
    f = tile // max(pooled.shape[-2:])
    if f > 1:
        pooled = np.repeat(np.repeat(pooled, f, axis=-2), f, axis=-1)
    th, tw = pooled.shape[-2:]
    canvas = np.full((nrows * (th + pad) + pad, ncols * (tw + pad) + pad, 3), 255, np.uint8)
    for i in range(c):
        ch = np.nan_to_num(pooled[i])
        if symmetric:
            m = float(np.abs(ch).max()) or 1.0
            lo, hi = -m, m
        else:
            lo, hi = float(ch.min()), float(ch.max())
        r, q = divmod(i, ncols)
        y, x = pad + r * (th + pad), pad + q * (tw + pad)
        canvas[y:y + th, x:x + tw] = apply_colormap(ch, lo, hi, cmap)
    if labels and min(th, tw) >= 24:
        img = Image.fromarray(canvas)
        draw = ImageDraw.Draw(img)
        for i in range(c):
            r, q = divmod(i, ncols)
            y, x = pad + r * (th + pad), pad + q * (tw + pad)
            draw.rectangle([x, y, x + 6 * len(str(i)) + 3, y + 11], fill=(255, 255, 255))
            draw.text((x + 2, y), str(i), fill=(0, 0, 0))
        canvas = np.asarray(img)
    return canvas


def fit_pca(stack: np.ndarray, n_components: int = 3, max_samples: int = 20000,
            seed: int = 0) -> dict[str, np.ndarray]:
    """Fit a PCA colour basis on feature maps (..., C, h, w) pooled over all leading axes.

    Returns ``mean`` (C,), ``components`` (3, C) and per-component ``lo``/``hi`` (1st/99th
    percentiles of the projections), so that several maps (e.g. all iterations) share colours.
    """
    c = stack.shape[-3]
    x = np.moveaxis(stack.astype(np.float32), -3, -1).reshape(-1, c)
    if x.shape[0] > max_samples:
        idx = np.random.default_rng(seed).choice(x.shape[0], max_samples, replace=False)
        x = x[np.sort(idx)]
    x = np.nan_to_num(x)
    mean = x.mean(axis=0)
    xc = x - mean
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    comps = np.zeros((n_components, c), np.float32)
    comps[:min(n_components, vt.shape[0])] = vt[:n_components]
    # fix the sign of each component (largest |loading| positive) so colours are reproducible
    signs = np.sign(comps[np.arange(n_components), np.abs(comps).argmax(axis=1)])
    comps *= np.where(signs == 0, 1.0, signs)[:, None]
    proj = xc @ comps.T
    lo = np.percentile(proj, 1, axis=0).astype(np.float32)
    hi = np.percentile(proj, 99, axis=0).astype(np.float32)
    return {"mean": mean.astype(np.float32), "components": comps, "lo": lo, "hi": hi}


def pca_rgb(fmap: np.ndarray, basis: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Project a (C, h, w) feature map on 3 principal components and show them as R, G, B."""
    basis = basis or fit_pca(fmap)
    c, h, w = fmap.shape
    x = np.nan_to_num(fmap.astype(np.float32).reshape(c, -1).T) - basis["mean"]
    proj = x @ basis["components"].T
    span = np.where(basis["hi"] > basis["lo"], basis["hi"] - basis["lo"], 1.0)
    rgb = np.clip((proj - basis["lo"]) / span, 0.0, 1.0)
    return (rgb.reshape(h, w, 3) * 255.0 + 0.5).astype(np.uint8)


def resize_max(img: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (area filter) so that the long side is ≤ max_side; smaller images untouched."""
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BOX))


def thumbnail(img: np.ndarray, size: int = 48) -> np.ndarray:
    """Centre-crop to a square and resize to size×size (uint8)."""
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    crop = np.ascontiguousarray(img[y:y + s, x:x + s])
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.LANCZOS))


def png_bytes(img: np.ndarray, compress_level: int = 1) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def png_data_uri(img: np.ndarray, compress_level: int = 6) -> str:
    """A ``data:image/png;base64,...`` URI of a uint8 image (for HTML and hover tooltips)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(img, compress_level)).decode("ascii")


def jpeg_data_uri(img: np.ndarray, quality: int = 88, full_chroma: bool = False) -> str:
    """A ``data:image/jpeg;base64,...`` URI (smaller, for previews where exact pixels don't matter);
    ``full_chroma`` keeps colour at full resolution (4:4:4) instead of 4:2:0."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling=0 if full_chroma else -1)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def indexed_png_data_uri(levels: np.ndarray, cmap: str = "magma", compress_level: int = 6) -> str:
    """A lossless ``data:image/png`` URI of a colour-mapped image, stored as its uint8 levels
    and the 256-colour map (a palette PNG: a third of the RGB data, same pixels as
    ``colormap(cmap)[levels]``)."""
    levels = np.ascontiguousarray(levels, dtype=np.uint8)
    im = Image.frombytes("P", (levels.shape[1], levels.shape[0]), levels.tobytes())
    im.putpalette(colormap(cmap).tobytes())
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=compress_level)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def label_image(img: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` on a white strip above the image (for static strips in the report)."""
    h, w = img.shape[:2]
    canvas = Image.new("RGB", (w, h + 14), (255, 255, 255))
    canvas.paste(Image.fromarray(img), (0, 14))
    ImageDraw.Draw(canvas).text((3, 1), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def _p995(current: np.ndarray, previous: np.ndarray) -> float:
    d = np.abs(current.astype(np.int16) - previous.astype(np.int16)).mean(axis=2)
    return float(np.percentile(d, 99.5)) / 255.0


def change_scales(ct: Any) -> tuple[float, float]:
    """Full-brightness values of the change maps: (k = 0 vs the input, every k ≥ 1).

    k = 0 measures the whole first step away from the degraded input (large almost everywhere),
    k ≥ 1 the refinements: one shared scale would leave k = 0 saturated or the rest black. Each
    is the 99.5th percentile of its maps (at least 1/255), memoised on the trace.
    """
    def compute() -> tuple[float, float]:
        first = max(_p995(ct.images[0], ct.input), 1.0 / 255.0)
        rest = max([_p995(ct.images[k], ct.images[k - 1]) for k in range(1, ct.n_iter)] + [1.0 / 255.0])
        return first, rest
    return ct.memo("change_scales", compute)


def change_levels(ct: Any, k: int) -> tuple[np.ndarray, float]:
    """The change |I_k − I_(k−1)| (k = 0: from the input) on a square-root scale, as uint8
    levels of the colour map; and the scale used (see :func:`change_scales`)."""
    first, rest = change_scales(ct)
    prev = ct.input if k == 0 else ct.images[k - 1]
    return diff_levels(ct.images[k], prev, scale=first if k == 0 else rest, gamma=0.5)


def change_frame(ct: Any, k: int) -> tuple[np.ndarray, float]:
    """:func:`change_levels` colour-mapped (magma): the RGB image and the scale used."""
    levels, scale = change_levels(ct, k)
    return colormap("magma")[levels], scale


def pretty_bytes(n: int) -> str:
    """A file size as gradio's file list shows it (powers of 1024, one decimal: '2.6 KB')."""
    units = ["B", "KB", "MB", "GB", "TB"]
    value, i = float(n), 0
    while value > 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{np.floor(value * 10 + 0.5) / 10:.1f} {units[i]}"  # JavaScript's toFixed(1): 3.25 -> 3.3
