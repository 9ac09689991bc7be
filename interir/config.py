"""Training configuration: load a BasicSR-like YAML file, validate it, fill in defaults.

Relative paths in a config (``datasets.*.root``, ``datasets.train.exclude_list``,
``checkpoint.dir``) are resolved against the **current working directory**, not the config
file's folder: run ``interir train`` from the repository root with the shipped configs.

Every problem (unknown key, missing key, wrong type, bad value) raises
:class:`~interir.errors.InterIRError` with a message naming the dotted key, e.g.
``train.optimizer.lr: expected a number, got 'fast'``.
"""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import InterIRError
from .fileio import read_text_file

__all__ = ["load_config", "validate_config", "stage_weights", "SCHEMA", "COMBO_NAMES",
           "DEEP_SUPERVISION_SHORTHANDS"]

#: The seven degradation combinations (same order as ``interir.data.degrade.COMBOS``).
COMBO_NAMES = ("haze_rain_noise", "haze_rain", "haze_noise", "rain_noise", "haze", "rain", "noise")

_REQUIRED = object()
_ABSENT = object()  # default of an optional key that stays out of the validated config

#: Shorthands for ``train.loss.deep_supervision`` (weights over the n + 1 early exits, k = 0..n).
DEEP_SUPERVISION_SHORTHANDS = ("uniform", "linear", "last")


class _Field:
    """One leaf of the schema: a type check, a default (or required) and an optional check."""

    def __init__(self, kind: str, default: Any = _REQUIRED, *, choices: tuple | None = None,
                 min_value: float | None = None, positive: bool = False, nullable: bool = False):
        self.kind, self.default, self.choices = kind, default, choices
        self.min_value, self.positive, self.nullable = min_value, positive, nullable

    def check(self, key: str, value: Any) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise InterIRError(f"{key}: must not be empty (expected {self._describe()})")
        kind = self.kind
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                    value = int(value)  # YAML "4e5" is a float; accept whole numbers
                else:
                    raise InterIRError(f"{key}: expected an integer, got {value!r}")
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                # PyYAML reads "2e-4" (no dot) as a string; accept numeric strings
                parsed = None
                if isinstance(value, str):
                    try:
                        parsed = float(value)
                    except ValueError:
                        parsed = None
                if parsed is None:
                    raise InterIRError(f"{key}: expected a number, got {value!r}")
                value = parsed
            value = float(value)
            if not math.isfinite(value):
                raise InterIRError(f"{key}: expected a finite number, got {value!r}")
        elif kind == "bool":
            if not isinstance(value, bool):
                raise InterIRError(f"{key}: expected true or false, got {value!r}")
        elif kind == "str":
            if not isinstance(value, str) or not value.strip():
                raise InterIRError(f"{key}: expected a non-empty string, got {value!r}")
        elif kind == "betas":
            if (not isinstance(value, (list, tuple)) or len(value) != 2
                    or any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in value)
                    or not all(0.0 <= float(b) < 1.0 for b in value)):
                raise InterIRError(f"{key}: expected two numbers in [0, 1), got {value!r}")
            value = [float(b) for b in value]
        elif kind == "stage_weights":
            value = _check_stage_weights(key, value)
        elif kind == "combos":
            if value == "all":
                value = list(COMBO_NAMES)
            if not isinstance(value, (list, tuple)) or not value:
                raise InterIRError(f"{key}: expected 'all' or a non-empty list of "
                                   f"{', '.join(COMBO_NAMES)}; got {value!r}")
            for c in value:
                if c not in COMBO_NAMES:
                    raise InterIRError(f"{key}: unknown combo {c!r} (choose from "
                                       f"{', '.join(COMBO_NAMES)})")
            value = list(dict.fromkeys(value))
        else:  # pragma: no cover - schema bug
            raise AssertionError(kind)
        if self.choices is not None and value not in self.choices:
            raise InterIRError(f"{key}: expected one of {', '.join(map(str, self.choices))}, "
                               f"got {value!r}")
        if self.positive and value <= 0:
            raise InterIRError(f"{key}: must be > 0, got {value!r}")
        if self.min_value is not None and value < self.min_value:
            raise InterIRError(f"{key}: must be >= {self.min_value}, got {value!r}")
        return value

    def _describe(self) -> str:
        return {"int": "an integer", "float": "a number", "bool": "true/false",
                "str": "a string", "betas": "two numbers", "combos": "a list of combos",
                "stage_weights": "a shorthand or a list of weights"}[self.kind]


