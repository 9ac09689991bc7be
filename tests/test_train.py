"""Training loop: exact resume after SIGKILL or a stop signal, NaN stop, atomic state, DDP replicas, loss."""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import interir
from helpers import write_val_pairs
from interir.cli import main as cli_main
from interir.config import validate_config
from interir.errors import InterIRError
from interir.imageio import save_image
from interir.losses import RestorationLoss, fft_l1
from interir import train as T

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Tiny clean images + a two-combo validation set in make-testset layout."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:56] / 48.0
    (root / "clean").mkdir()
    for i in range(4):
        base = np.stack([np.sin(xx * (i + 2)), np.cos(yy * (i + 1)), xx * yy], -1) * 0.4 + 0.5
        img = np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1).astype(np.float32)
        save_image(img, root / "clean" / f"img{i}.png")
    save_image(np.full((40, 40, 3), 0.5, np.float32), root / "clean" / "heldout.png")
    (root / "exclude.txt").write_text("# held out\nheldout.png\n")
    write_val_pairs(root, (24, 28), rng)
    return root


def _raw_cfg(data: Path, run: Path, **train_overrides) -> dict:
    train = {"optimizer": {"type": "Adam", "lr": 1e-3, "betas": [0.9, 0.999]},
             "scheduler": {"type": "CosineAnnealingLR", "eta_min": 1e-7},
             "total_iter": 8, "loss": {"l1": 1.0, "fft": 0.1}}
    train.update(train_overrides)
    return {
        "name": "test", "seed": 3, "device": "cpu",
        "datasets": {"train": {"type": "synthetic", "root": str(data / "clean"), "patch_size": 32,
                               "batch_size": 2, "combos": "all",
                               "exclude_list": str(data / "exclude.txt")},
                     "val": {"root": str(data / "val"), "max_images": 1}},
        "network": {"preset": "tiny", "n_blocks": 1, "channels": 8},
        "train": train,
        "val": {"every": 4},
        "logger": {"print_every": 1, "tensorboard": False, "csv": True},
        "checkpoint": {"every": 4, "dir": str(run)},
    }


