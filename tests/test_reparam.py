"""explain <-> explain_unit: an exact reparametrisation of checkpoints, warm starts and training
states (interir.model.reparam, interir.train.branch_training_state, scripts/branch_run.py)."""
from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import interir
from interir.cli import main as cli_main
from interir.model import make_config
from interir.model.explain_conv import ExplainConv2d
from interir.model.reparam import conv_type_factors, convert_adam_moments, convert_conv_type
from interir.train import load_training_state
from test_train import _raw_cfg, data_dir  # noqa: F401  (the module's tiny data fixture)

REPO = Path(__file__).resolve().parents[1]


def _model(conv_type: str = "explain", seed: int = 0) -> interir.InterIR:
    torch.manual_seed(seed)
    model = interir.InterIR(make_config("tiny", n_blocks=1, channels=8, conv_type=conv_type))
    for m in model.modules():       # thresholds away from 0, so the attention is far from uniform
        if isinstance(m, ExplainConv2d):
            m.mask.tau.data.uniform_(-0.5, 0.5)
    return model.eval()


def _out(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def test_explain_and_explain_unit_convert_exactly_both_ways():
    src = _model("explain")
    x = torch.rand(2, 3, 20, 28)
    sd, cfg = convert_conv_type(src.state_dict(), src.config, "explain_unit")
    unit = interir.InterIR(cfg).eval()
    unit.load_state_dict(sd)
    assert cfg["conv_type"] == "explain_unit"
    assert torch.allclose(_out(unit, x), _out(src, x), atol=1e-6)
    # the kernels themselves moved (by 1/K²), nothing else did
    factors = conv_type_factors(src.config, "explain_unit")
    assert factors and all(f == pytest.approx(1 / 9) for f in factors.values())
    ref = src.state_dict()
    assert all(torch.equal(sd[k], ref[k]) for k in ref if k not in factors)
    back, cfg_back = convert_conv_type(sd, cfg, "explain")
    assert cfg_back == src.config and all(torch.allclose(back[k], ref[k], atol=1e-7) for k in ref)
    assert convert_conv_type(ref, src.config, "explain")[0].keys() == ref.keys()   # a no-op


def test_a_standard_conv_is_not_a_reparametrisation():
    src = _model("explain")
    with pytest.raises(ValueError, match="standard conv has no attention"):
        convert_conv_type(src.state_dict(), src.config, "standard")
    std = interir.InterIR(make_config("tiny", n_blocks=1, channels=8, conv_type="standard"))
    with pytest.raises(ValueError, match="cannot be converted"):
        conv_type_factors(std.config, "explain_unit")


def test_after_the_branch_adam_moves_the_acting_kernel_k2_times_as_far():
    """The point of explain_unit: the same Adam state, converted, takes a 9x larger step on the
    kernel that acts (W·g) (exactly so where Adam's eps is negligible against √v)."""
    torch.manual_seed(1)
    x, target = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)

    def one_step(model: interir.InterIR, state: dict | None) -> tuple[dict, dict]:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-20)
        if state is not None:
            opt.load_state_dict(copy.deepcopy(state))   # Adam updates its state in place
        before = {k: v.clone() for k, v in model.state_dict().items()}
        opt.zero_grad()
        (model(x) - target).abs().mean().backward()
        opt.step()
        return before, opt.state_dict()

    explain = _model("explain", seed=2)
    for name, p in explain.named_parameters():     # blocks away from identity: every kernel acts
        if name.endswith(("beta", "gamma")):
            p.data.uniform_(0.2, 0.5)
    _, warm = one_step(explain, None)              # Adam moments from one step
    sd, cfg = convert_conv_type(explain.state_dict(), explain.config, "explain_unit")
    unit = interir.InterIR(cfg)
    unit.load_state_dict(sd)
    names = [n for n, _ in unit.named_parameters()]
    factors = conv_type_factors(explain.config, "explain_unit")
    unit_state = {"param_groups": warm["param_groups"],
                  "state": {i: (convert_adam_moments(s, factors[names[i]]) if names[i] in factors else s)
                            for i, s in warm["state"].items()}}
    b_exp, _ = one_step(explain, warm)
    b_unit, _ = one_step(unit, unit_state)
    for key in factors:
        d_exp = (explain.state_dict()[key] - b_exp[key]).abs().sum()       # acting kernel: W·1
        d_unit = 9 * (unit.state_dict()[key] - b_unit[key]).abs().sum()    # acting kernel: W'·9
        assert d_unit / d_exp == pytest.approx(9.0, rel=1e-3)
    other = "blocks.0.resm.ep_v.conv1.weight"
    assert torch.allclose(unit.state_dict()[other] - b_unit[other], explain.state_dict()[other] - b_exp[other],
                          atol=1e-7)


def test_warm_start_across_the_two_readings_converts_and_refuses_a_standard_conv(tmp_path, data_dir, capsys):  # noqa: F811
    torch.set_num_threads(1)
    src = _model("explain", seed=5)
    interir.save_pretrained(src, tmp_path / "src")
    raw = _raw_cfg(data_dir, tmp_path / "run", total_iter=1, init_weights=str(tmp_path / "src"))
    raw["train"]["optimizer"]["lr"] = 1e-12           # one step that barely moves the weights
    raw["network"]["conv_type"] = "explain_unit"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert cli_main(["train", "--config", str(tmp_path / "c.yaml")]) == 0
    assert "converted from conv_type explain to explain_unit" in capsys.readouterr().err
    got = interir.load_pretrained(tmp_path / "run" / "last").eval()
    x = torch.rand(1, 3, 24, 24)
    assert got.config["conv_type"] == "explain_unit"
    assert torch.allclose(_out(got, x), _out(src, x), atol=1e-5)
    raw["network"]["conv_type"] = "standard"
    raw["checkpoint"]["dir"] = str(tmp_path / "run2")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert cli_main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "init_weights" in err and "cannot be converted" in err and "\n" not in err.strip()


