"""Deep supervision (train.loss.deep_supervision) and the per-iteration validation rows."""
from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from helpers import minimal_raw_config
import interir
from interir import train as T
from interir.cli import main as cli_main
from interir.config import load_config, stage_weights, validate_config
from interir.errors import InterIRError
from interir.losses import DeepSupervisionLoss, RestorationLoss
from interir.metrics import psnr

REPO = Path(__file__).resolve().parents[1]
MINIMAL = minimal_raw_config(n_blocks=2)


def _cfg(spec, **network) -> dict:
    raw = copy.deepcopy(MINIMAL)
    raw["network"].update(network)
    raw["train"]["loss"] = {"deep_supervision": spec}
    return validate_config(raw)


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("spec,expected", [
    ("uniform", [1 / 3, 1 / 3, 1 / 3]),
    ("linear", [1 / 6, 2 / 6, 3 / 6]),
    ("last", [0.0, 0.0, 1.0]),
    ({"weights": [2, 0, 6]}, [0.25, 0.0, 0.75]),
    ([1, 1, 2], [0.25, 0.25, 0.5]),
])
def test_weights_are_resolved_and_normalised(spec, expected):
    got = _cfg(spec)["train"]["loss"]["deep_supervision"]
    assert got == pytest.approx(expected) and sum(got) == pytest.approx(1.0)


def test_length_follows_n_blocks_of_the_preset_or_override():
    assert len(_cfg("uniform", n_blocks=5)["train"]["loss"]["deep_supervision"]) == 6
    raw = copy.deepcopy(MINIMAL)
    raw["network"] = {"preset": "paper"}
    raw["train"]["loss"] = {"deep_supervision": "linear"}
    w = validate_config(raw)["train"]["loss"]["deep_supervision"]
    assert len(w) == 17 and w[-1] == pytest.approx(17 / sum(range(1, 18)))


@pytest.mark.parametrize("spec,needle", [
    ("steep", "train.loss.deep_supervision: expected one of uniform, linear, last"),
    ({"weights": [1, 2]}, "expected 3 weights (n_blocks + 1"),
    ([1, 2, 3, 4], "expected 3 weights"),
    ({"weights": [0, 0, 0]}, "at least one weight must be > 0"),
    ([1, -1, 1], "deep_supervision.weights[1]: must be >= 0"),
    ([1, "x", 1], "deep_supervision.weights[1]: expected a number"),
    ({"weight": [1, 1, 1]}, "the one key 'weights'"),
    (7, "expected a shorthand"),
])
def test_bad_deep_supervision_configs_name_the_key(spec, needle):
    with pytest.raises(InterIRError) as ei:
        _cfg(spec)
    assert needle in str(ei.value) and "\n" not in str(ei.value)


def test_default_and_paper_config_have_no_deep_supervision():
    raw = copy.deepcopy(MINIMAL)
    assert validate_config(raw)["train"]["loss"] == {"l1": 1.0, "fft": 0.1}
    raw["train"]["loss"] = {"deep_supervision": None}  # explicit null = off
    assert validate_config(raw)["train"]["loss"] == {"l1": 1.0, "fft": 0.1}
    assert "deep_supervision" not in load_config(REPO / "configs" / "paper.yaml")["train"]["loss"]