def _write_cfg(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


# A runner process: one thread (deterministic CPU maths), optionally blocking forever at the
# forward pass of iteration BLOCK_AT so the test can SIGKILL it at a known point, or sending
# itself the signal SIGNAL during iteration SIGNAL_AT.
RUNNER = textwrap.dedent("""
    import os, sys, time, torch
    torch.set_num_threads(1)
    block_at = int(os.environ.get("BLOCK_AT", "0"))
    signal_at = int(os.environ.get("SIGNAL_AT", "0"))
    if block_at or signal_at:
        import signal
        import interir.losses as L
        orig, calls = L.RestorationLoss.forward, [0]
        def forward(self, pred, target):
            calls[0] += 1
            if calls[0] == block_at:
                time.sleep(3600)
            if calls[0] == signal_at:  # as if a user pressed Ctrl-C during this iteration
                os.kill(os.getpid(), int(os.environ["SIGNAL"]))
            return orig(self, pred, target)
        L.RestorationLoss.forward = forward
    from interir.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _run(tmp_path: Path, args: list[str], block_at: int = 0, wait: bool = True,
         signal_at: int = 0, sig: int = 0, rc: int = 0):
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = {**os.environ, "BLOCK_AT": str(block_at), "SIGNAL_AT": str(signal_at),
           "SIGNAL": str(int(sig)), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(runner), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == rc, err[-2000:]
    return out, err


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _losses(rows: list[dict]) -> list[tuple]:
    keys = ("kind", "iter", "loss", "l1", "fft", "lr", "combo", "psnr", "ssim")
    return [tuple(r[k] for k in keys) for r in rows]


# --------------------------------------------------------------------------- resume
@pytest.fixture(scope="module")
def ref_run(tmp_path_factory, data_dir) -> Path:
    """The uninterrupted 8-iteration run the interrupted ones are compared with."""
    tmp = tmp_path_factory.mktemp("ref")
    _run(tmp, ["train", "--config", str(_write_cfg(tmp / "ref.yaml", _raw_cfg(data_dir, tmp / "run")))])
    return tmp / "run"


def _resume_and_compare(tmp_path: Path, cfg: Path, run: Path, ref_run: Path) -> None:
    """--resume the stopped run to the end: its training losses and last weights must equal the
    uninterrupted run's (the schedule spans total_iter throughout)."""
    _run(tmp_path, ["train", "--config", str(cfg), "--resume"])
    train_losses = lambda rs: [x for x in _losses(rs) if x[0] == "train"]  # noqa: E731
    assert train_losses(_csv_rows(run / "log.csv")) == train_losses(_csv_rows(ref_run / "log.csv"))
    a = load_file(str(ref_run / "last" / "model.safetensors"))
    b = load_file(str(run / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_sigkill_reproduces_uninterrupted_run(tmp_path, data_dir, ref_run):
    ref_rows = _csv_rows(ref_run / "log.csv")
    assert [int(r["iter"]) for r in ref_rows if r["kind"] == "train"] == list(range(1, 9))
    assert sum(r["kind"] == "val" for r in ref_rows) == 6  # 2 combos + average, at 4 and 8

    run = tmp_path / "kill"
    cfg = _write_cfg(tmp_path / "kill.yaml", _raw_cfg(data_dir, run))
    proc = _run(tmp_path, ["train", "--config", str(cfg)], block_at=6, wait=False)
    try:
        deadline = time.time() + 90
        while True:  # wait until iteration 5 (after the checkpoint at 4) is logged
            log = run / "log.csv"
            if log.is_file() and any(r["iter"] == "5" for r in _csv_rows(log)):
                break
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.time() < deadline, "run did not reach iteration 5"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((run / "state.json").read_text())["iteration"] == 4
    assert max(int(r["iter"]) for r in _csv_rows(run / "log.csv")) == 5  # 5 is logged, not saved

    _, err = _run(tmp_path, ["train", "--config", str(cfg), "--resume"])
    assert "resuming test from iteration 4" in err
    rows = _csv_rows(run / "log.csv")
    assert _losses(rows) == _losses(ref_rows)  # exact equality, every iteration
    for sub in ("last", "best"):
        a = load_file(str(ref_run / sub / "model.safetensors"))
        b = load_file(str(run / sub / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the trained weights load through the public API
    model = interir.load_pretrained(run / "last")
    assert model(torch.rand(1, 3, 20, 24)).shape == (1, 3, 20, 24)


def test_stop_at_then_resume_reproduces_uninterrupted_run(tmp_path, data_dir, ref_run):
    run = tmp_path / "stop"
    cfg = _write_cfg(tmp_path / "stop.yaml", _raw_cfg(data_dir, run))
    _, err = _run(tmp_path, ["train", "--config", str(cfg), "--stop-at", "5"])
    assert "stopped at 5 of 8" in err
    assert json.loads((run / "state.json").read_text())["iteration"] == 5
    rows = _csv_rows(run / "log.csv")
    assert max(int(r["iter"]) for r in rows) == 5 and any(r["kind"] == "val" and r["iter"] == "5" for r in rows)
    _resume_and_compare(tmp_path, cfg, run, ref_run)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_saves_state_and_resume_reproduces_uninterrupted_run(tmp_path, data_dir, ref_run, sig):
    run = tmp_path / "sig"
    cfg = _write_cfg(tmp_path / "sig.yaml", _raw_cfg(data_dir, run))
    # the signal arrives during iteration 6: between the periodic checkpoints at 4 and 8
    _, err = _run(tmp_path, ["train", "--config", str(cfg)], signal_at=6, sig=sig, rc=128 + sig)
    assert f"stopped by {sig.name} at iteration 6 of 8" in err and "--resume" in err
    assert "Traceback" not in err and "done:" not in err
    assert json.loads((run / "state.json").read_text())["iteration"] == 6
    assert load_file(str(run / "last" / "model.safetensors")).keys()
    assert max(int(r["iter"]) for r in _csv_rows(run / "log.csv")) == 6
    _resume_and_compare(tmp_path, cfg, run, ref_run)


def test_second_stop_signal_interrupts_at_once_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT)
    with T._StopOnSignal() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is before
    assert signal.getsignal(signal.SIGTERM) is not stop._handle
    assert T._StopOnSignal(active=False).__enter__()._previous == {}


def test_resume_and_restart_guards(tmp_path, data_dir, capsys):
    cfg = _write_cfg(tmp_path / "c.yaml", _raw_cfg(data_dir, tmp_path / "run", total_iter=2))
    assert cli_main(["train", "--config", str(cfg), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing to resume" in err and "state.json" in err and "\n" not in err
    torch.set_num_threads(1)
    assert cli_main(["train", "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert cli_main(["train", "--config", str(cfg)]) == 2  # would overwrite the run
    assert "already holds a training run" in capsys.readouterr().err
    raw = _raw_cfg(data_dir, tmp_path / "run", total_iter=2)
    raw["network"]["channels"] = 12
    _write_cfg(cfg, raw)
    assert cli_main(["train", "--config", str(cfg), "--resume"]) == 2
    assert "network in the config" in capsys.readouterr().err
    # resuming a finished run is a no-op that keeps the weights
    _write_cfg(cfg, _raw_cfg(data_dir, tmp_path / "run", total_iter=2))
    before = (tmp_path / "run" / "last" / "model.safetensors").read_bytes()
    assert cli_main(["train", "--config", str(cfg), "--resume"]) == 0
    assert (tmp_path / "run" / "last" / "model.safetensors").read_bytes() == before


def test_cli_config_errors_are_one_line(tmp_path, data_dir, capsys):
    assert cli_main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    raw = _raw_cfg(data_dir, tmp_path / "run")
    raw["train"]["lr"] = 1e-3  # misplaced key
    assert cli_main(["train", "--config", str(_write_cfg(tmp_path / "c.yaml", raw))]) == 2
    err = capsys.readouterr().err
    assert "train.lr: unknown key" in err and err.count("\n") == 1
    raw = _raw_cfg(data_dir, tmp_path / "run")
    raw["datasets"]["train"]["root"] = str(tmp_path / "nope")
    assert cli_main(["train", "--config", str(_write_cfg(tmp_path / "c.yaml", raw))]) == 2
    assert "datasets.train.root: folder not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- failures
def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path, data_dir, monkeypatch,
                                                              capsys):
    torch.set_num_threads(1)
    calls = [0]

    class NaNAfter5(RestorationLoss):
        def forward(self, pred, target):
            calls[0] += 1
            total, l1, fft = super().forward(pred, target)
            return (total * float("nan") if calls[0] >= 6 else total), l1, fft

    monkeypatch.setattr(T, "RestorationLoss", NaNAfter5)
    run = tmp_path / "run"
    cfg = _write_cfg(tmp_path / "c.yaml", _raw_cfg(data_dir, run))
    assert cli_main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "NaN/inf at iteration 6" in err and "iteration 4" in err and "kept" in err
    assert json.loads((run / "state.json").read_text())["iteration"] == 4
    assert json.loads((run / "last" / "config.json").read_text())["train"]["iter"] == 4
    interir.load_pretrained(run / "last")  # refuses non-finite weights, so this checks them
    assert max(int(r["iter"]) for r in _csv_rows(run / "log.csv")) == 5
    # the kept state resumes (with the NaN gone) to the end
    monkeypatch.setattr(T, "RestorationLoss", RestorationLoss)
    assert cli_main(["train", "--config", str(cfg), "--resume"]) == 0
    assert json.loads((run / "state.json").read_text())["iteration"] == 8


def test_crash_during_state_save_keeps_previous_state(tmp_path, data_dir, monkeypatch):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    cfg = validate_config(_raw_cfg(data_dir, run, total_iter=4))
    model = T.train(cfg)
    meta, tensors = T.load_training_state(run)
    assert meta["iteration"] == 4

    def killed(*a, **k):
        raise KeyboardInterrupt  # dies after the new tensors file, before state.json moves

    opt = T.build_optimizer(model.parameters(), cfg)
    sched = T.build_scheduler(opt, cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    monkeypatch.setattr(T, "_atomic_write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        T.save_training_state(run, model, opt, sched, 99)
    meta2, tensors2 = T.load_training_state(run)
    assert meta2["iteration"] == 4 and meta2["tensors_file"] == "state-00000004.safetensors"
    assert all(torch.equal(tensors[k], tensors2[k]) for k in tensors)


@pytest.mark.parametrize("warmup", [None, 4])
def test_training_state_round_trip_is_exact(tmp_path, warmup):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 3, 1))
    cfg = {"train": {"optimizer": {"type": "Adam", "lr": 1e-2, "betas": [0.9, 0.99],
                                   "weight_decay": 0.0},
                     "scheduler": {"type": "CosineAnnealingLR", "eta_min": 0.0}, "total_iter": 10}}
    if warmup:  # the resume lands inside the warm-up (3 of 4 steps) and leaves it
        cfg["train"]["scheduler"]["warmup_iter"] = warmup
    opt, sched = T.build_optimizer(m.parameters(), cfg), None
    sched = T.build_scheduler(opt, cfg)

    def step(model, o, s, i):
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(i))
        o.zero_grad()
        model(x).square().mean().backward()
        o.step()
        s.step()

    for i in range(3):
        step(m, opt, sched, i)
    T.save_training_state(tmp_path, m, opt, sched, 3)
    meta, tensors = T.load_training_state(tmp_path)
    m2 = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 3, 1))
    m2.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt2 = T.build_optimizer(m2.parameters(), cfg)
    sched2 = T.build_scheduler(opt2, cfg)
    opt2.load_state_dict(T._unflatten_optimizer(tensors, meta["optimizer"]))
    sched2.load_state_dict(meta["scheduler"])
    for i in range(3, 6):
        step(m, opt, sched, i)
        step(m2, opt2, sched2, i)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters()))
    assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


LOOP_IMPORTS = textwrap.dedent("""
    import importlib.abc, json, sys, torch
    torch.set_num_threads(1)
    from interir import train as T
    from interir.config import validate_config

    trainer = T.Trainer(validate_config(json.loads(sys.argv[1])))
    late = []

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "interir" or name.startswith("interir."):
                late.append(name)
                raise ImportError(f"{name} imported inside the training loop")
            return None

    sys.meta_path.insert(0, Refuse())
    trainer.run()
    print("late imports:", late)
""")


def test_the_loop_imports_nothing_from_the_package(tmp_path, data_dir):
    """A run lasts hours while the working tree may change: once set up, training, validation,
    the best and the periodic saves must not import a module of the package (one edited after
    the start would be half old, half new; a run once died so at its first validation)."""
    raw = _raw_cfg(data_dir, tmp_path / "run", total_iter=4,
                   loss={"l1": 1.0, "fft": 0.1, "deep_supervision": "linear", "monotone": 0.1,
                         "descent": 0.3})
    raw["val"]["every"], raw["checkpoint"]["every"], raw["checkpoint"]["keep_every"] = 2, 2, 2
    script = tmp_path / "loop_imports.py"
    script.write_text(LOOP_IMPORTS)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, str(script), json.dumps(raw)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "late imports: []" in done.stdout
    rows = _csv_rows(tmp_path / "run" / "log.csv")
    assert [r["iter"] for r in rows if r["kind"] == "val" and r["combo"] == "average"] == ["2", "4"]
    assert json.loads((tmp_path / "run" / "state.json").read_text())["iteration"] == 4
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    # checkpoint.keep_every: the weights at 2 survive last/ moving on to 4
    kept = sorted(p.name for p in (tmp_path / "run").glob("weights-*"))
    assert kept == ["weights-00000002", "weights-00000004"]
    w2, w4 = (interir.load_pretrained(tmp_path / "run" / k).state_dict() for k in kept)
    last = interir.load_pretrained(tmp_path / "run" / "last").state_dict()
    assert all(torch.equal(w4[k], last[k]) for k in last)
    assert not all(torch.equal(w2[k], last[k]) for k in last)


# --------------------------------------------------------------------------- data
def test_batches_are_a_pure_function_of_seed_iteration_rank(data_dir):
    from interir.data.datasets import CleanImageDataset

    ds = CleanImageDataset(data_dir / "clean", patch_size=32, augment=True)
    combos = ["haze_rain_noise", "rain"]
    a = T.make_batch(ds, 3, combos, 7, 10, 0, torch.device("cpu"))
    b = T.make_batch(ds, 3, combos, 7, 10, 0, torch.device("cpu"))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == a[1].shape == (3, 3, 32, 32) and not torch.equal(a[0], a[1])
    for other in [(8, 10, 0), (7, 11, 0), (7, 10, 1)]:
        c = T.make_batch(ds, 3, combos, *other, torch.device("cpu"))
        assert not torch.equal(a[0], c[0])
    assert len({T.step_seed(s, i, r) for s in range(3) for i in range(50) for r in range(3)}) == 450


def test_degrade_size_degrades_the_crop_then_cuts_the_patch(data_dir):
    """datasets.train.degrade_size: the pair is a window of a degraded larger crop (same window
    in input and target), still a pure function of (seed, iteration, rank)."""
    from interir.data.datasets import CleanImageDataset
    from interir.data.degrade import degrade, sample_levels

    ds = CleanImageDataset(data_dir / "clean", patch_size=48, augment=True)
    combos = ["haze_rain_noise"]
    deg, clean = T.make_batch(ds, 2, combos, 7, 10, 0, torch.device("cpu"), patch_size=32)
    again = T.make_batch(ds, 2, combos, 7, 10, 0, torch.device("cpu"), patch_size=32)
    assert deg.shape == clean.shape == (2, 3, 32, 32)
    assert torch.equal(deg, again[0]) and torch.equal(clean, again[1])
    # rebuild the full degraded crops: each pair is one window of them, at the same place
    s = T.step_seed(7, 10, 0)
    crops = ds.sample_batch(2, torch.Generator().manual_seed(s))
    g = torch.Generator().manual_seed(s)
    full = degrade(crops, *sample_levels(2, combos, generator=g)[:3], generator=g)
    for j in range(2):
        hits = [(t, l) for t in range(17) for l in range(17)
                if torch.equal(crops[j, :, t:t + 32, l:l + 32], clean[j])]
        assert any(torch.equal(full[j, :, t:t + 32, l:l + 32], deg[j]) for t, l in hits)
    # without it (or at the crop size) the crop itself is the patch, as before
    plain = T.make_batch(ds, 2, combos, 7, 10, 0, torch.device("cpu"))
    assert torch.equal(T.make_batch(ds, 2, combos, 7, 10, 0, torch.device("cpu"),
                                    patch_size=48)[0], plain[0])


def test_degrade_size_config(tmp_path):
    from interir.config import validate_config

    raw = {"name": "t", "datasets": {"train": {"root": "c", "patch_size": 32, "batch_size": 2}},
           "network": {"preset": "tiny"}, "train": {"optimizer": {"lr": 1e-3}, "total_iter": 1},
           "checkpoint": {"dir": "run"}}
    assert "degrade_size" not in validate_config(raw)["datasets"]["train"]
    raw["datasets"]["train"]["degrade_size"] = 16
    with pytest.raises(InterIRError, match="degrade_size: must be >= patch_size"):
        validate_config(raw)
    raw["datasets"]["train"]["degrade_size"] = 64
    assert validate_config(raw)["datasets"]["train"]["degrade_size"] == 64


def test_training_with_degrade_size_runs_on_patches(tmp_path, data_dir, monkeypatch):
    torch.set_num_threads(1)
    raw = _raw_cfg(data_dir, tmp_path / "run", total_iter=2)
    raw["datasets"]["train"]["degrade_size"] = 40   # the clean images are 48 x 56
    shapes, orig = [], T.make_batch

    def spy(*a, **k):
        out = orig(*a, **k)
        shapes.append(tuple(out[0].shape))
        return out

    monkeypatch.setattr(T, "make_batch", spy)
    T.train(validate_config(raw), log=lambda msg: None)
    assert shapes == [(2, 3, 32, 32)] * 2


def test_exclude_list_formats(tmp_path):
    (tmp_path / "a.txt").write_text("# comment\nx.png\n\n  dir/y.jpg \n")
    assert T.read_exclude_list(tmp_path / "a.txt") == ["x.png", "y.jpg"]
    (tmp_path / "m.csv").write_text("combo,file,source,haze\nhaze,x.png,/data/clean/x.png,3\n"
                                    "rain,z.png,clean/z.png,0\n")
    assert T.read_exclude_list(tmp_path / "m.csv") == ["x.png", "z.png"]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InterIRError, match="no 'source'"):
        T.read_exclude_list(tmp_path / "bad.csv")
    with pytest.raises(InterIRError, match="not found"):
        T.read_exclude_list(tmp_path / "missing.txt")


# --------------------------------------------------------------------------- loss
def test_fft_loss_matches_numpy_and_eq2_weighting():
    g = torch.Generator().manual_seed(0)
    pred, tgt = torch.rand(2, 3, 16, 12, generator=g), torch.rand(2, 3, 16, 12, generator=g)
    ref = np.abs(np.fft.rfft2(pred.double().numpy()) - np.fft.rfft2(tgt.double().numpy())).mean()
    assert fft_l1(pred, tgt).item() == pytest.approx(ref, rel=1e-5)
    assert fft_l1(tgt, tgt).item() == 0.0
    total, l1, fft = RestorationLoss(1.0, 0.1)(pred, tgt)
    assert l1.item() == pytest.approx((pred - tgt).abs().mean().item())
    assert total.item() == pytest.approx(l1.item() + 0.1 * fft.item(), rel=1e-6)
    pred.requires_grad_(True)
    RestorationLoss(1.0, 0.1)(pred, tgt)[0].backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


# --------------------------------------------------------------------------- DDP
def _ddp_worker(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    model = T.train(cfg, log=lambda msg: None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(out, f"rank{rank}.safetensors"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_keep_identical_replicas(tmp_path, data_dir, monkeypatch):
    import torch.multiprocessing as mp

    raw = _raw_cfg(data_dir, tmp_path / "ddp", total_iter=3)
    raw["datasets"]["val"]["root"] = None
    cfg = validate_config(raw)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2,
                       join=True, start_method="spawn")
    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0)
    # rank 0 alone wrote the checkpoint, and it holds the shared weights
    saved = load_file(str(tmp_path / "ddp" / "last" / "model.safetensors"))
    assert all(torch.equal(saved[k], r0[k]) for k in r0)
    # the replicas trained on both ranks' batches: a single process (rank 0's batches) differs
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    raw["checkpoint"]["dir"] = str(tmp_path / "single")
    torch.set_num_threads(1)
    single = T.train(validate_config(raw), log=lambda msg: None).state_dict()
    assert any(not torch.equal(single[k], r0[k]) for k in r0)


def test_run_dir_overrides_the_configs_checkpoint_dir(tmp_path, data_dir):
    torch.set_num_threads(1)
    cfg = _write_cfg(tmp_path / "c.yaml", _raw_cfg(data_dir, tmp_path / "in-config", total_iter=2))
    assert cli_main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "state.json").is_file()
    assert (tmp_path / "elsewhere" / "last" / "model.safetensors").is_file()
    assert not (tmp_path / "in-config").exists()
    assert cli_main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "elsewhere"),
                     "--resume"]) == 0


