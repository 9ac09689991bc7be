"""scripts/device_train.sh, the prepared GPU-machine call, run here on the CPU (DEVICE=cpu)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from safetensors.torch import load_file

from interir.imageio import save_image
from interir.train import load_training_state

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "device_train.sh"


def _run(args: list[str], out: Path, runs: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "RUNS_DIR": str(runs), "DEVICE": "cpu",
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _config(tmp: Path, name: str) -> Path:
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
           "train": {"optimizer": {"type": "Adam", "lr": 1e-3}, "total_iter": 3,
                     "loss": {"l1": 1.0, "fft": 0.1}},
           "logger": {"print_every": 1, "tensorboard": False, "csv": True},
           "checkpoint": {"every": 3, "keep_every": 1, "dir": "runs/unused"}}
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
        # unpacked, the run folder holds a training state `--resume` reads, and the weights
        back = tmp_path / "back"
        back.mkdir(exist_ok=True)
        with open(out / name / f"{name}.tar.part-00", "rb") as fh:
            subprocess.run(["tar", "xf", "-", "-C", str(back)], stdin=fh, check=True)
        meta, tensors = load_training_state(back / name)
        assert meta["iteration"] == 3 and any(k.startswith("model.") for k in tensors)
        assert load_file(str(back / name / "last" / "model.safetensors"))
        assert (back / name / "log.csv").is_file()
        assert not list((back / name).glob("weights-*"))   # keep_every dropped on the device
        # the device was replaced in the copy it trained, not in the user's config
        assert yaml.safe_load((runs / f"{name}.yaml").read_text())["device"] == "cpu"
        user = yaml.safe_load((tmp_path / f"{name}.yaml").read_text())
        assert user["device"] == "cuda" and user["checkpoint"]["keep_every"] == 1
    assert "== dev-a" in res.stdout and "== dev-b" in res.stdout


def test_device_train_refuses_bad_arguments_before_training(tmp_path):
    for args in (["60"], ["8m", "a.yaml"], ["60", "a.yaml", "b.yaml", "c.yaml"]):
        res = _run(args, tmp_path / "out", tmp_path / "runs")
        assert res.returncode == 2 and "usage:" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnetwork: {n_blocks: -1}\n")
    res = _run(["60", str(bad)], tmp_path / "out", tmp_path / "runs")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("device_train: error:") and "datasets" in res.stderr
    assert not (tmp_path / "out" / "x").exists()