def _check_stage_weights(key: str, value: Any) -> str | list[float]:
    """A deep-supervision shorthand, or its explicit weights (``{weights: [...]}`` or a list)."""
    if isinstance(value, str):
        if value not in DEEP_SUPERVISION_SHORTHANDS:
            raise InterIRError(f"{key}: expected one of {', '.join(DEEP_SUPERVISION_SHORTHANDS)} "
                               f"or {{weights: [w_0, ..., w_n]}}, got {value!r}")
        return value
    if isinstance(value, dict):
        if set(value) != {"weights"}:
            raise InterIRError(f"{key}: expected a mapping with the one key 'weights', got keys "
                               f"{', '.join(map(str, value)) or '(none)'}")
        value = value["weights"]
    if not isinstance(value, (list, tuple)) or not value:
        raise InterIRError(f"{key}: expected a shorthand ({', '.join(DEEP_SUPERVISION_SHORTHANDS)})"
                           f" or a non-empty list of weights, got {value!r}")
    weights = [_Field("float", min_value=0.0).check(f"{key}.weights[{i}]", w)
               for i, w in enumerate(value)]
    if sum(weights) <= 0:
        raise InterIRError(f"{key}.weights: at least one weight must be > 0")
    return weights


def stage_weights(spec: str | list[float], n_blocks: int) -> list[float]:
    """The n + 1 deep-supervision weights (one per early exit, summing to 1) for ``spec``.

    ``uniform``: all equal; ``linear``: proportional to k + 1 (later iterations weigh more);
    ``last``: only the final output (the paper's loss); a list: normalised by its sum.
    """
    n_exits = n_blocks + 1
    if spec == "uniform":
        raw = [1.0] * n_exits
    elif spec == "linear":
        raw = [float(k + 1) for k in range(n_exits)]
    elif spec == "last":
        raw = [0.0] * n_blocks + [1.0]
    else:
        raw = [float(w) for w in spec]
        if len(raw) != n_exits:
            raise InterIRError(f"train.loss.deep_supervision.weights: expected {n_exits} weights "
                               f"(n_blocks + 1 = one per early exit, k = 0..{n_blocks}), got "
                               f"{len(raw)}")
    total = sum(raw)
    return [w / total for w in raw]