def test_warm_start_copies_matching_tensors_and_keeps_the_rest_fresh(tmp_path, data_dir, capsys):
    torch.set_num_threads(1)
    torch.manual_seed(5)
    src = interir.build_model("tiny", n_blocks=1, channels=8)     # another seed than the run's
    interir.save_pretrained(src, tmp_path / "src")
    raw = _raw_cfg(data_dir, tmp_path / "run", total_iter=1, init_weights=str(tmp_path / "src"))
    raw["train"]["optimizer"]["lr"] = 1e-12           # one step that barely moves the weights
    raw["network"].update(n_blocks=2, norm_scale="learned")
    assert cli_main(["train", "--config", str(_write_cfg(tmp_path / "c.yaml", raw))]) == 0
    assert "warm start from" in capsys.readouterr().err
    got = interir.load_pretrained(tmp_path / "run" / "last").state_dict()
    ref = src.state_dict()
    assert torch.allclose(got["blocks.0.resm.ep_v.conv1.weight"], ref["blocks.0.resm.ep_v.conv1.weight"], atol=1e-6)
    assert torch.allclose(got["head.0.weight"], ref["head.0.weight"], atol=1e-6)
    fresh = interir.build_model("tiny", n_blocks=2, channels=8).state_dict()
    assert not torch.allclose(got["blocks.1.resm.ep_v.conv1.weight"], ref["blocks.0.resm.ep_v.conv1.weight"])
    assert got["blocks.1.resm.eta"].item() == pytest.approx(fresh["blocks.1.resm.eta"].item(), abs=1e-6)
    raw["network"]["channels"] = 12
    raw["checkpoint"]["dir"] = str(tmp_path / "run2")
    assert cli_main(["train", "--config", str(_write_cfg(tmp_path / "c.yaml", raw))]) == 2
    err = capsys.readouterr().err
    assert "init_weights" in err and "other shapes" in err and "\n" not in err.strip()


