"""The descent hinges (train.loss.monotone / descent), InterIR.stages_and_residuals and the
per-pair monotone / descent fractions of validation."""
from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
import torch

from helpers import minimal_raw_config
import interir
from interir import train as T
from interir.config import validate_config
from interir.errors import InterIRError
from interir.eval import relative_residual
from interir.losses import (DeepSupervisionLoss, IterationHingeLoss, RestorationLoss,
                            psnr_drops)
from interir.trace import trace

MINIMAL = minimal_raw_config(n_blocks=2)


def _tiny(n: int = 2) -> interir.InterIR:
    torch.manual_seed(0)
    return interir.build_model(n_blocks=n, channels=8)


# --------------------------------------------------------------------------- the model
def test_stages_and_residuals_match_stages_and_the_trace():
    model = _tiny(3).eval()
    x = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images, res = model.stages_and_residuals(x)
        assert res.shape == (2, 4)
        assert all(torch.equal(a, b) for a, b in zip(images, model.stages(x)))
        # the same quantity `interir eval --iterations` reports from a trace
        for b in range(2):
            tr = trace(model, x[b:b + 1])
            by_trace = [relative_residual(it) for it in tr.iterations]
            assert res[b].tolist() == pytest.approx(by_trace, rel=1e-5)


# --------------------------------------------------------------------------- the loss
def test_psnr_drops_are_positive_where_an_iteration_makes_the_image_worse():
    target = torch.zeros(2, 3, 4, 4)
    good, better, worse = (torch.full_like(target, v) for v in (0.2, 0.1, 0.4))
    drops = psnr_drops([good, better, worse], target)
    assert drops.shape == (2, 2)
    assert torch.allclose(drops[:, 0], torch.full((2,), -20 * math.log10(2)), atol=1e-4)
    assert torch.allclose(drops[:, 1], torch.full((2,), 20 * math.log10(4)), atol=1e-4)


def _base(n_exits: int) -> DeepSupervisionLoss:
    return DeepSupervisionLoss(RestorationLoss(), [1.0 / n_exits] * n_exits)


def test_hinges_vanish_when_every_step_descends_and_act_only_on_the_others():
    target = torch.zeros(1, 3, 8, 8)
    descending = [torch.full_like(target, v) for v in (0.3, 0.2, 0.1)]
    residuals = torch.tensor([[0.9, 0.5, 0.2]])
    loss = IterationHingeLoss(_base(3), monotone=1.0, descent=1.0)
    assert loss((descending, residuals), target)[0] == pytest.approx(_base(3)(descending, target)[0])

    # step 1 → 2 makes the image worse and raises the residual: only that step is penalised
    stages = [t.clone().requires_grad_() for t in (descending[0], descending[1], descending[0])]
    res = torch.tensor([[0.9, 0.5, 0.7]], requires_grad=True)
    total, l1, fft = loss((stages, res), target)
    base = _base(3)(stages, target)
    drop = 20 * math.log10(3 / 2)
    assert (total - base[0]).item() == pytest.approx(drop + 0.01 + 0.2 + 1e-3, rel=1e-4)
    assert l1 == base[1] and fft == base[2]   # the logged l1 / fft stay the base loss's
    g_res = torch.autograd.grad(total, res, retain_graph=True)[0]
    assert g_res.tolist() == [[0.0, -1.0, 1.0]]
    g = torch.autograd.grad(total - base[0], stages)
    assert g[0].abs().sum() == 0 and g[1].abs().sum() > 0 and g[2].abs().sum() > 0


def test_hinge_weights_must_not_be_negative():
    with pytest.raises(ValueError, match="hinge weights"):
        IterationHingeLoss(_base(2), monotone=-1.0)


# --------------------------------------------------------------------------- config
def _cfg(loss: dict) -> dict:
    raw = copy.deepcopy(MINIMAL)
    raw["train"]["loss"] = loss
    return validate_config(raw)


def test_config_keeps_absent_hinges_absent_and_needs_deep_supervision():
    assert "monotone" not in _cfg({})["train"]["loss"]
    loss = _cfg({"deep_supervision": "linear", "monotone": 0.01, "descent": 0.3})["train"]["loss"]
    assert loss["monotone"] == 0.01 and loss["descent"] == 0.3
    with pytest.raises(InterIRError, match="train.loss.monotone: needs train.loss.deep_supervision"):
        _cfg({"monotone": 0.01})
    with pytest.raises(InterIRError, match="train.loss.descent"):
        _cfg({"deep_supervision": "last", "descent": -1})


# --------------------------------------------------------------------------- a training run
@pytest.fixture
def data_dir(small_train_data: Path) -> Path:
    return small_train_data


def _run_cfg(data: Path, run: Path, loss: dict) -> dict:
    raw = {"name": "hinge", "seed": 1, "device": "cpu",
           "datasets": {"train": {"root": str(data / "clean"), "patch_size": 16, "batch_size": 2}},
           "network": {"preset": "tiny", "n_blocks": 2, "channels": 8},
           "train": {"optimizer": {"lr": 1e-3}, "total_iter": 2, "loss": loss},
           "val": {"every": 2}, "logger": {"print_every": 1, "tensorboard": False},
           "checkpoint": {"every": 2, "dir": str(run)}}
    raw["datasets"]["val"] = {"root": str(data / "val")}
    return validate_config(raw)


def test_training_with_hinges_changes_the_run_and_logs_the_fractions(tmp_path, data_dir):
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    weights = {}
    for name, loss in (("plain", {"deep_supervision": "uniform"}),
                       ("zero", {"deep_supervision": "uniform", "monotone": 0.0, "descent": 0.0}),
                       ("hinged", {"deep_supervision": "uniform", "monotone": 1.0, "descent": 10.0})):
        T.train(_run_cfg(data_dir, tmp_path / name, loss), log=lambda msg: None)
        weights[name] = load_file(str(tmp_path / name / "last" / "model.safetensors"))
    assert all(torch.equal(weights["plain"][k], weights["zero"][k]) for k in weights["plain"])
    assert any(not torch.equal(weights["plain"][k], weights["hinged"][k]) for k in weights["plain"])

    with open(tmp_path / "hinged" / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    val = {r["combo"]: r for r in rows if r["kind"] == "val"}
    assert sorted(val) == ["average", "haze", "noise"]
    for r in val.values():   # fractions of the 2 pairs per combo
        assert float(r["monotone"]) in (0.0, 0.5, 1.0) or r["combo"] == "average"
        assert 0.0 <= float(r["descent"]) <= 1.0
    avg = (float(val["haze"]["monotone"]) + float(val["noise"]["monotone"])) / 2
    assert float(val["average"]["monotone"]) == pytest.approx(avg)
