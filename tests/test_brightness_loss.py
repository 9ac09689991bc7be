"""The brightness term of the loss (train.loss.brightness, interir.losses.mean_l1)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from interir import train as T
from interir.config import validate_config
from interir.errors import InterIRError
from interir.losses import DeepSupervisionLoss, RestorationLoss, mean_l1, neg_psnr

def test_mean_l1_is_the_distance_of_the_channel_means():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 8, 8, generator=g)
    shift = torch.tensor([0.1, -0.2, 0.0]).view(1, 3, 1, 1)
    assert mean_l1(target + shift, target).item() == pytest.approx(0.1, abs=1e-6)  # (.1+.2+0)/3
    # a zero-mean change (a flipped image) leaves the means alone
    assert mean_l1(target.flip(-1), target).item() == pytest.approx(0.0, abs=1e-6)
    assert mean_l1(target, target).item() == 0.0


@pytest.mark.parametrize("name, term", [("brightness", mean_l1), ("psnr", neg_psnr)])
def test_optional_weight_adds_its_term_to_the_total_only(name, term):
    """The brightness and PSNR options (train.loss.brightness / psnr) change the total only."""
    g = torch.Generator().manual_seed(1)
    pred, target = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    plain = RestorationLoss()(pred, target)
    weighted = RestorationLoss(**{name: 2.0})(pred, target)
    assert weighted[0].item() == pytest.approx(plain[0].item() + 2.0 * term(pred, target).item(),
                                               rel=1e-6)
    assert torch.equal(weighted[1], plain[1]) and torch.equal(weighted[2], plain[2])
    assert torch.equal(RestorationLoss(**{name: 0.0})(pred, target)[0], plain[0])
    with pytest.raises(ValueError, match=f"{name} weight"):
        RestorationLoss(**{name: -1.0})


def test_brightness_term_pulls_a_dark_output_up_everywhere():
    """The term's gradient is the same at every pixel of a channel: it moves the whole image."""
    target = torch.full((1, 3, 8, 8), 0.5)
    pred = (target - 0.1).requires_grad_()
    mean_l1(pred, target).backward()
    grad = pred.grad
    assert (grad < 0).all()                        # raising any pixel lowers the loss
    assert torch.allclose(grad, grad.flatten(2)[..., :1].unsqueeze(-1).expand_as(grad))


def test_deep_supervision_applies_it_to_every_exit():
    g = torch.Generator().manual_seed(2)
    target = torch.rand(1, 3, 8, 8, generator=g)
    stages = [target + 0.1, target.clone()]           # only exit 0 is too bright
    loss = DeepSupervisionLoss(RestorationLoss(l1=0.0, fft=0.0, brightness=1.0), [0.5, 0.5])
    assert loss(stages, target)[0].item() == pytest.approx(0.05, abs=1e-6)


def _raw(loss: dict, run: Path = Path("run"), root: Path = Path("clean")) -> dict:
    """A 2-iteration training config of a tiny n = 2 model with the given loss."""
    return {"name": run.name, "seed": 1, "device": "cpu",
            "datasets": {"train": {"root": str(root), "patch_size": 16, "batch_size": 2}},
            "network": {"preset": "tiny", "n_blocks": 2, "channels": 8},
            "train": {"optimizer": {"lr": 1e-3}, "total_iter": 2, "loss": loss},
            "logger": {"print_every": 1, "tensorboard": False},
            "checkpoint": {"every": 2, "dir": str(run)}}


def test_config_keeps_it_absent_unless_given():
    assert "brightness" not in validate_config(_raw({}))["train"]["loss"]
    assert validate_config(_raw({"brightness": 0.5}))["train"]["loss"]["brightness"] == 0.5
    with pytest.raises(InterIRError, match="train.loss.brightness"):
        validate_config(_raw({"brightness": -1}))


def test_training_with_the_term_changes_the_run(tmp_path, small_train_data: Path):
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    weights = {}
    for name, loss in (("plain", {}), ("bright", {"brightness": 10.0})):
        raw = _raw(loss, tmp_path / name, small_train_data / "clean")
        T.train(validate_config(raw), log=lambda msg: None)
        weights[name] = load_file(str(tmp_path / name / "last" / "model.safetensors"))
    assert any(not torch.equal(weights["plain"][k], weights["bright"][k]) for k in weights["plain"])
