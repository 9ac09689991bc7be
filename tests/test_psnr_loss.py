"""The PSNR term of the loss (train.loss.psnr, interir.losses.neg_psnr)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from interir.config import validate_config
from interir.errors import InterIRError
from interir.losses import RestorationLoss, neg_psnr
from interir.metrics import psnr


def test_neg_psnr_is_minus_the_mean_per_sample_psnr():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 3, 16, 16, generator=g)
    pred = (target + 0.05 * torch.randn(3, 3, 16, 16, generator=g)).clamp(0, 1)
    expected = np.mean([psnr(pred[i].permute(1, 2, 0).numpy(), target[i].permute(1, 2, 0).numpy())
                        for i in range(3)])
    # the metric quantises to 8 bits first; the loss does not
    assert -neg_psnr(pred, target).item() == pytest.approx(expected, abs=0.02)


def test_psnr_term_pulls_towards_the_mean_where_l1_takes_the_median():
    """One constant prediction against three targets 0, 0, 0.9: L1's optimum is the median (0),
    the PSNR term's is the mean (0.3), as for an ambiguous veil."""
    target = torch.tensor([0.0, 0.0, 0.9]).view(1, 1, 1, 3).expand(1, 3, 4, 3).contiguous()
    optima = {}
    for name, loss in (("l1", RestorationLoss(l1=1.0, fft=0.0)),
                       ("psnr", RestorationLoss(l1=0.0, fft=0.0, psnr=1.0))):
        p = torch.full((1,), 0.5, requires_grad=True)
        opt = torch.optim.Adam([p], lr=0.01)
        for _ in range(400):
            opt.zero_grad()
            loss(p.view(1, 1, 1, 1).expand_as(target), target)[0].backward()
            opt.step()
        optima[name] = p.item()
    assert optima["l1"] == pytest.approx(0.0, abs=0.02)
    assert optima["psnr"] == pytest.approx(0.3, abs=0.02)


def test_config_keeps_it_absent_unless_given():
    raw = {"name": "r", "seed": 1, "device": "cpu",
           "datasets": {"train": {"root": "clean", "patch_size": 16, "batch_size": 2}},
           "network": {"preset": "tiny", "n_blocks": 2, "channels": 8},
           "train": {"optimizer": {"lr": 1e-3}, "total_iter": 2, "loss": {}},
           "checkpoint": {"every": 2, "dir": "r"}}
    assert "psnr" not in validate_config(raw)["train"]["loss"]
    raw["train"]["loss"] = {"psnr": 0.0065}
    assert validate_config(raw)["train"]["loss"]["psnr"] == 0.0065
    raw["train"]["loss"] = {"psnr": -1}
    with pytest.raises(InterIRError, match="train.loss.psnr"):
        validate_config(raw)