F = _Field
#: The full schema. Nested dicts are sections; ``None`` marks a free-form section
#: (``network``: any ``build_model`` keyword overrides besides ``preset``).
SCHEMA: dict[str, Any] = {
    "name": F("str"),
    "seed": F("int", 0, min_value=0),
    "device": F("str", "auto", choices=("auto", "cpu", "cuda")),
    "datasets": {
        "train": {
            "type": F("str", "synthetic", choices=("synthetic",)),
            "root": F("str"),
            "patch_size": F("int", positive=True),
            # optional: degrade crops of this size, then cut patch_size windows from them
            # (degradations at the scale of a photo; absent: degrade the patches themselves)
            "degrade_size": F("int", _ABSENT, positive=True),
            "batch_size": F("int", positive=True),
            "combos": F("combos", "all"),
            "exclude_list": F("str", None, nullable=True),
            "augment": F("bool", True),
        },
        "val": {
            "root": F("str", None, nullable=True),
            "max_images": F("int", None, nullable=True, positive=True),
        },
    },
    "network": None,
    "train": {
        "optimizer": {
            "type": F("str", "Adam", choices=("Adam", "AdamW")),
            "lr": F("float", positive=True),
            "betas": F("betas", [0.9, 0.999]),
            "weight_decay": F("float", 0.0, min_value=0.0),
        },
        "scheduler": {
            "type": F("str", "CosineAnnealingLR", choices=("CosineAnnealingLR", "constant")),
            "eta_min": F("float", 0.0, min_value=0.0),
            # optional: a linear warm-up over the first iterations, then the cosine over the
            # rest (for a warm restart, whose fresh Adam state moves every weight by ~lr at first)
            "warmup_iter": F("int", _ABSENT, min_value=0),
        },
        "total_iter": F("int", positive=True),
        "loss": {
            "l1": F("float", 1.0, min_value=0.0),
            "fft": F("float", 0.1, min_value=0.0),
            # optional: weight of |mean(output) - mean(target)| per channel (interir.losses)
            "brightness": F("float", _ABSENT, min_value=0.0),
            # optional: weight of minus the per-sample PSNR in dB (interir.losses.neg_psnr)
            "psnr": F("float", _ABSENT, min_value=0.0),
            # optional: the loss on every early-exit decode, weighted (see stage_weights);
            # absent or null: the paper's loss on the output alone
            "deep_supervision": F("stage_weights", _ABSENT, nullable=True),
            # optional descent hinges (interir.losses.IterationHingeLoss; need deep_supervision):
            # weight of the penalty on a PSNR drop (dB) / a data-residual rise between exits
            "monotone": F("float", _ABSENT, min_value=0.0),
            "descent": F("float", _ABSENT, min_value=0.0),
        },
        "grad_clip": F("float", None, nullable=True, positive=True),
        # a weights folder to start from (a warm restart; tensors matched by name and shape)
        "init_weights": F("str", None, nullable=True),
        # init_weights from a standard-conv checkpoint into an explainable network: its kernels
        # become the ones that act under a uniform attention map (an approximation, opt-in)
        "init_standard_as_uniform": F("bool", False),
        "amp": F("str", "none", choices=("none", "bf16")),
        "compile": F("bool", False),
        # optional: an exponential moving average of the weights with this decay per iteration
        # (our option, not the paper's): validated beside the weights, kept as ema/ and ema-<iter>/
        "ema_decay": F("float", _ABSENT, min_value=0.0),
        # optional, with ema_decay and init_weights: a weights folder the moving average starts
        # from at a warm restart (a milestone's ema/), instead of the init_weights themselves
        "init_ema": F("str", _ABSENT),
    },
    "val": {
        "every": F("int", 1000, positive=True),
        "crop_border": F("int", 0, min_value=0),
        "y_channel": F("bool", False),
    },
    "logger": {
        "print_every": F("int", 100, positive=True),
        "tensorboard": F("bool", True),
        "csv": F("bool", True),
    },
    "checkpoint": {
        "every": F("int", 1000, positive=True),
        # weights (not the state) kept in <dir>/weights-<iter>/ every N iterations: the milestones
        # of a long run stay loadable after last/ has moved on; absent: none kept
        "keep_every": F("int", _ABSENT, positive=True),
        "dir": F("str"),
    },
}
del F

_NETWORK_VALUE_TYPES = (int, float, str, bool, type(None))


def _validate_section(schema: dict, data: Any, prefix: str) -> dict:
    where = prefix or "the config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InterIRError(f"{where}: expected a mapping of keys, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str) or key not in schema:
            known = ", ".join(schema)
            full = f"{prefix}.{key}" if prefix else str(key)
            raise InterIRError(f"{full}: unknown key (known keys{' in ' + prefix if prefix else ''}"
                               f": {known})")
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        full = f"{prefix}.{key}" if prefix else key
        if spec is None:  # free-form network section
            out[key] = _validate_network(data.get(key), full)
        elif isinstance(spec, dict):
            if key not in data and any(_has_required(spec)):
                raise InterIRError(f"{full}: missing section")
            out[key] = _validate_section(spec, data.get(key), full)
        elif key in data:
            out[key] = spec.check(full, data[key])
        elif spec.default is _ABSENT:
            continue
        elif spec.default is _REQUIRED:
            raise InterIRError(f"{full}: missing key")
        else:
            default = copy.deepcopy(spec.default)
            out[key] = spec.check(full, default) if default is not None else None
    return out


