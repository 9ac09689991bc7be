"""The shipped checkpoints load and restore better than their input (fast, deterministic); the committed
milestones of a running stage load and a config continues from each."""
import numpy as np
import pytest
import skimage.data as skd
import torch
import torch.nn.functional as F

import interir
from interir.config import load_config
from interir.data.degrade import degrade
from interir.metrics import psnr
from interir.model.epblock import EXPLAIN_TYPES
from interir.weights import DEFAULT_CHECKPOINT, repo_root, training_stage

SHIPPED = ["interir-n6", "interir-n6-stdconv", "interir-tiny", "interir-tiny-stdconv"]


def clean_image(size: int = 96) -> torch.Tensor:
    """scikit-image's astronaut (NASA, public domain; one of the reference photos), its centre
    square area-downscaled to ``size``². A natural photo, as the models are trained and tested on:
    a smooth synthetic gradient scene, used here before, is darkened by about 18/255 under
    haze + rain + noise by every explainable n = 6 checkpoint (docs/model_sweep.md, "A smooth
    synthetic scene"), a measured weakness rather than a check of restoration."""
    img = torch.from_numpy(skd.astronaut()[..., :3].astype(np.float32) / 255).permute(2, 0, 1)[None]
    return F.interpolate(img, size=(size, size), mode="area").clamp(0, 1)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_restores_better_than_input(name):
    path = repo_root() / "checkpoints" / name
    model = interir.load_pretrained(path)
    assert (model.config["conv_type"] == "standard") == name.endswith("stdconv")
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
    assert interir.load_pretrained(path).config["conv_type"] in EXPLAIN_TYPES
    size = (path / "model.safetensors").stat().st_size
    assert size <= 10 * 1024 * 1024


MILESTONES = sorted(p.name for p in (repo_root() / "milestones").iterdir() if p.is_dir())


def test_a_committed_milestone_exists_for_each_twin():
    assert any("stdconv" in m for m in MILESTONES) and any("stdconv" not in m for m in MILESTONES)


@pytest.mark.parametrize("name", MILESTONES)
def test_milestone_names_its_run_and_iteration_and_a_config_continues_from_it(name):
    """A run's committed milestone (milestones/<run>-<iter>) is the weights its run had at that
    iteration, and a config in configs/ warm-restarts from it with the same network (the way to
    continue the run on a machine that lacks its state)."""
    path = repo_root() / "milestones" / name
    model = interir.load_pretrained(path)
    run, iteration = training_stage(path)
    assert name == f"{run}-{iteration}"
    users = [load_config(p) for p in sorted((repo_root() / "configs").glob("*.yaml"))]
    users = [c for c in users if c["train"].get("init_weights") == f"milestones/{name}"]
    assert users, f"no config continues from milestones/{name}"
    for cfg in users:
        assert cfg["network"]["conv_type"] == model.config["conv_type"]
        assert cfg["network"]["n_blocks"] == model.config["n_blocks"]
    if (path / "ema").is_dir():   # its moving average at the same iteration, which they continue
        assert training_stage(path / "ema") == (run, iteration)
        assert interir.load_pretrained(path / "ema").config == model.config
        assert all(c["train"].get("init_ema") == f"milestones/{name}/ema" for c in users)
