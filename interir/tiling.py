"""Tiled inference for large photos: the image is cut into overlapping tiles, each restored on
its own, and the tiles are blended with linear ramps across the overlaps (no visible seams).

Why: InterIR's data term ``A·I·B`` uses one (h×h) and one (w×w) matrix per channel, so the cost
of a forward pass grows like h²w + hw² (faster than the pixel count) and a 12-megapixel photo
needs minutes and gigabytes in one piece. Tiled, the cost is linear in the pixel count and the
peak memory is that of one tile.

What it changes: the degradation matrices A and B (and Λ) are estimated **per tile** instead of
for the whole image, so a tiled restoration is close to, not equal to, the untiled one
(``benchmarks/tiling.py`` measures the difference); the explorer's trace always runs untiled.
"""
from __future__ import annotations

from typing import Callable

import torch

from .errors import InterIRError

__all__ = ["check_tiling", "tile_starts", "blend_ramp", "restore_tiled"]


def check_tiling(tile: int, overlap: int) -> None:
    """Raise :class:`InterIRError` unless ``tile`` ≥ 16 and 0 ≤ ``overlap`` < tile / 2."""
    if tile < 16:
        raise InterIRError(f"--tile must be at least 16 pixels, got {tile}")
    if not 0 <= overlap < tile // 2:
        raise InterIRError(f"--tile-overlap must be between 0 and {tile // 2 - 1} (under half the tile), "
                           f"got {overlap}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the fewest tiles of size ``tile`` that cover ``[0, length)`` with at
    least ``overlap`` pixels shared by neighbours, spread evenly (the last ends at ``length``)."""
    if length <= tile:
        return [0]
    n = -(-(length - overlap) // (tile - overlap))          # ceil
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def blend_ramp(size: int, overlap: int, lead: bool, tail: bool) -> torch.Tensor:
    """1-D blending weights for one tile: a linear ramp over ``overlap`` pixels on each side that
    has a neighbour (``lead``: one before it, ``tail``: one after), 1 elsewhere; never 0."""
    w = torch.ones(size)
    if overlap > 0:
        ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        n = min(overlap, size)
        if lead:
            w[:n] = torch.minimum(w[:n], ramp[:n])
        if tail:
            w[size - n:] = torch.minimum(w[size - n:], ramp[:n].flip(0))
    return w


def restore_tiled(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int = 512,
                  overlap: int = 64, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Restore ``x`` (1, 3, H, W) tile by tile and blend; an image that fits one tile is restored
    whole (the result then equals ``model(x)``). ``progress(done, total)`` is called per tile."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise InterIRError(f"tiled restoration takes one image (1, 3, H, W), got {tuple(x.shape)}")
    check_tiling(tile, overlap)
    h, w = x.shape[-2:]
    rows, cols = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    out = torch.zeros_like(x)
    weight = torch.zeros(1, 1, h, w, dtype=x.dtype, device=x.device)
    total, done = len(rows) * len(cols), 0
    with torch.inference_mode():
        for i, r in enumerate(rows):
            th = min(tile, h)
            wr = blend_ramp(th, overlap, i > 0, i < len(rows) - 1).to(x)
            for j, c in enumerate(cols):
                tw = min(tile, w)
                wc = blend_ramp(tw, overlap, j > 0, j < len(cols) - 1).to(x)
                wt = wr[:, None] * wc[None, :]
                y = model(x[..., r:r + th, c:c + tw])
                out[..., r:r + th, c:c + tw] += y * wt
                weight[..., r:r + th, c:c + tw] += wt
                done += 1
                if progress is not None:
                    progress(done, total)
    return out / weight