def test_cli_reports_a_bad_weight_count_in_one_line(tmp_path, capsys):
    raw = copy.deepcopy(MINIMAL)
    raw["train"]["loss"] = {"deep_supervision": {"weights": [1.0]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli_main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected 3 weights" in err and "c.yaml" in err


# --------------------------------------------------------------------------- the loss
def _hand_loss(pred: torch.Tensor, target: torch.Tensor) -> float:
    """L1 + 0.1 · mean |rfft2(pred) − rfft2(target)|, in float64 numpy (Eq. 2)."""
    p, t = pred.detach().double().numpy(), target.double().numpy()
    return np.abs(p - t).mean() + 0.1 * np.abs(np.fft.rfft2(p) - np.fft.rfft2(t)).mean()


def _tiny(seed: int = 0) -> interir.InterIR:
    torch.manual_seed(seed)
    model = interir.build_model("tiny", n_blocks=2, channels=8)
    with torch.no_grad():  # non-zero residual scales, so the early exits differ
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.normal_(0, 0.5)
    return model


def test_loss_is_the_weighted_sum_over_early_exits():
    model = _tiny()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 20, 16, generator=g), torch.rand(2, 3, 20, 16, generator=g)
    stages = model.stages(x)
    assert len(stages) == 3 and not torch.allclose(stages[0], stages[-1])
    w = stage_weights("linear", 2)
    total, l1, fft = DeepSupervisionLoss(RestorationLoss(1.0, 0.1), w)(stages, y)
    hand = sum(wk * _hand_loss(s, y) for wk, s in zip(w, stages))
    assert total.item() == pytest.approx(hand, rel=1e-5)
    assert total.item() == pytest.approx(l1.item() + 0.1 * fft.item(), rel=1e-6)
    # zero-weighted exits do not count
    total0 = DeepSupervisionLoss(RestorationLoss(), [0.0, 1.0, 0.0])(stages, y)[0]
    assert total0.item() == pytest.approx(_hand_loss(stages[1], y), rel=1e-5)
    with pytest.raises(ValueError, match="early exits"):
        DeepSupervisionLoss(RestorationLoss(), [0.5, 0.5])(stages, y)


def test_last_equals_the_paper_loss_and_early_weights_change_the_gradient():
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(1, 3, 16, 16, generator=g), torch.rand(1, 3, 16, 16, generator=g)

    def grads(loss_of):
        model = _tiny()
        loss_of(model).backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = grads(lambda m: RestorationLoss()(m(x), y)[0])
    last = grads(lambda m: DeepSupervisionLoss(RestorationLoss(), stage_weights("last", 2))(
        m.stages(x), y)[0])
    uniform = grads(lambda m: DeepSupervisionLoss(RestorationLoss(), stage_weights("uniform", 2))(
        m.stages(x), y)[0])
    assert len(plain) == len(last) and all(torch.equal(a, b) for a, b in zip(plain, last))
    assert any(not torch.allclose(a, b) for a, b in zip(plain, uniform))


# --------------------------------------------------------------------------- validation
def test_validate_reports_the_psnr_of_every_early_exit():
    model = _tiny().eval()
    g = torch.Generator().manual_seed(3)
    items = [(torch.rand(3, 12, 16, generator=g), torch.rand(3, 12, 16, generator=g))
             for _ in range(2)]
    res = T.validate(model, {"haze": items, "rain": items[:1]}, torch.device("cpu"))
    with torch.no_grad():
        by_hand = [np.mean([psnr(model.stages(i[None])[k].clamp(0, 1)[0], t) for i, t in items])
                   for k in range(3)]
        final = np.mean([psnr(model(i[None]).clamp(0, 1)[0], t) for i, t in items])
    assert res["haze"]["stage_psnr"] == pytest.approx(by_hand, abs=1e-9)
    assert res["haze"]["psnr"] == pytest.approx(final, abs=1e-9)
    assert res["haze"]["stage_psnr"][-1] == res["haze"]["psnr"]
    avg = [(a + b) / 2 for a, b in zip(res["haze"]["stage_psnr"], res["rain"]["stage_psnr"])]
    assert res["average"]["stage_psnr"] == pytest.approx(avg, abs=1e-12)


# --------------------------------------------------------------------------- a training run
@pytest.fixture
def data_dir(small_train_data: Path) -> Path:
    return small_train_data


def _run_cfg(data: Path, run: Path, spec=None) -> dict:
    raw = {"name": "ds", "seed": 1, "device": "cpu",
           "datasets": {"train": {"root": str(data / "clean"), "patch_size": 16, "batch_size": 2},
                        "val": {"root": str(data / "val")}},
           "network": {"preset": "tiny", "n_blocks": 2, "channels": 8},
           "train": {"optimizer": {"lr": 1e-3}, "total_iter": 2},
           "val": {"every": 2}, "logger": {"print_every": 1, "tensorboard": False},
           "checkpoint": {"every": 2, "dir": str(run)}}
    if spec is not None:
        raw["train"]["loss"] = {"deep_supervision": spec}
    return validate_config(raw)


def _rows(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_training_with_deep_supervision(tmp_path, data_dir):
    torch.set_num_threads(1)
    weights = {}
    for spec in (None, "last", "uniform"):
        run = tmp_path / str(spec)
        T.train(_run_cfg(data_dir, run, spec), log=lambda msg: None)
        weights[spec] = load_file(str(run / "last" / "model.safetensors"))
    # "last" is the paper's loss computed through the early exits: the same run exactly
    assert all(torch.equal(weights[None][k], weights["last"][k]) for k in weights[None])
    assert any(not torch.equal(weights[None][k], weights["uniform"][k]) for k in weights[None])
    rows = _rows(tmp_path / "uniform")
    stage = [r for r in rows if r["kind"] == "val_stage"]
    # per combo and average, one row per early exit k = 0..n
    assert sorted((r["combo"], r["stage"]) for r in stage) == sorted(
        (c, str(k)) for c in ("haze", "noise", "average") for k in range(3))
    val = {r["combo"]: r["psnr"] for r in rows if r["kind"] == "val"}
    assert all(r["psnr"] == val[r["combo"]] for r in stage if r["stage"] == "2")
    assert all(r["iter"] == "2" and r["loss"] == "" for r in stage)
    # old readers (write_model_cards' val_curve) still see the same val rows
    assert [r["combo"] for r in rows if r["kind"] == "val"] == ["haze", "noise", "average"]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["iter"] for r in train_rows] == ["1", "2"]
    for r in train_rows:  # weighted l1 and fft still add up to the logged loss
        assert float(r["loss"]) == pytest.approx(float(r["l1"]) + 0.1 * float(r["fft"]), rel=1e-5)


def test_resume_upgrades_a_log_without_the_stage_column(tmp_path, data_dir):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    cfg = _run_cfg(data_dir, run)
    T.train(cfg, stop_at=1, log=lambda msg: None)
    rows = _rows(run)
    old_fields = [f for f in T.CSV_FIELDS if f != "stage"]  # a log written before val_stage rows
    text = [",".join(old_fields)] + [",".join(r[f] for f in old_fields) for r in rows
                                     if r["kind"] != "val_stage"]
    (run / "log.csv").write_text("\n".join(text) + "\n")
    T.train(cfg, resume=True, log=lambda msg: None)
    new = _rows(run)
    assert list(new[0]) == T.CSV_FIELDS
    assert [r["iter"] for r in new if r["kind"] == "train"] == ["1", "2"]
    assert [r["stage"] for r in new if r["kind"] == "val_stage" and r["iter"] == "2"
            and r["combo"] == "average"] == ["0", "1", "2"]
    import importlib.util
    spec = importlib.util.spec_from_file_location("cards", REPO / "scripts" / "write_model_cards.py")
    cards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cards)
    curve = cards.val_curve(run)  # the model-card script still reads the log
    assert sorted(curve) == [1, 2] and all(np.isfinite(v) for v in curve.values())
