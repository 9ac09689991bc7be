"""Weights on disk: ``config.json`` + ``model.safetensors`` in one folder.

Nothing is ever unpickled: a pickle/torch.save file is recognised by its first bytes and
refused. Every problem raises :class:`InterIRError` naming the file and what is wrong.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import InterIRError
from .fileio import atomic_write_bytes, atomic_write_with, require_folder
from .model.interir import InterIR, make_config

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "interir-v1"
#: The checkpoint the app and the commands use without ``--weights``: ``checkpoints/<this>``.
#: Switching the shipped default is this line plus the artefacts in that folder (weights,
#: eval, model card, ``app/assets/reference_embedding.npz``).
DEFAULT_CHECKPOINT = "interir-n6"
DEFAULT_CHECKPOINT_PATH = f"checkpoints/{DEFAULT_CHECKPOINT}"


def repo_root() -> Path:
    """The project folder (where ``checkpoints/`` lives for an editable install or a Space)."""
    return Path(__file__).resolve().parents[1]


def default_checkpoint() -> Path | None:
    """``checkpoints/<DEFAULT_CHECKPOINT>`` if it is there (config + weights), else None."""
    path = repo_root() / "checkpoints" / DEFAULT_CHECKPOINT
    return path if (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file() else None


def save_pretrained(model: InterIR, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (each atomically) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_with(directory / WEIGHTS_NAME,
                      lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT}))
    config = {"format": FORMAT, "model": model.config, **(extra or {})}
    atomic_write_bytes(directory / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    return directory


def _looks_pickled(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head[:2] == b"PK" or head[:1] == b"\x80" or head[:6] == b"\x93NUMPY"


def trained_iteration(directory: str | os.PathLike | None) -> int | None:
    """The training iteration a weights folder's ``config.json`` records (``train.iter``, written
    by ``interir train``), or None when it records none or cannot be read."""
    if directory is None:
        return None
    try:
        raw = json.loads((Path(directory) / CONFIG_NAME).read_text())
        it = raw.get("train", {}).get("iter")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return int(it) if isinstance(it, (int, float)) and not isinstance(it, bool) else None


def training_stage(directory: str | os.PathLike | None) -> tuple[str | None, int | None]:
    """``(train.name, train.iter)`` of a weights folder's ``config.json`` (the training stage, a
    run's name, and the iteration of it the weights are from); None for what it does not record."""
    it = trained_iteration(directory)
    try:
        name = json.loads((Path(directory) / CONFIG_NAME).read_text()).get("train", {}).get("name")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError):
        name = None
    return (name if isinstance(name, str) else None), it


TWIN_MARK = "-stdconv"  # a twin's run names carry it: interir-n6-long2 / interir-n6-stdconv-long2


def same_stage(a: str | None, b: str | None) -> bool:
    """Whether two run names are the same training stage of a twin pair (equal once
    :data:`TWIN_MARK` is removed); a name that is not recorded (None) matches any."""
    return a is None or b is None or a.replace(TWIN_MARK, "") == b.replace(TWIN_MARK, "")


def out_of_step(weights: str | os.PathLike, twin: str | os.PathLike
                ) -> tuple[tuple[str | None, int], tuple[str | None, int]] | None:
    """None when two twins' weights are from the same iteration of the same training stage (their
    run names equal once :data:`TWIN_MARK` is removed; a name neither records is not compared),
    or when either iteration is unknown; else both ``(stage, iteration)`` pairs."""
    (na, a), (nb, b) = training_stage(weights), training_stage(twin)
    if a is None or b is None:
        return None
    return None if (same_stage(na, nb) and a == b) else ((na, a), (nb, b))


def started_from(weights: str | os.PathLike, other: str | os.PathLike) -> bool:
    """Whether the training lineage of ``weights`` (its ``lineage.json``, written by
    scripts/write_model_cards.py) begins with a warm start from the checkpoint folder named like
    ``other``; False when no readable lineage says so."""
    path = Path(weights) / "lineage.json"
    try:
        first = json.loads(path.read_text())["stages"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    return isinstance(first, dict) and Path(str(first.get("checkpoint") or "")).name == Path(other).name


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The validated model config stored in ``directory/config.json``."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise InterIRError(f"{path}: missing (a weights folder holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InterIRError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        raise InterIRError(f"{path}: no 'model' section; not an InterIR config")
    model_cfg = dict(raw["model"])
    preset = model_cfg.pop("preset", "tiny")
    try:
        return make_config(preset, **model_cfg)
    except (ValueError, TypeError) as exc:
        raise InterIRError(f"{path}: invalid model config ({exc})") from None


def load_pretrained(directory: str | os.PathLike, device: str | torch.device = "cpu") -> InterIR:
    """Build the model described by ``config.json`` and load ``model.safetensors`` strictly."""
    directory = require_folder(directory, "weights", f"a folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    config = read_config(directory)
    wpath = directory / WEIGHTS_NAME
    if not wpath.is_file():
        others = sorted(p.name for p in directory.iterdir() if p.suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl"))
        hint = f"; found {', '.join(others)}, but pickle-based checkpoints are refused" if others else ""
        raise InterIRError(f"{wpath}: missing{hint}")
    if _looks_pickled(wpath):
        raise InterIRError(f"{wpath}: is a pickle/torch.save file, not safetensors; refusing to load it "
                           "(pickles can run code)")
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InterIRError(f"{wpath}: unreadable or truncated safetensors file ({exc})") from None
    model = InterIR(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise InterIRError(f"{wpath}: weights do not match {CONFIG_NAME}: " + ", ".join(parts))
    for key, ref in expected.items():
        if state[key].shape != ref.shape:
            raise InterIRError(f"{wpath}: tensor {key} has shape {tuple(state[key].shape)}, "
                               f"config expects {tuple(ref.shape)}")
        if not state[key].is_floating_point():
            raise InterIRError(f"{wpath}: tensor {key} has dtype {state[key].dtype}, expected float")
        if not torch.isfinite(state[key]).all():
            raise InterIRError(f"{wpath}: tensor {key} holds NaN or inf values")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return model.to(device).eval()
