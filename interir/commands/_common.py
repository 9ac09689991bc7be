"""Pieces shared by the commands: --weights / --max-pixels arguments, model and image loading."""
from __future__ import annotations

import argparse

import numpy as np
import torch

from ..errors import InterIRError
from ..imageio import load_image
from ..model.interir import InterIR
from ..weights import DEFAULT_CHECKPOINT_PATH, default_checkpoint, load_pretrained


def add_weights_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", metavar="DIR", default=None,
                   help="weights folder (config.json + model.safetensors); default: the shipped "
                        f"{DEFAULT_CHECKPOINT_PATH}")


def add_max_pixels_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse images larger than N pixels (default 16000000, or INTERIR_MAX_PIXELS)")


def resolve_model(weights: str | None) -> InterIR:
    """Load --weights, or the shipped checkpoint, or fail with a clear message."""
    if weights is None:
        path = default_checkpoint()
        if path is None:
            raise InterIRError(f"no shipped checkpoint found ({DEFAULT_CHECKPOINT_PATH}); pass --weights DIR")
        weights = str(path)
    return load_pretrained(weights)


def image_tensor(path: str, max_pixels: int | None) -> torch.Tensor:
    """Read an image file as a (1, 3, H, W) float tensor."""
    if max_pixels is not None and max_pixels <= 0:
        raise InterIRError("--max-pixels must be positive")
    arr = load_image(path, max_pixels=max_pixels)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]


def tensor_image(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) tensor -> float (H, W, 3) clamped to [0, 1]."""
    return x[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
