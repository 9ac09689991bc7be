"""scripts/milestone.py: a run's kept weights become a milestone, and the config it writes
continues the run's schedule from there."""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest

from interir.config import load_config
from interir.train import warmup_cosine

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("milestone", ROOT / "scripts" / "milestone.py")
milestone = importlib.util.module_from_spec(spec)
spec.loader.exec_module(milestone)

SOURCE = "interir-n6u-lr1e-3b"   # a committed config with a warm-up, a moving average and init_ema

LOG = ("kind,iter,loss,lr,combo,psnr\n"
       "train,250,0.5,1e-3,,\n"
       "val,500,,,average,20.0\n"
       "val_ema,500,,,average,19.0\n"
       "train,750,0.4,1e-3,,\n"
       "val,1000,,,average,21.0\n")


def fake_run(root: Path, name: str, iters: list[int]) -> Path:
    """A run folder as `interir train` keeps it: weights-/ema- folders and log.csv."""
    run = root / "runs" / name
    for it in iters:
        for kind in ("weights", "ema"):
            d = run / f"{kind}-{it:08d}"
            d.mkdir(parents=True)
            (d / "config.json").write_text(json.dumps({"train": {"name": name, "iter": it}}))
            (d / "model.safetensors").write_bytes(f"{kind} {it}".encode())
    (run / "log.csv").write_text(LOG)
    return run


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / f"{SOURCE}.yaml", tmp_path / "configs")
    return tmp_path


def test_milestone_copies_the_kept_iteration_and_trims_the_log(repo):
    run = fake_run(repo, SOURCE, [500, 1000])
    assert milestone.main(["--run-dir", str(run), "--iter", "500", "--root", str(repo)]) == 0
    dest = repo / "milestones" / f"{SOURCE}-500"
    assert (dest / "model.safetensors").read_bytes() == b"weights 500"
    assert (dest / "ema" / "model.safetensors").read_bytes() == b"ema 500"
    log = (dest / "training_log.csv").read_text().splitlines()
    assert log[0] == LOG.splitlines()[0]
    assert [int(r.split(",")[1]) for r in log[1:]] == [250, 500, 500]
    assert not (repo / "configs" / "x.yaml").exists()


def test_the_continuation_takes_the_rest_of_the_schedule(repo, monkeypatch):
    run = fake_run(repo, SOURCE, [1000])
    assert milestone.main(["--run-dir", str(run), "--iter", "1000", "--root", str(repo),
                           "--next", "cont", "--seed", "99"]) == 0
    src = load_config(repo / "configs" / f"{SOURCE}.yaml")
    monkeypatch.chdir(repo)
    cfg = load_config(repo / "configs" / "cont.yaml")
    t = src["train"]
    lr0, warm = t["optimizer"]["lr"], t["scheduler"]["warmup_iter"]
    expect = lr0 * warmup_cosine(lr0, t["scheduler"]["eta_min"], warm, t["total_iter"])(1000)
    assert math.isclose(cfg["train"]["optimizer"]["lr"], expect, rel_tol=5e-3)
    assert cfg["train"]["total_iter"] == t["total_iter"] - 1000
    assert cfg["train"]["scheduler"]["warmup_iter"] == 250
    assert cfg["train"]["init_weights"] == f"milestones/{SOURCE}-1000"
    assert cfg["train"]["init_ema"] == f"milestones/{SOURCE}-1000/ema"
    assert cfg["seed"] == 99 and cfg["name"] == "cont"
    assert cfg["checkpoint"]["dir"].endswith("runs/cont")
    for key in ("datasets", "network"):
        assert cfg[key] == src[key]
    assert cfg["train"]["loss"] == t["loss"]
    header = (repo / "configs" / "cont.yaml").read_text().split("name:")[0]
    assert f"configs/{SOURCE}.yaml" in header and "--config configs/cont.yaml" in header


def test_a_plain_cosine_without_warm_up_is_read_as_torch_steps_it():
    cfg = {"train": {"optimizer": {"lr": 1e-3}, "total_iter": 100,
                     "scheduler": {"type": "CosineAnnealingLR", "eta_min": 0.0}}}
    assert math.isclose(milestone.scheduled_lr(cfg, 50), 5e-4)
    assert milestone.scheduled_lr(cfg, 100) == 0.0


@pytest.mark.parametrize("args, message", [
    (["--iter", "750"], "no weights kept at iteration 750"),
    (["--iter", "500", "--next", "cont"], "--next needs --seed"),
    (["--iter", "500", "--next", SOURCE, "--seed", "1"], "exists already"),
])
def test_bad_requests_are_refused_with_a_message_and_nothing_written(repo, capsys, args, message):
    run = fake_run(repo, SOURCE, [500])
    assert milestone.main(["--run-dir", str(run), "--root", str(repo), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (repo / "milestones").exists()


def test_an_existing_milestone_is_not_overwritten(repo, capsys):
    run = fake_run(repo, SOURCE, [500])
    dest = repo / "milestones" / f"{SOURCE}-500"
    dest.mkdir(parents=True)
    (dest / "model.safetensors").write_bytes(b"committed")
    assert milestone.main(["--run-dir", str(run), "--iter", "500", "--root", str(repo)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert (dest / "model.safetensors").read_bytes() == b"committed"


def test_an_ended_schedule_is_not_continued(repo, capsys):
    total = load_config(repo / "configs" / f"{SOURCE}.yaml")["train"]["total_iter"]
    run = fake_run(repo, SOURCE, [total])
    assert milestone.main(["--run-dir", str(run), "--iter", str(total), "--root", str(repo),
                           "--next", "cont", "--seed", "1"]) == 2
    assert "schedule ended" in capsys.readouterr().err
    assert not (repo / "configs" / "cont.yaml").exists()


def test_a_leg_at_a_constant_lr_continues_as_another_leg(tmp_path, monkeypatch):
    leg = "interir-n6-s22"   # a cosine whose eta_min is its lr: a constant after a warm-up
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / f"{leg}.yaml", tmp_path / "configs")
    src = load_config(tmp_path / "configs" / f"{leg}.yaml")["train"]
    assert src["scheduler"]["eta_min"] == src["optimizer"]["lr"]
    run = fake_run(tmp_path, leg, [src["total_iter"]])
    assert milestone.main(["--run-dir", str(run), "--iter", str(src["total_iter"]),
                           "--root", str(tmp_path), "--next", "leg2", "--seed", "7"]) == 0
    monkeypatch.chdir(tmp_path)
    cfg = load_config(tmp_path / "configs" / "leg2.yaml")
    assert cfg["train"]["total_iter"] == src["total_iter"]
    assert math.isclose(cfg["train"]["optimizer"]["lr"], src["optimizer"]["lr"], rel_tol=5e-3)
    assert cfg["train"]["scheduler"]["eta_min"] == cfg["train"]["optimizer"]["lr"]
    assert cfg["train"]["init_weights"] == f"milestones/{leg}-{src['total_iter']}"
    header = (tmp_path / "configs" / "leg2.yaml").read_text().split("name:")[0]
    assert "another leg" in header and "cosine" not in header