def test_init_ema_starts_the_moving_average_of_a_warm_restart_from_its_folder(tmp_path, data_dir, capsys):
    """train.init_ema: a warm restart's moving average starts from a milestone's ema/, not from
    init_weights; another kind of convolution or a config without ema_decay is a clear error."""
    torch.set_num_threads(1)
    folders = {}
    for seed, name in ((5, "weights"), (6, "ema")):
        torch.manual_seed(seed)
        interir.save_pretrained(interir.build_model("tiny", n_blocks=1, channels=8), tmp_path / name)
        folders[name] = interir.load_pretrained(tmp_path / name).state_dict()
    raw = _raw_cfg(data_dir, tmp_path / "run", total_iter=1, init_weights=str(tmp_path / "weights"),
                   init_ema=str(tmp_path / "ema"), ema_decay=0.5)
    raw["train"]["optimizer"]["lr"] = 1e-12           # one step that barely moves the weights
    assert cli_main(["train", "--config", str(_write_cfg(tmp_path / "c.yaml", raw))]) == 0
    assert "moving average of the weights starts from" in capsys.readouterr().err
    got = interir.load_pretrained(tmp_path / "run" / "ema").state_dict()
    w, e = folders["weights"], folders["ema"]
    assert all(torch.allclose(got[k], 0.5 * e[k] + 0.5 * w[k], atol=1e-5) for k in w)  # one step
    assert not torch.allclose(e["head.0.weight"], w["head.0.weight"])

    torch.manual_seed(7)
    interir.save_pretrained(interir.build_model("tiny", n_blocks=1, channels=8, conv_type="standard"),
                            tmp_path / "std")
    raw["train"]["init_ema"], raw["checkpoint"]["dir"] = str(tmp_path / "std"), str(tmp_path / "run2")
    assert cli_main(["train", "--config", str(_write_cfg(tmp_path / "c.yaml", raw))]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]   # after the warm start's line
    assert "init_ema" in err and "conv_type standard" in err and "Traceback" not in err
    del raw["train"]["ema_decay"]
    with pytest.raises(InterIRError, match="init_ema: needs train.ema_decay"):
        validate_config(raw)


