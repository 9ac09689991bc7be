"""The shipped checkpoints (and the n = 6 milestone) load and restore better than their input (fast, deterministic)."""
import numpy as np
import pytest
import torch

import interir
from interir.data.degrade import degrade
from interir.metrics import psnr
from interir.weights import DEFAULT_CHECKPOINT, repo_root

SHIPPED = ["interir-n6", "interir-n6-stdconv", "interir-tiny", "interir-tiny-stdconv"]


def clean_image(size: int = 96) -> torch.Tensor:
    """A smooth synthetic scene with edges (no photo needed)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    img = torch.stack([0.3 + 0.5 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * torch.sin(6 * xx + 3 * yy)])
    img[:, size // 3: size // 2, size // 4: 3 * size // 4] = torch.tensor([0.8, 0.3, 0.2])[:, None, None]
    return img.clamp(0, 1)[None]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_restores_better_than_input(name):
    path = repo_root() / "checkpoints" / name
    model = interir.load_pretrained(path)
    assert model.config["conv_type"] == ("standard" if name.endswith("stdconv") else "explain")
    clean = clean_image()
    gains = []
    for haze, rain, noise, seed in [(60, 0, 0, 1), (0, 0, 25, 2), (50, 150, 15, 3)]:
        g = torch.Generator().manual_seed(seed)
        degraded = degrade(clean, haze, rain, noise, generator=g)
        with torch.inference_mode():
            out = model(degraded).clamp(0, 1)
        to_np = lambda t: t[0].permute(1, 2, 0).numpy()  # noqa: E731
        gains.append(psnr(to_np(out), to_np(clean)) - psnr(to_np(degraded), to_np(clean)))
    assert np.mean(gains) > 1.0, gains
    assert min(gains) > 0.0, gains


def test_default_checkpoint_is_explainable_and_small():
    path = interir.default_checkpoint()
    assert path is not None and path.name == DEFAULT_CHECKPOINT
    assert interir.load_pretrained(path).config["conv_type"] == "explain"
    size = (path / "model.safetensors").stat().st_size
    assert size <= 10 * 1024 * 1024
