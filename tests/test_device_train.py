"""scripts/device_train.sh, the prepared GPU-machine call, run here on the CPU (DEVICE=cpu)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import importlib.util

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from interir.imageio import save_image
from interir.train import load_training_state

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "device_train.sh"
_spec = importlib.util.spec_from_file_location("device_fit", REPO / "scripts" / "device_fit.py")
device_fit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(device_fit)


def _run(args: list[str], out: Path, runs: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "RUNS_DIR": str(runs), "DEVICE": "cpu",
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **extra}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _unpack(out: Path, name: str, dest: Path) -> Path:
    """What the tool brings back, unpacked as the header of scripts/device_train.sh says."""
    dest.mkdir(exist_ok=True)
    data = b"".join(p.read_bytes() for p in sorted((out / name).glob(f"{name}.tar.part-*")))
    subprocess.run(["tar", "xf", "-", "-C", str(dest)], input=data, check=True)
    return dest / name


def _config(tmp: Path, name: str, total: int = 3, ema_decay: float | None = None) -> Path:
    clean = tmp / "clean"
    clean.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        save_image(rng.random((40, 40, 3)).astype(np.float32), clean / f"c{i}.png")
    raw = {"name": name, "seed": 1, "device": "cuda",
           "datasets": {"train": {"type": "synthetic", "root": str(clean), "patch_size": 32,
                                  "batch_size": 2, "combos": "all"},
                        "val": {"root": None}},
           "network": {"preset": "tiny", "n_blocks": 1, "channels": 8},
           "train": {"optimizer": {"type": "Adam", "lr": 1e-3}, "total_iter": total,
                     "loss": {"l1": 1.0, "fft": 0.1}},
           "logger": {"print_every": 1, "tensorboard": False, "csv": True},
           "checkpoint": {"every": 3, "keep_every": 1, "dir": "runs/unused"}}
    if ema_decay is not None:
        raw["train"]["ema_decay"] = ema_decay
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_device_train_runs_each_config_and_brings_back_weights_and_logs(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    cfgs = [_config(tmp_path, "dev-a"), _config(tmp_path, "dev-b")]
    res = _run(["120", *map(str, cfgs)], out, runs)
    assert res.returncode == 0, res.stderr[-2000:]
    for name in ("dev-a", "dev-b"):
        got = sorted(p.name for p in (out / name).iterdir())
        assert got == [f"{name}.tar.part-00", "train.log"]
        log = (out / name / "train.log").read_text()
        assert f"[{name}] done: 3 iterations" in log and "%|" not in log
        run = _unpack(out, name, tmp_path / "back")
        # finished: the weights, the log and the config it trained; no state (nothing to resume)
        assert load_file(str(run / "last" / "model.safetensors"))
        assert (run / "log.csv").is_file() and json.loads((run / "state.json").read_text())["iteration"] == 3
        assert not list(run.glob("state-*.safetensors"))
        assert not list(run.glob("weights-*"))   # keep_every dropped with two runs
        # the device was replaced in the copy it trained, not in the user's config
        assert yaml.safe_load((run / "device-config.yaml").read_text())["device"] == "cpu"
        user = yaml.safe_load((tmp_path / f"{name}.yaml").read_text())
        assert user["device"] == "cuda" and user["checkpoint"]["keep_every"] == 1
    assert "== dev-a" in res.stdout and "== dev-b" in res.stdout


def test_device_train_brings_back_the_moving_average_beside_the_weights(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    res = _run(["120", str(_config(tmp_path, "dev-g", ema_decay=0.9))], out, runs)
    assert res.returncode == 0, res.stderr[-2000:]
    run = _unpack(out, "dev-g", tmp_path / "back")
    # one run keeps its milestones: weights and averages at 1 and 2; those at 3 are last/, ema/
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == [
        "ema", "ema-00000001", "ema-00000002", "last", "weights-00000001", "weights-00000002"]
    ema, last = (load_file(str(run / d / "model.safetensors")) for d in ("ema", "last"))
    assert ema.keys() == last.keys() and not all((ema[k] == last[k]).all() for k in ema)


def test_device_train_continues_a_run_carried_in(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    assert _run(["120", str(_config(tmp_path, "dev-d"))], out, runs).returncode == 0
    longer = _config(tmp_path, "dev-d", total=5)     # the same run, a longer schedule
    res = _run(["120", str(longer)], tmp_path / "out2", runs)
    assert res.returncode == 0, res.stderr[-2000:]
    log = (tmp_path / "out2" / "dev-d" / "train.log").read_text()
    assert "resuming dev-d from iteration 3" in log and "[dev-d] done: 2 iterations" in log
    run = _unpack(tmp_path / "out2", "dev-d", tmp_path / "back")
    assert json.loads((run / "state.json").read_text())["iteration"] == 5
    # the kept weights of this call, newest first; the last iteration is last/ already
    assert sorted(p.name for p in run.glob("weights-*")) == [
        f"weights-{i:08d}" for i in (1, 2, 3, 4)]


def test_device_train_fit_sets_one_schedule_and_a_cut_off_run_comes_back_resumable(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    cfgs = [_config(tmp_path, "dev-e", total=10**6), _config(tmp_path, "dev-f", total=10**6)]
    # a reserve of -10,000 s makes the fitted schedule far longer than the budget: the runs are
    # cut off by SIGTERM, as on the GPU when the probe was too hopeful
    res = _run(["--fit", "50", *map(str, cfgs)], out, runs,
               PROBE_SECONDS="30", FIT_STEP="5", FIT_RESERVE="-10000")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "probe dev-e:" in res.stdout and "fit: total_iter" in res.stdout
    assert "Killed" not in res.stderr
    totals = set()
    for name in ("dev-e", "dev-f"):
        assert "stopped by SIGTERM at iteration" in (out / name / "train.log").read_text()
        run = _unpack(out, name, tmp_path / "back")
        trained = yaml.safe_load((run / "device-config.yaml").read_text())
        total = trained["train"]["total_iter"]
        totals.add(total)
        assert total % 5 == 0 and 5 <= total < 10**6
        assert trained["val"]["every"] == trained["checkpoint"]["keep_every"] == total // 4 // 5 * 5
        meta, tensors = load_training_state(run)     # the state to continue it here
        assert 0 < meta["iteration"] < total and any(k.startswith("model.") for k in tensors)
    assert len(totals) == 1                           # twins stay at one iteration


def _probe_log(path: Path, rows: list[tuple[int, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["kind,iter,loss,time"] + [f"train,{i},0.5,{t}" for i, t in rows]
    path.write_text("\n".join(lines) + "\n")


def test_device_fit_takes_the_slowest_probe_after_start_up(tmp_path):
    # 10 it/s and 5 it/s after two start-up rows that would say otherwise
    _probe_log(tmp_path / "probe" / "a" / "log.csv", [(5, 30.0), (10, 30.5), (15, 31.0), (65, 36.0)])
    _probe_log(tmp_path / "probe" / "b" / "log.csv", [(5, 40.0), (10, 41.0), (15, 42.0), (40, 47.0)])
    assert device_fit.probe_rate(tmp_path / "probe" / "a" / "log.csv") == pytest.approx(10.0)
    assert device_fit.probe_rate(tmp_path / "probe" / "b" / "log.csv") == pytest.approx(5.0)
    for name in "ab":
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(
            {"train": {"total_iter": 8000}, "val": {"every": 500}, "checkpoint": {"every": 250}}))
    assert device_fit.main([str(tmp_path), "460", "250", "60", "a", "b"]) == 0
    # 5 it/s x 400 s x 0.92 = 1,840 -> 1,750; quarters of 250
    for name in "ab":
        raw = yaml.safe_load((tmp_path / f"{name}.yaml").read_text())
        assert raw["train"]["total_iter"] == 1750
        assert raw["val"]["every"] == raw["checkpoint"]["every"] == raw["checkpoint"]["keep_every"] == 250


def test_device_fit_refuses_a_probe_that_says_nothing(tmp_path, capsys):
    _probe_log(tmp_path / "probe" / "a" / "log.csv", [(5, 30.0), (10, 31.0), (15, 32.0)])
    (tmp_path / "a.yaml").write_text("train: {total_iter: 8000}\n")
    assert device_fit.main([str(tmp_path), "460", "250", "60", "a"]) == 1
    assert "too few iterations" in capsys.readouterr().err
    assert device_fit.main([str(tmp_path), "460", "250", "60", "missing"]) == 1
    with pytest.raises(device_fit.FitError, match="fewer than 250"):
        device_fit.fit_schedule([0.5], 100.0, 250, 60.0)
    assert yaml.safe_load((tmp_path / "a.yaml").read_text())["train"]["total_iter"] == 8000
    for args in ([], [str(tmp_path), "soon", "250", "60", "a"], [str(tmp_path), "460", "0", "60", "a"]):
        assert device_fit.main(args) == 2
        assert "usage:" in capsys.readouterr().err


def test_device_train_refuses_bad_arguments_before_training(tmp_path):
    for args in (["60"], ["8m", "a.yaml"], ["60", "a.yaml", "b.yaml", "c.yaml"], ["--fit", "60"]):
        res = _run(args, tmp_path / "out", tmp_path / "runs")
        assert res.returncode == 2 and "usage:" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnetwork: {n_blocks: -1}\n")
    res = _run(["60", str(bad)], tmp_path / "out", tmp_path / "runs")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("device_train: error:") and "datasets" in res.stderr
    assert not (tmp_path / "out" / "x").exists()
