import json
import pickle
from pathlib import Path

import pytest
import torch

import interir
from interir.errors import InterIRError
from interir.weights import CONFIG_NAME, WEIGHTS_NAME


@pytest.fixture
def saved(tmp_path):
    m = interir.build_model("tiny", n_blocks=1, channels=8, conv_type="explain")
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    d = interir.save_pretrained(m, tmp_path / "w")
    return m, d


def test_round_trip_bit_exact(saved):
    m, d = saved
    loaded = interir.load_pretrained(d)
    assert loaded.config == m.config
    for (k1, v1), (k2, v2) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        assert torch.equal(m.eval()(x), loaded(x))
    assert not any(p.name.endswith(".tmp") for p in d.iterdir())


def test_missing_folder_and_files(tmp_path, saved):
    _, d = saved
    with pytest.raises(InterIRError, match="weights folder does not exist"):
        interir.load_pretrained(tmp_path / "nope")
    (d / WEIGHTS_NAME).unlink()
    with pytest.raises(InterIRError, match=f"{WEIGHTS_NAME}: missing"):
        interir.load_pretrained(d)
    (d / CONFIG_NAME).unlink()
    with pytest.raises(InterIRError, match=f"{CONFIG_NAME}: missing"):
        interir.load_pretrained(d)


def test_truncated_weights(saved):
    _, d = saved
    data = (d / WEIGHTS_NAME).read_bytes()
    (d / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(InterIRError, match="truncated"):
        interir.load_pretrained(d)


def test_corrupt_config(saved):
    _, d = saved
    (d / CONFIG_NAME).write_text("{not json")
    with pytest.raises(InterIRError, match="not valid JSON"):
        interir.load_pretrained(d)
    (d / CONFIG_NAME).write_text(json.dumps({"model": {"preset": "tiny", "colour": 3}}))
    with pytest.raises(InterIRError, match="invalid model config"):
        interir.load_pretrained(d)


def test_mismatched_config_and_weights(saved):
    _, d = saved
    cfg = json.loads((d / CONFIG_NAME).read_text())
    cfg["model"]["channels"] = 12
    (d / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(InterIRError, match="has shape"):
        interir.load_pretrained(d)
    cfg["model"]["channels"] = 8
    cfg["model"]["n_blocks"] = 2
    (d / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(InterIRError, match="missing"):
        interir.load_pretrained(d)
    cfg["model"]["n_blocks"] = 1
    cfg["model"]["conv_type"] = "standard"
    (d / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(InterIRError, match="unexpected"):
        interir.load_pretrained(d)


class Boom:
    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED_BY_PICKLE",))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickle_checkpoint_refused_without_running_it(saved, tmp_path, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    _, d = saved
    target = d / WEIGHTS_NAME
    if how == "pickle":
        target.write_bytes(pickle.dumps({"x": Boom()}))
    else:
        torch.save({"x": Boom()}, target)
    with pytest.raises(InterIRError, match="refusing"):
        interir.load_pretrained(d)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_only_pt_file_present(saved):
    _, d = saved
    (d / WEIGHTS_NAME).rename(d / "model.pt")
    with pytest.raises(InterIRError, match="pickle-based checkpoints are refused"):
        interir.load_pretrained(d)


def test_nan_weights_refused(saved):
    m, d = saved
    with torch.no_grad():
        m.head[0].bias[0] = float("nan")
    interir.save_pretrained(m, d)
    with pytest.raises(InterIRError, match="NaN"):
        interir.load_pretrained(d)


def _average_script():
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "scripts" / "average_weights.py"
    spec = importlib.util.spec_from_file_location("average_weights", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_average_weights_is_the_mean_of_milestones_of_one_run(tmp_path, capsys):
    avg = _average_script()
    dirs = []
    for seed, it in ((1, 500), (2, 1000)):
        torch.manual_seed(seed)
        m = interir.build_model("tiny", n_blocks=1, channels=8)
        dirs.append(interir.save_pretrained(m, tmp_path / f"w{it}", extra={"train": {"name": "r", "iter": it}}))
    assert avg.main(["--out", str(tmp_path / "avg"), *map(str, dirs)]) == 0
    a, b = (interir.load_pretrained(d).state_dict() for d in dirs)
    got = interir.load_pretrained(tmp_path / "avg").state_dict()
    assert all(torch.allclose(got[k], (a[k] + b[k]) / 2, atol=1e-7) for k in got)
    train = json.loads((tmp_path / "avg" / "config.json").read_text())["train"]
    assert train == {"name": "r", "iter": 1000, "average_of": [500, 1000]}
    # refused, in one line, writing nothing: another run, one folder, an existing output
    other = interir.save_pretrained(interir.build_model("tiny", n_blocks=1, channels=8), tmp_path / "o",
                                    extra={"train": {"name": "s", "iter": 700}})
    capsys.readouterr()
    assert avg.main(["--out", str(tmp_path / "x"), str(dirs[0]), str(other)]) == 2
    assert "not a milestone of the same run" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert avg.main(["--out", str(tmp_path / "x"), str(dirs[0])]) == 2
    assert avg.main(["--out", str(tmp_path / "avg"), *map(str, dirs)]) == 2
    assert "not empty; nothing overwritten" in capsys.readouterr().err