def _sched_cfg(total: int, warmup: int | None, lr: float = 1e-3, eta_min: float = 1e-6) -> dict:
    sched = {"type": "CosineAnnealingLR", "eta_min": eta_min}
    if warmup is not None:
        sched["warmup_iter"] = warmup
    return {"train": {"optimizer": {"type": "Adam", "lr": lr, "betas": [0.9, 0.999], "weight_decay": 0.0},
                      "scheduler": sched, "total_iter": total}}


def _lrs(cfg: dict, steps: int) -> list[float]:
    opt = T.build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    sched = T.build_scheduler(opt, cfg)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_ramps_then_follows_the_cosine_over_the_rest():
    lrs = _lrs(_sched_cfg(total=20, warmup=5), 20)
    assert lrs[:5] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3])  # linear to the full lr
    # after it, the cosine of a 15-step run from the same lr, shifted by the warm-up
    plain = _lrs(_sched_cfg(total=15, warmup=None), 15)
    assert lrs[5:] == pytest.approx(plain, rel=1e-9)
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] < 2e-5


def test_no_warmup_is_the_plain_cosine_schedule():
    cfg = _sched_cfg(total=10, warmup=None)
    opt = T.build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    assert isinstance(T.build_scheduler(opt, cfg), torch.optim.lr_scheduler.CosineAnnealingLR)
    assert _lrs(_sched_cfg(total=10, warmup=0), 10) == pytest.approx(_lrs(cfg, 10))