def test_branch_run_keeps_outputs_schedule_and_log_and_resumes(tmp_path, data_dir):  # noqa: F811
    torch.set_num_threads(1)
    raw = _raw_cfg(data_dir, tmp_path / "run", total_iter=8, ema_decay=0.5)
    raw["network"]["conv_type"] = "explain"
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(raw))
    assert cli_main(["train", "--config", str(tmp_path / "a.yaml"), "--stop-at", "4"]) == 0
    script = [sys.executable, str(REPO / "scripts" / "branch_run.py")]
    done = subprocess.run([*script, str(tmp_path / "run"), str(tmp_path / "unit"), "--conv-type",
                           "explain_unit", "--name", "unit"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    meta, tensors = load_training_state(tmp_path / "unit")
    src_meta, src_tensors = load_training_state(tmp_path / "run")
    assert meta["iteration"] == 4 and meta["name"] == "unit" and meta["best_psnr"] is None
    assert meta["network"] == {**src_meta["network"], "conv_type": "explain_unit"}
    assert meta["scheduler"] == src_meta["scheduler"]
    x = torch.rand(1, 3, 20, 20)
    for prefix in ("model.", "ema."):   # the weights, and their moving average (train.ema_decay)
        outs = []
        for m, t in ((src_meta, src_tensors), (meta, tensors)):
            model = interir.InterIR(make_config(**m["network"])).eval()
            model.load_state_dict({k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)})
            outs.append(_out(model, x))
        assert torch.allclose(outs[0], outs[1], atol=1e-6)
    with open(tmp_path / "unit" / "log.csv", newline="") as f:
        assert max(int(r["iter"]) for r in csv.DictReader(f)) == 4
    # a second branch into the same folder, or from a run already of that type, is refused
    again = subprocess.run([*script, str(tmp_path / "run"), str(tmp_path / "unit"), "--conv-type",
                            "explain_unit"], capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 2 and "already holds a training run" in again.stderr
    same = subprocess.run([*script, str(tmp_path / "unit"), str(tmp_path / "u2"), "--conv-type",
                           "explain_unit"], capture_output=True, text=True, cwd=REPO)
    assert same.returncode == 2 and "already conv_type explain_unit" in same.stderr
    # the branch resumes with its config (same network but the conv type) to the end
    raw["network"]["conv_type"], raw["name"] = "explain_unit", "unit"
    raw["checkpoint"]["dir"] = str(tmp_path / "unit")
    (tmp_path / "u.yaml").write_text(yaml.safe_dump(raw))
    assert cli_main(["train", "--config", str(tmp_path / "u.yaml"), "--resume"]) == 0
    assert json.loads((tmp_path / "unit" / "state.json").read_text())["iteration"] == 8
    assert interir.load_pretrained(tmp_path / "unit" / "last").config["conv_type"] == "explain_unit"


@pytest.mark.parametrize("conv_type", ["explain", "explain_unit"])
def test_standard_as_uniform_equals_the_standard_conv_under_uniform_attention(conv_type):
    from interir.interventions import uniform_attention
    from interir.model.reparam import standard_as_uniform

    std = _model("standard", seed=3)
    for name, p in std.named_parameters():              # residual scales start at 0: open them
        if name.endswith(("beta", "gamma")):
            p.data.uniform_(0.5, 1.0)
    state, cfg = standard_as_uniform(std.state_dict(), std.config, conv_type)
    model = interir.InterIR(make_config(**cfg)).eval()
    model.load_state_dict(state, strict=False)           # τ: fresh (not in a standard state)
    x = torch.rand(1, 3, 24, 24)
    with uniform_attention(model):
        assert torch.allclose(_out(model, x), _out(std, x), atol=1e-5)
    for m in model.modules():                           # a real attention map moves the output
        if isinstance(m, ExplainConv2d):
            m.mask.tau.data.uniform_(-0.5, 0.5)
    assert not torch.allclose(_out(model, x), _out(std, x), atol=1e-4)
    with pytest.raises(ValueError, match="standard conv"):
        standard_as_uniform(model.state_dict(), cfg, "explain_unit")


def test_warm_start_from_a_standard_conv_only_on_request(tmp_path, data_dir, capsys):  # noqa: F811
    torch.set_num_threads(1)
    interir.save_pretrained(_model("standard", seed=4), tmp_path / "src")
    raw = _raw_cfg(data_dir, tmp_path / "run", total_iter=1, init_weights=str(tmp_path / "src"))
    raw["network"]["conv_type"] = "explain_unit"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert cli_main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "cannot be converted" in err and "init_standard_as_uniform" in err
    raw["train"]["init_standard_as_uniform"] = True
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert cli_main(["train", "--config", str(tmp_path / "c.yaml")]) == 0
    assert "under uniform attention" in capsys.readouterr().err
    assert interir.load_pretrained(tmp_path / "run" / "last").config["conv_type"] == "explain_unit"