def _has_required(spec: dict):
    for v in spec.values():
        if isinstance(v, dict):
            yield from _has_required(v)
        elif v is not None:
            yield v.default is _REQUIRED


def _validate_network(data: Any, key: str) -> dict:
    if data is None:
        raise InterIRError(f"{key}: missing section (needs at least 'preset')")
    if not isinstance(data, dict):
        raise InterIRError(f"{key}: expected a mapping, got {type(data).__name__}")
    if "preset" not in data:
        raise InterIRError(f"{key}.preset: missing key")
    preset = data["preset"]
    if not isinstance(preset, str) or preset not in ("tiny", "paper"):
        raise InterIRError(f"{key}.preset: expected 'tiny' or 'paper', got {preset!r}")
    for k, v in data.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise InterIRError(f"{key}.{k}: not a valid option name")
        if not isinstance(v, _NETWORK_VALUE_TYPES):
            raise InterIRError(f"{key}.{k}: expected a number, string or boolean, got {v!r}")
    return dict(data)


def validate_config(raw: Any) -> dict:
    """Validate a parsed config mapping and return a new dict with every default filled in."""
    cfg = _validate_section(SCHEMA, raw, "")
    tr = cfg["datasets"]["train"]
    if tr["patch_size"] < 8:
        raise InterIRError(f"datasets.train.patch_size: must be >= 8, got {tr['patch_size']}")
    if tr.get("degrade_size", tr["patch_size"]) < tr["patch_size"]:
        raise InterIRError(f"datasets.train.degrade_size: must be >= patch_size "
                           f"({tr['patch_size']}), got {tr['degrade_size']}")
    loss = cfg["train"]["loss"]
    spec = loss.pop("deep_supervision", None)
    if spec is not None:  # resolved to n + 1 normalised weights
        loss["deep_supervision"] = stage_weights(spec, _n_blocks(cfg["network"]))
    for key in ("monotone", "descent"):
        if loss.get(key) and "deep_supervision" not in loss:
            raise InterIRError(f"train.loss.{key}: needs train.loss.deep_supervision (the early "
                               "exits it compares); use deep_supervision: last for the paper's loss")
    sched, total = cfg["train"]["scheduler"], cfg["train"]["total_iter"]
    if sched.get("warmup_iter") and sched["type"] != "CosineAnnealingLR":
        raise InterIRError("train.scheduler.warmup_iter: only with type CosineAnnealingLR")
    if sched.get("warmup_iter", 0) >= total:
        raise InterIRError(f"train.scheduler.warmup_iter: must be below train.total_iter ({total}), "
                           f"got {sched['warmup_iter']}")
    decay = cfg["train"].get("ema_decay")
    if decay is not None and not 0.0 < decay < 1.0:
        raise InterIRError(f"train.ema_decay: must be between 0 and 1 (e.g. 0.999), got {decay}")
    if cfg["train"].get("init_ema") and not (decay and cfg["train"]["init_weights"]):
        raise InterIRError("train.init_ema: needs train.ema_decay and train.init_weights (the moving "
                           "average starts from it at a warm restart)")
    return cfg


def _n_blocks(network: dict) -> int:
    from .model.interir import PRESETS

    n = network.get("n_blocks", PRESETS[network["preset"]]["n_blocks"])
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InterIRError(f"network.n_blocks: expected an integer >= 1, got {n!r}")
    return n


def load_config(path: str | os.PathLike) -> dict:
    """Read and validate a YAML training config (see module docstring for path rules)."""
    p = Path(path)
    text = read_text_file(p, "config file")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = " ".join(str(exc).split())
        raise InterIRError(f"{p}: invalid YAML: {msg}") from None
    if raw is None:
        raise InterIRError(f"{p}: the config file is empty")
    try:
        return validate_config(raw)
    except InterIRError as exc:
        raise InterIRError(f"{p}: {exc}") from None