@pytest.mark.parametrize("sched, message", [
    ({"warmup_iter": 100}, "must be below train.total_iter"),
    ({"warmup_iter": 10, "type": "constant"}, "only with type CosineAnnealingLR"),
    ({"warmup_iter": -1}, "must be >= 0"),
])
def test_bad_warmup_is_a_clear_config_error(tmp_path, sched, message):
    raw = _raw_cfg(tmp_path, tmp_path / "run", total_iter=100)
    raw["train"]["scheduler"].update(sched)
    with pytest.raises(InterIRError, match=message):
        validate_config(raw)


# --------------------------------------------------------------------------- moving average
def test_weight_ema_moves_each_float_tensor_by_one_minus_decay():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ema = T.WeightEMA(model, 0.9)
    start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.state_dict()["1.num_batches_tracked"].fill_(7)
    ema.update(model)
    got, now = ema.module.state_dict(), model.state_dict()
    for k, v in start.items():
        if v.is_floating_point():
            assert torch.allclose(got[k], 0.9 * v + 0.1 * now[k], atol=1e-6), k
    assert int(got["1.num_batches_tracked"]) == 7          # not a float: copied
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(InterIRError, match="between 0 and 1"):
        T.WeightEMA(model, 1.0)


@pytest.mark.parametrize("decay, message", [(1.0, "between 0 and 1"), (0.0, "between 0 and 1"),
                                            (-0.5, "must be >= 0")])
