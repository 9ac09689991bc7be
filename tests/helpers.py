"""Builders several test modules share: the smallest valid training config and a validation
tree in ``make-testset`` layout."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from interir.imageio import save_image


def minimal_raw_config(**network: Any) -> dict:
    """A fresh raw training config (before validation) with only what is required, for the
    ``tiny`` preset with ``network`` overrides."""
    return {
        "name": "t",
        "datasets": {"train": {"root": "clean", "patch_size": 32, "batch_size": 2}},
        "network": {"preset": "tiny", **network},
        "train": {"optimizer": {"lr": 1e-3}, "total_iter": 10},
        "checkpoint": {"dir": "run"},
    }


def write_val_pairs(root: Path, shape: tuple[int, int], rng: np.random.Generator,
                    combos: tuple[str, ...] = ("haze", "noise"), n: int = 2) -> None:
    """``root/val/<combo>/{input,target}/v<i>.png``: random targets of ``shape`` (H, W) and a
    brightened, flattened copy of each as its input."""
    for combo in combos:
        for sub in ("input", "target"):
            (root / "val" / combo / sub).mkdir(parents=True)
        for i in range(n):
            tgt = rng.random((*shape, 3)).astype(np.float32)
            save_image(tgt, root / "val" / combo / "target" / f"v{i}.png")
            save_image(np.clip(tgt * 0.7 + 0.2, 0, 1), root / "val" / combo / "input" / f"v{i}.png")
