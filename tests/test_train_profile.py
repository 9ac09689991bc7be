"""benchmarks/train_profile.py: where a real config's training step spends its time."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from helpers import minimal_raw_config
from benchmarks import train_profile
from interir.train import step_seed


def _config(tmp_path: Path, data: Path) -> Path:
    raw = minimal_raw_config(n_blocks=1)
    raw["datasets"]["train"]["root"] = str(data)
    raw["datasets"]["val"] = {"root": str(tmp_path / "no-val")}  # the profile turns it off
    raw["train"]["loss"] = {"l1": 1.0, "fft": 0.1, "deep_supervision": "linear"}
    raw["train"]["grad_clip"] = 1.0
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_profile_reports_each_phase_of_the_real_step(tmp_path, small_train_data, capsys,
                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, small_train_data / "clean")
    assert train_profile.main(["--config", str(cfg), "--warmup", "1", "--steps", "2",
                               "--profile-steps", "1", "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "batch 2 x 32^2, n = 1, C = 48" in out
    host = {m[1]: float(m[2]) for m in re.finditer(r"^  (\w+) +([\d.-]+) ms", out, re.M)}
    assert set(host) == {*train_profile.PHASES, "other"}
    for phase in ("data", "forward", "loss", "backward", "clip", "optimizer"):
        assert host[phase] > 0, phase          # every phase was found inside the step
    assert host["backward"] > host["loss"]
    assert int(re.search(r"aten calls per step: (\d+)", out)[1]) > 100
    top = re.findall(r"^ +[\d.]+ ms +\d+ calls  (\S+)$", out, re.M)
    assert 0 < len(top) <= 5 and not set(top) & set(train_profile.PHASES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml"]  # a temporary run folder


def test_profile_says_what_is_wrong(tmp_path, capsys):
    assert train_profile.main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        train_profile.main(["--config", str(tmp_path / "missing.yaml"), "--device", "gpu0"])
    assert exc.value.code == 2 and "--device: not a device: 'gpu0'" in capsys.readouterr().err


def test_prefetched_batch_is_the_one_the_step_would_draw(tmp_path, small_train_data):
    """The GPU's one-ahead prefetch (Trainer.start_prefetch) hands the step the same clean batch
    it would have drawn itself."""
    trainer = train_profile.build_trainer(str(_config(tmp_path, small_train_data / "clean")),
                                          "cpu", None, False, tmp_path / "run")
    try:
        trainer.start_prefetch(3)
        for it in (3, 4):   # the first, then the one queued after it
            prefetched = trainer._next_clean(it)
            seed = step_seed(trainer.seed, it, trainer.rt.rank)
            drawn = trainer.dataset.sample_batch(trainer.batch, torch.Generator().manual_seed(seed))
            assert torch.equal(prefetched, drawn)
    finally:
        trainer.close()


def _event(key, count=1, cpu=0.0, self_cpu=0.0, self_dev=0.0, cuda=False):
    kind = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    return SimpleNamespace(key=key, count=count, cpu_time_total=cpu, self_cpu_time_total=self_cpu,
                           self_device_time_total=self_dev, device_type=kind)


def test_cuda_summary_counts_kernels_waits_and_busy_time():
    """The CUDA-only part of the summary, on events shaped like the profiler's (2 steps, µs)."""
    events = [_event("forward", 2, cpu=300e3), _event("backward", 2, cpu=500e3),
              _event("Optimizer.step#Adam.step", 2, cpu=40e3),
              _event("aten::mm", 400, self_cpu=100e3, self_dev=90e3),   # the op: not a kernel
              _event("aten::_local_scalar_dense", 6),
              _event("cudaStreamSynchronize", 4, self_cpu=5e3),
              _event("gemm_kernel", 400, self_dev=90e3, cuda=True),
              _event("elementwise_kernel", 1000, self_dev=30e3, cuda=True)]
    s = train_profile.summarise(events, 2, wall=0.5, profiled=0.6, on_cuda=True)
    assert s["kernels"] == 700 and s["syncs"] == 2 and s["scalar_reads"] == 3
    assert s["device_busy"] == pytest.approx(0.06)            # 120 ms of kernels over 2 steps
    assert s["host"]["forward"] == pytest.approx(0.15)
    assert s["host"]["optimizer"] == pytest.approx(0.02)
    gpu = train_profile.top_ops(events, 2, 5, device=True)
    assert [name for name, _, _ in gpu] == ["gemm_kernel", "elementwise_kernel"]
    text = train_profile.report(s, {"GPU": gpu}, 2)
    assert ("CUDA kernels per step: 700; host waits for the GPU 2 times a step; "
            "GPU busy 60 ms of 600 ms (10 %)") in text
