"""Training-config loading and validation (interir/config.py)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from helpers import minimal_raw_config
from interir.config import COMBO_NAMES, load_config, validate_config
from interir.errors import InterIRError

REPO = Path(__file__).resolve().parents[1]

MINIMAL = minimal_raw_config()


def _err(raw) -> str:
    with pytest.raises(InterIRError) as ei:
        validate_config(raw)
    return str(ei.value)


def _with(path: str, value, base=MINIMAL):
    raw = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return raw


def test_minimal_config_gets_defaults():
    cfg = validate_config(copy.deepcopy(MINIMAL))
    assert cfg["seed"] == 0 and cfg["device"] == "auto"
    assert cfg["datasets"]["train"]["combos"] == list(COMBO_NAMES)
    assert cfg["datasets"]["train"]["augment"] is True
    assert cfg["datasets"]["val"] == {"root": None, "max_images": None}
    assert cfg["train"]["optimizer"] == {"type": "Adam", "lr": 1e-3, "betas": [0.9, 0.999],
                                         "weight_decay": 0.0}
    assert cfg["train"]["loss"] == {"l1": 1.0, "fft": 0.1}
    assert cfg["train"]["amp"] == "none" and cfg["train"]["compile"] is False
    assert cfg["logger"] == {"print_every": 100, "tensorboard": True, "csv": True}


@pytest.mark.parametrize("path,value,needle", [
    ("bogus", 1, "bogus: unknown key"),
    ("train.optimiser", {}, "train.optimiser: unknown key"),
    ("datasets.train.patchsize", 3, "datasets.train.patchsize: unknown key"),
    ("train.optimizer.lr", "fast", "train.optimizer.lr: expected a number"),
    ("train.total_iter", 2.5, "train.total_iter: expected an integer"),
    ("train.total_iter", 0, "train.total_iter: must be > 0"),
    ("train.amp", "fp16", "train.amp: expected one of none, bf16"),
    ("train.compile", "yes", "train.compile: expected true or false"),
    ("train.optimizer.betas", [0.9], "train.optimizer.betas: expected two numbers"),
    ("train.optimizer.type", "SGD", "train.optimizer.type: expected one of Adam, AdamW"),
    ("datasets.train.combos", ["fog"], "datasets.train.combos: unknown combo 'fog'"),
    ("datasets.train.batch_size", True, "datasets.train.batch_size: expected an integer"),
    ("datasets.train.patch_size", 4, "datasets.train.patch_size: must be >= 8"),
    ("device", "tpu", "device: expected one of auto, cpu, cuda"),
    ("network.preset", "huge", "network.preset: expected 'tiny' or 'paper'"),
    ("network.channels", [8], "network.channels: expected a number"),
    ("datasets", "x", "datasets: expected a mapping"),
])
def test_bad_values_name_the_key(path, value, needle):
    assert needle in _err(_with(path, value))


@pytest.mark.parametrize("path", ["name", "datasets.train.root", "datasets.train.patch_size",
                                  "train.optimizer.lr", "train.total_iter", "checkpoint.dir"])
def test_missing_required_key(path):
    raw = copy.deepcopy(MINIMAL)
    *parents, leaf = path.split(".")
    node = raw
    for p in parents:
        node = node[p]
    del node[leaf]
    msg = _err(raw)
    assert msg.startswith(path) and "missing" in msg


def test_missing_sections():
    raw = copy.deepcopy(MINIMAL)
    del raw["network"]
    assert "network: missing" in _err(raw)
    raw = copy.deepcopy(MINIMAL)
    del raw["train"]
    assert "train: missing section" in _err(raw)


def test_yaml_number_forms_and_combos(tmp_path):
    raw = _with("train.optimizer.lr", "2e-4")          # PyYAML reads 2e-4 as a string
    raw = _with("train.total_iter", 4e5, raw)           # 4e5 is a whole float
    raw = _with("datasets.train.combos", ["rain", "haze", "rain"], raw)
    cfg = validate_config(raw)
    assert cfg["train"]["optimizer"]["lr"] == 2e-4
    assert cfg["train"]["total_iter"] == 400000 and isinstance(cfg["train"]["total_iter"], int)
    assert cfg["datasets"]["train"]["combos"] == ["rain", "haze"]


def test_load_config_file_errors(tmp_path):
    with pytest.raises(InterIRError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InterIRError, match="invalid YAML"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(InterIRError, match="empty"):
        load_config(empty)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(InterIRError, match="expected a mapping"):
        load_config(lst)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(_with("train.loss.fft", "lots")))
    with pytest.raises(InterIRError) as ei:
        load_config(wrong)
    assert "wrong.yaml" in str(ei.value) and "train.loss.fft" in str(ei.value)
    assert "\n" not in str(ei.value)


def test_shipped_configs_are_valid():
    paper = load_config(REPO / "configs" / "paper.yaml")
    o, s, t = paper["train"]["optimizer"], paper["train"]["scheduler"], paper["train"]
    # the paper's setting (Sec. 4.1)
    assert o["type"] == "Adam" and o["betas"] == [0.9, 0.999] and o["lr"] == 2e-4
    assert s == {"type": "CosineAnnealingLR", "eta_min": 1e-7}
    assert t["total_iter"] == 400_000 and t["loss"] == {"l1": 1.0, "fft": 0.1}
    assert paper["datasets"]["train"]["patch_size"] == 256
    assert paper["datasets"]["train"]["batch_size"] == 32
    assert paper["datasets"]["train"]["augment"] is True
    assert paper["network"] == {"preset": "paper"}
    cpu = load_config(REPO / "configs" / "tiny-cpu.yaml")
    gpu = load_config(REPO / "configs" / "tiny-gpu.yaml")
    assert cpu["network"]["preset"] == gpu["network"]["preset"] == "tiny"
    assert cpu["device"] == "cpu" and cpu["train"]["amp"] == "none"
    assert gpu["train"]["amp"] == "bf16"
    for cfg in (paper, cpu, gpu):  # no machine-specific absolute paths
        for p in (cfg["datasets"]["train"]["root"], cfg["datasets"]["val"]["root"],
                  cfg["checkpoint"]["dir"], cfg["datasets"]["train"]["exclude_list"]):
            assert p and not Path(p).is_absolute() and "#" not in p  # no glued-on comment


def test_combo_names_match_degrade():
    from interir.data.degrade import COMBOS
    assert tuple(COMBO_NAMES) == tuple(COMBOS)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_of_the_repo_validates(path):
    cfg = load_config(path)
    assert cfg["name"] and cfg["train"]["total_iter"] > 0


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_warm_start_of_the_repo_names_a_committed_folder(path):
    """A config that continues from weights (a milestone, a shipped checkpoint) must find them in
    the repository, or a new machine cannot run it."""
    train = load_config(path)["train"]
    for key in ("init_weights", "init_ema"):
        if train.get(key):
            assert (REPO / train[key] / "model.safetensors").is_file(), f"{key}: {train[key]}"


def test_checkpoint_keep_every_is_absent_unless_given_and_positive():
    assert "keep_every" not in validate_config(copy.deepcopy(MINIMAL))["checkpoint"]
    assert validate_config(_with("checkpoint.keep_every", 500))["checkpoint"]["keep_every"] == 500
    assert "checkpoint.keep_every" in _err(_with("checkpoint.keep_every", 0))