def test_bad_ema_decay_is_a_clear_config_error(tmp_path, decay, message):
    raw = _raw_cfg(tmp_path, tmp_path / "run", ema_decay=decay)
    with pytest.raises(InterIRError, match=message):
        validate_config(raw)


def test_ema_run_keeps_validates_and_resumes_its_average_exactly(tmp_path, data_dir, capsys):
    """train.ema_decay: ema/ and ema-<it>/ beside last/ and weights-<it>/, val_ema rows, and
    the average in the training state, so a stopped and resumed run ends on the same average
    as an uninterrupted one; a state without an average starts one at the resumed weights."""
    torch.set_num_threads(1)

    def cfg(name: str) -> Path:
        raw = _raw_cfg(data_dir, tmp_path / name, ema_decay=0.5)
        raw["checkpoint"]["keep_every"] = 4
        return _write_cfg(tmp_path / f"{name}.yaml", raw)

    assert cli_main(["train", "--config", str(cfg("ref"))]) == 0
    ref = tmp_path / "ref"
    assert sorted(p.name for p in ref.glob("ema*")) == ["ema", "ema-00000004", "ema-00000008"]
    rows = _csv_rows(ref / "log.csv")
    assert [r["iter"] for r in rows if r["kind"] == "val_ema" and r["combo"] == "average"] == ["4", "8"]
    ema8, last = (load_file(str(ref / d / "model.safetensors")) for d in ("ema", "last"))
    assert not all(torch.equal(ema8[k], last[k]) for k in last)   # an average, not the weights
    assert interir.load_pretrained(ref / "ema-00000004").config == interir.load_pretrained(ref / "last").config
    _, tensors = T.load_training_state(ref)
    assert all(torch.equal(tensors[f"ema.{k}"], v) for k, v in ema8.items())

    assert cli_main(["train", "--config", str(cfg("stop")), "--stop-at", "5"]) == 0
    assert cli_main(["train", "--config", str(cfg("stop")), "--resume"]) == 0
    got = load_file(str(tmp_path / "stop" / "ema" / "model.safetensors"))
    assert all(torch.equal(got[k], ema8[k]) for k in ema8)

    plain = _raw_cfg(data_dir, tmp_path / "late")
    assert cli_main(["train", "--config", str(_write_cfg(tmp_path / "late.yaml", plain)),
                     "--stop-at", "4"]) == 0
    capsys.readouterr()
    assert cli_main(["train", "--config", str(cfg("late")), "--resume"]) == 0
    assert "moving average of the weights starts at iteration 4" in capsys.readouterr().err
    assert (tmp_path / "late" / "ema-00000008" / "model.safetensors").is_file()
