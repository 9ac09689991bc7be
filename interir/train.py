"""Training loop behind ``interir train --config FILE [--resume]``.

Data: every step draws a clean batch with ``CleanImageDataset.sample_batch(B, g)`` where ``g``
is a CPU generator seeded with :func:`step_seed` ``(seed, iteration, rank)``, moves it to the
device, and synthesises the degradation there (``sample_levels`` + ``degrade``) with a device
generator seeded the same way. A batch is therefore a pure function of (seed, iteration, rank):
resume is exact without any DataLoader state and the GPU is fed without worker processes.

Outputs in ``checkpoint.dir`` (rank 0 only):

* ``last/`` and ``best/`` (best = highest average validation PSNR): ``config.json`` +
  ``model.safetensors`` via :func:`interir.save_pretrained`, loadable with ``load_pretrained``;
* ``state.json`` + ``state-<iter>.safetensors``: the training state (model, optimizer,
  scheduler, RNG, iteration). The tensors file is written under a new name first and
  ``state.json`` (which names it) is then atomically replaced, so a kill at any moment leaves a
  consistent, readable pair. Both are written and read only by us (no pickle);
* with ``train.ema_decay``: ``ema/`` (the moving average of the weights, written with
  ``last/``) and, with ``checkpoint.keep_every``, ``ema-<iter>/`` beside ``weights-<iter>/``;
  the average is part of the training state and is validated beside the weights
  (``kind=val_ema`` rows); a warm restart starts it from ``train.init_ema`` when given (a
  milestone's ``ema/``), else from the restart's weights;
* ``log.csv`` (``kind=train`` rows: iter, loss, l1, fft, lr, time; ``kind=val`` rows: iter,
  combo, psnr, ssim, and the fractions of pairs whose early exits are monotone / whose data
  residual descends (monotone, descent); ``kind=val_stage`` rows: iter, combo, stage k = 0..n, psnr of the early-exit
  decode after iteration k, so a run shows whether every iteration improves the image) and
  ``tb/`` (TensorBoard).

Deep supervision (``train.loss.deep_supervision``, off by default and in the paper's recipe):
the step calls ``InterIR.stages`` and :class:`~interir.losses.DeepSupervisionLoss` weighs the
loss of every early exit; train rows then hold the weighted loss, l1 and fft. The descent hinges
(``train.loss.monotone`` / ``descent``, :class:`~interir.losses.IterationHingeLoss`) call
``InterIR.stages_and_residuals`` and add their penalties to the loss column only.

The pieces (in the spirit of BasicSR's model / logger / loop split): :class:`Runtime` (device,
DDP ranks), :class:`TrainLogger` (progress bar, log.csv, TensorBoard), :class:`Trainer` (set-up,
``resume``, ``train_step``, ``check_finite``, ``validate``, ``save``, ``run``).

Stopping: the first SIGINT (Ctrl-C) or SIGTERM lets the current iteration finish, saves the
training state there and ends the run (``Trainer.interrupted`` holds the signal; ``interir
train`` exits with 128 + its number), so ``--resume`` loses nothing; a second one stops at once.
With several DDP processes the signals keep their default action (the ranks could stop at
different iterations); ``--resume`` then continues from the last periodic checkpoint.

Multi-GPU: launch with ``torchrun --nproc_per_node N -m interir.cli train --config ...``.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

# Everything the loop needs is imported here, not inside functions: a run lasts hours and
# must not pick up a module edited in the working tree after it started (tests/test_train.py).
from .config import load_config
from .data.datasets import CleanImageDataset, discover_eval_sets
from .data.degrade import degrade, sample_levels
from .errors import InterIRError
from .fileio import atomic_write_text as _atomic_write_text  # tests patch it here
from .fileio import atomic_write_with, read_text_file
from .eval import MONOTONE_TOL_DB, decreasing, non_decreasing
from .losses import DeepSupervisionLoss, IterationHingeLoss, RestorationLoss
from .metrics import psnr, ssim
from .model import build_model, make_config
from .model.epblock import EXPLAIN_TYPES
from .model.interir import InterIR
from .model.reparam import (conv_type_factors, convert_adam_moments, convert_conv_type,
                            standard_as_uniform)
from .weights import load_pretrained, save_pretrained

__all__ = ["train", "Trainer", "TrainLogger", "Runtime", "WeightEMA", "validate", "step_seed",
           "save_training_state", "load_training_state", "branch_training_state",
           "read_exclude_list", "build_optimizer", "build_scheduler", "warmup_cosine", "make_batch"]

STATE_JSON = "state.json"
STATE_FORMAT = "interir-train-state-v1"
CSV_NAME = "log.csv"
CSV_FIELDS = ["kind", "iter", "loss", "l1", "fft", "lr", "time", "combo", "psnr", "ssim", "stage",
              "monotone", "descent"]


# --------------------------------------------------------------------------- small helpers
def step_seed(seed: int, iteration: int, rank: int = 0) -> int:
    """A 63-bit generator seed that is a pure function of (seed, iteration, rank)."""
    digest = hashlib.sha256(f"interir-train:{seed}:{iteration}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def read_exclude_list(path: str | os.PathLike) -> list[str]:
    """File names to hold out of training: one per line (``#`` comments allowed), or a
    ``make-testset`` ``manifest.csv`` (its ``source`` column). Only base names are kept."""
    p = Path(path)
    lines = read_text_file(p, "datasets.train.exclude_list file").splitlines()
    names: list[str] = []
    if p.suffix.lower() == ".csv" and lines:
        rows = list(csv.DictReader(lines))
        col = "source" if rows and "source" in rows[0] else ("file" if rows and "file" in rows[0]
                                                              else None)
        if col is None:
            raise InterIRError(f"datasets.train.exclude_list: {p} has no 'source' or 'file' "
                               "column")
        names = [r[col] for r in rows if r.get(col)]
    else:
        names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    return sorted({Path(n.strip()).name for n in names if n.strip()})


def _resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InterIRError("device: cuda requested but no CUDA GPU is available (use auto or cpu)")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def build_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    """Adam/AdamW from ``train.optimizer``."""
    o = cfg["train"]["optimizer"]
    cls = torch.optim.AdamW if o["type"] == "AdamW" else torch.optim.Adam
    return cls(params, lr=o["lr"], betas=tuple(o["betas"]), weight_decay=o["weight_decay"])


def warmup_cosine(lr: float, eta_min: float, warmup: int, total: int) -> Callable[[int], float]:
    """The lr factor at step ``it``: linear from lr/warmup to lr over ``warmup`` steps, then a
    cosine from lr to ``eta_min`` over the remaining ``total - warmup`` (closed form, so a resumed
    run computes the same factor from its step count alone)."""
    floor = eta_min / lr

    def factor(it: int) -> float:
        if it < warmup:
            return (it + 1) / warmup
        t = min(it - warmup, total - warmup) / max(total - warmup, 1)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    return factor


def build_scheduler(opt: torch.optim.Optimizer, cfg: dict):
    """CosineAnnealingLR over ``total_iter`` (stepped once per iteration), after a linear warm-up
    of ``scheduler.warmup_iter`` steps when the config sets one, or a constant lr."""
    s = cfg["train"]["scheduler"]
    if s["type"] == "constant":
        return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    total, warmup = cfg["train"]["total_iter"], int(s.get("warmup_iter") or 0)
    if warmup:  # validate_config keeps it below total_iter
        lr = cfg["train"]["optimizer"]["lr"]
        return torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(lr, s["eta_min"], warmup, total))
    # without a warm-up: the plain cosine, so the states of earlier runs resume as they were
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=s["eta_min"])


def make_batch(dataset, batch: int, combos, seed: int, iteration: int, rank: int,
               device: torch.device, clean: torch.Tensor | None = None,
               patch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(degraded, clean) on ``device`` for one step — a pure function of (seed, iter, rank).

    ``clean`` may be passed in if it was already sampled (prefetched) with the same seed.
    With ``patch_size`` smaller than the dataset's crops, the degradation is synthesised on the
    crops and each pair is then cut to a random ``patch_size`` window (``datasets.train.
    degrade_size``): the rain streaks, veils and haze depth then have the scale of a whole
    photo, not of a patch.
    """
    s = step_seed(seed, iteration, rank)
    if clean is None:
        clean = dataset.sample_batch(batch, torch.Generator().manual_seed(s))
    clean = clean.to(device, non_blocking=True)
    g = torch.Generator(device=device).manual_seed(s)
    haze, rain, noise, _ = sample_levels(batch, combos, generator=g, device=device)
    degraded = degrade(clean, haze, rain, noise, generator=g)
    size = clean.shape[-1]
    if patch_size is not None and patch_size < size:
        pos = torch.randint(size - patch_size + 1, (batch, 2),
                            generator=torch.Generator().manual_seed(s ^ 0x5EED)).tolist()
        cut = lambda x: torch.stack([x[j, :, t:t + patch_size, l:l + patch_size]  # noqa: E731
                                     for j, (t, l) in enumerate(pos)])
        degraded, clean = cut(degraded), cut(clean)
    return degraded, clean


def _sample_clean(dataset, batch: int, seed: int, iteration: int, rank: int, pin: bool):
    x = dataset.sample_batch(batch, torch.Generator().manual_seed(step_seed(seed, iteration, rank)))
    return x.pin_memory() if pin else x


# --------------------------------------------------------------------------- training state
def _flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{idx}.{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, extra in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(extra)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def save_training_state(directory: str | os.PathLike, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer, scheduler, iteration: int,
                        extra: dict | None = None, ema: torch.nn.Module | None = None) -> Path:
    """Write ``state-<iter>.safetensors`` then atomically point ``state.json`` at it. ``ema``:
    the moving average of the weights (``ema.<name>`` tensors), if the run keeps one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    opt_t, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_t)
    tensors["rng.cpu"] = torch.get_rng_state()
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for i in range(n_cuda):
        tensors[f"rng.cuda.{i}"] = torch.cuda.get_rng_state(i)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    name = f"state-{iteration:08d}.safetensors"
    atomic_write_with(directory / name, lambda tmp: save_file(
        tensors, str(tmp), metadata={"format": STATE_FORMAT, "iteration": str(iteration)}))
    np_state = np.random.get_state()
    meta = {
        "format": STATE_FORMAT,
        "iteration": int(iteration),
        "tensors_file": name,
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict(),
        "rng": {"python": _jsonable(random.getstate()),
                "numpy": [np_state[0], np_state[1].tolist(), *map(_jsonable, np_state[2:])]},
        **(extra or {}),
    }
    _atomic_write_text(directory / STATE_JSON, json.dumps(meta, indent=1) + "\n")
    for old in directory.glob("state-*.safetensors"):  # superseded tensor files
        if old.name != name:
            try:
                old.unlink()
            except OSError:
                pass
    return directory / STATE_JSON


def _jsonable(x):
    if isinstance(x, tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, list) else x


def load_training_state(directory: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read ``state.json`` and the tensors it names; raise InterIRError if unusable."""
    directory = Path(directory)
    path = directory / STATE_JSON
    if not path.is_file():
        raise InterIRError(f"nothing to resume: {path} not found")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InterIRError(f"{path}: unreadable training state ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise InterIRError(f"{path}: not an InterIR training state")
    tpath = directory / str(meta.get("tensors_file", ""))
    if not tpath.is_file():
        raise InterIRError(f"{tpath}: training-state tensors missing")
    try:
        tensors = load_file(str(tpath))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InterIRError(f"{tpath}: unreadable training state ({exc})") from None
    return meta, tensors


def branch_training_state(src: str | os.PathLike, dest: str | os.PathLike, conv_type: str,
                          name: str | None = None) -> Path:
    """Copy the training state of run folder ``src`` into a new run folder ``dest`` with the
    explainable kernels moved to ``conv_type`` (``explain`` <-> ``explain_unit``, exact: the
    same outputs; Adam's moments converted with them), the schedule, RNG and log kept, and the
    best-so-far reset. ``interir train --resume`` on ``dest`` with a config whose network has
    that conv_type continues from the same iteration and batches: an A/B of the parametrisation."""
    src, dest = Path(src), Path(dest)
    if (dest / STATE_JSON).exists():
        raise InterIRError(f"{dest} already holds a training run")
    meta, tensors = load_training_state(src)
    network = dict(meta.get("network") or {})
    try:
        config = make_config(**network)
        factors = conv_type_factors(config, conv_type)
    except (TypeError, ValueError) as exc:
        raise InterIRError(f"{src}: {exc}") from None
    if not factors:
        raise InterIRError(f"{src}: already conv_type {conv_type}")
    with torch.device("meta"):
        order = [n for n, _ in InterIR(config).named_parameters()]   # the optimiser's indices
    out = dict(tensors)
    for pname, factor in factors.items():
        out[f"model.{pname}"] = tensors[f"model.{pname}"] * factor
        if f"ema.{pname}" in tensors:   # the moving average is a model of the same kind
            out[f"ema.{pname}"] = tensors[f"ema.{pname}"] * factor
        idx = order.index(pname)
        moments = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{idx}.")}
        out.update({f"opt.{idx}.{k}": v for k, v in convert_adam_moments(moments, factor).items()})
    it = int(meta["iteration"])
    dest.mkdir(parents=True, exist_ok=True)
    tname = f"state-{it:08d}.safetensors"
    save_file({k: v.contiguous() for k, v in out.items()}, str(dest / tname),
              metadata={"format": STATE_FORMAT, "iteration": str(it)})
    meta.update(tensors_file=tname, network={**network, "conv_type": conv_type},
                best_psnr=None, best_iter=0)
    if name:
        meta["name"] = name
    log = src / "log.csv"
    if log.is_file():   # the history up to the branch point
        with open(log, newline="") as f:
            rows = list(csv.reader(f))
        keep = [r for r in rows[1:] if r and r[1].isdigit() and int(r[1]) <= it]
        with open(dest / "log.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows[:1] + keep)
    _atomic_write_text(dest / STATE_JSON, json.dumps(meta, indent=1) + "\n")
    return dest / STATE_JSON


def _restore_rng(meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.cpu"])
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"rng.cuda.{i}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng.cuda.{i}"], i)
    random.setstate(_tuplify(meta["rng"]["python"]))
    n = meta["rng"]["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))


# --------------------------------------------------------------------------- logging
class _CsvLog:
    """``log.csv``, appended and flushed row by row. ``keep_upto``: first drop the rows past that
    iteration (a killed run's rows after its last checkpoint; 0 starts a fresh log)."""

    def __init__(self, path: Path, keep_upto: int | None):
        self.path = path
        if keep_upto is not None and path.is_file():
            with open(path, newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("iter", "").isdigit()
                        and int(r["iter"]) <= keep_upto]
            buf = [",".join(CSV_FIELDS)]
            for r in rows:
                buf.append(",".join(r.get(f, "") or "" for f in CSV_FIELDS))
            _atomic_write_text(path, "\n".join(buf) + "\n")
        new = not path.is_file()
        self.fh = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.fh, fieldnames=CSV_FIELDS)
        if new:
            self.writer.writeheader()
            self.fh.flush()

    def row(self, **kw) -> None:
        self.writer.writerow({k: ("" if v is None else v) for k, v in kw.items()})
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _fmt(x: float) -> str:
    return repr(float(x))  # full precision, round-trips exactly


class TrainLogger:
    """What a run records (rank 0 only; other ranks get a silent logger): the progress bar,
    ``log.csv`` rows and TensorBoard scalars."""

    def __init__(self, cfg: dict, ckpt_dir: Path, start_iter: int, resume: bool, is_main: bool):
        from tqdm import tqdm

        self.csv: _CsvLog | None = None
        self.tb = None
        self.bar = tqdm(total=cfg["train"]["total_iter"], initial=start_iter, disable=not is_main,
                        desc=cfg["name"], dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
        if not is_main:
            return
        path = ckpt_dir / CSV_NAME
        if cfg["logger"]["csv"]:
            self.csv = _CsvLog(path, keep_upto=start_iter if resume else 0)
        elif not resume and path.exists():
            path.unlink()
        if cfg["logger"]["tensorboard"]:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise InterIRError(f"logger.tensorboard: tensorboard is not installed ({exc}); "
                                   "set it to false") from None
            self.tb = SummaryWriter(log_dir=str(ckpt_dir / "tb"),
                                    purge_step=start_iter + 1 if resume else None)

    def train(self, it: int, means: list[float], lr: float, elapsed: float) -> None:
        """One ``kind=train`` row: mean loss, l1, fft since the previous row."""
        self.bar.set_postfix(loss=f"{means[0]:.4f}", lr=f"{lr:.2e}", refresh=False)
        if self.csv:
            self.csv.row(kind="train", iter=it, loss=_fmt(means[0]), l1=_fmt(means[1]),
                         fft=_fmt(means[2]), lr=_fmt(lr), time=f"{elapsed:.3f}")
        if self.tb:
            for k, v in zip(("loss", "l1", "fft"), means):
                self.tb.add_scalar(f"train/{k}", v, it)
            self.tb.add_scalar("train/lr", lr, it)

    def val(self, it: int, val: dict[str, dict], elapsed: float, kind: str = "val") -> None:
        """``kind=val`` rows (psnr, ssim per combo and ``average``), then ``kind=val_stage`` rows
        (the early-exit PSNR of every iteration k, per combo and ``average``). ``kind="val_ema"``:
        the moving average of the weights, one ``val_ema`` row per combo (TensorBoard
        ``val_ema_psnr/``), no stage rows."""
        if kind != "val":
            for combo, r in val.items():
                if self.csv:
                    self.csv.row(kind=kind, iter=it, combo=combo, psnr=_fmt(r["psnr"]),
                                 ssim=_fmt(r["ssim"]), time=f"{elapsed:.3f}")
                if self.tb:
                    self.tb.add_scalar(f"{kind}_psnr/{combo}", r["psnr"], it)
            return
        for combo, r in val.items():
            if self.csv:
                self.csv.row(kind="val", iter=it, combo=combo, psnr=_fmt(r["psnr"]),
                             ssim=_fmt(r["ssim"]), time=f"{elapsed:.3f}",
                             **{k: _fmt(r[k]) for k in ("monotone", "descent")
                                if r.get(k) is not None})
            if self.tb:
                self.tb.add_scalar(f"val_psnr/{combo}", r["psnr"], it)
                self.tb.add_scalar(f"val_ssim/{combo}", r["ssim"], it)
                if combo == "average" and r.get("monotone") is not None:
                    self.tb.add_scalar("val_iterations/monotone", r["monotone"], it)
                    self.tb.add_scalar("val_iterations/descent", r["descent"], it)
        for combo, r in val.items():
            for k, p in enumerate(r["stage_psnr"]):
                if self.csv:
                    self.csv.row(kind="val_stage", iter=it, combo=combo, stage=k, psnr=_fmt(p),
                                 time=f"{elapsed:.3f}")
                if self.tb and combo == "average":
                    self.tb.add_scalar(f"val_stage_psnr/{k}", p, it)

    def flush(self) -> None:
        if self.tb:
            self.tb.flush()

    def close(self) -> None:
        self.bar.close()
        if self.csv:
            self.csv.close()
        if self.tb:
            self.tb.close()


# --------------------------------------------------------------------------- validation
def _load_val_sets(root: str, max_images: int | None) -> dict[str, list]:
    if not Path(root).is_dir():
        raise InterIRError(f"datasets.val.root: folder not found: {root}")
    sets = discover_eval_sets(root)
    if not sets:
        raise InterIRError(f"datasets.val.root: no evaluation data in {root} (expected "
                           "<combo>/input + <combo>/target folders, see interir make-testset)")
    out: dict[str, list] = {}
    for combo, ds in sets.items():
        items = []
        for i in range(len(ds)):
            if max_images is not None and i >= max_images:
                break
            inp, tgt, _name = ds[i]
            items.append((inp, tgt))
        if items:
            out[combo] = items
    if not out:
        raise InterIRError(f"datasets.val.root: no readable image pairs in {root}")
    return out


def _mean(values) -> float:
    return float(np.mean(values))


@torch.no_grad()
def validate(model: torch.nn.Module, val_sets: dict[str, list], device: torch.device,
             crop_border: int = 0, y_channel: bool = False) -> dict[str, dict[str, Any]]:
    """PSNR/SSIM per combo (model output clamped to [0,1], float32) plus ``average`` (mean over
    combos). ``stage_psnr``: the PSNR of each early-exit decode k = 0..n (``model.stages``; its
    last entry is ``psnr``), averaged the same way; a model without ``stages`` has one stage.
    ``monotone`` / ``descent``: the fraction of pairs whose early-exit PSNR never drops by more
    than the evaluation's tolerance / whose relative data residual falls at every iteration (as
    ``interir eval --iterations`` counts them; None for a model without the unfolding)."""
    unfolds = hasattr(model, "stages_and_residuals")
    run = model.stages_and_residuals if unfolds else (lambda x: ([model(x)], None))
    was_training = model.training
    model.eval()
    res: dict[str, dict[str, Any]] = {}
    try:
        for combo, items in val_sets.items():
            per_stage, ss, mono, desc = [], [], [], []
            for inp, tgt in items:
                outs, resid = run(inp.unsqueeze(0).to(device))
                outs = [o.float().clamp(0, 1)[0].cpu() for o in outs]
                per_stage.append([psnr(o, tgt, crop_border=crop_border, y_channel=y_channel)
                                  for o in outs])
                ss.append(ssim(outs[-1], tgt, crop_border=crop_border, y_channel=y_channel))
                mono.append(non_decreasing(per_stage[-1], MONOTONE_TOL_DB))
                if resid is not None:
                    desc.append(decreasing(resid[0].tolist()))
            stage_psnr = [_mean(col) for col in zip(*per_stage)]
            res[combo] = {"psnr": _mean([p[-1] for p in per_stage]), "ssim": _mean(ss),
                          "n": len(ss), "stage_psnr": stage_psnr,
                          "monotone": _mean(mono) if unfolds else None,
                          "descent": _mean(desc) if unfolds else None}
    finally:
        model.train(was_training)
    combos = list(res.values())
    res["average"] = {"psnr": _mean([r["psnr"] for r in combos]),
                      "ssim": _mean([r["ssim"] for r in combos]),
                      "n": int(sum(r["n"] for r in combos)),
                      "stage_psnr": [_mean(col) for col in zip(*(r["stage_psnr"] for r in combos))],
                      "monotone": _mean([r["monotone"] for r in combos]) if unfolds else None,
                      "descent": _mean([r["descent"] for r in combos]) if unfolds else None}
    return res


# --------------------------------------------------------------------------- runtime
def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return world, rank, local


@dataclass
class Runtime:
    """Where this process trains: device, and its place among ``world`` DDP processes."""

    device: torch.device
    world: int = 1
    rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device_name: str) -> "Runtime":
        """Read torchrun's environment, pick the device, join the process group if needed."""
        world, rank, local_rank = _dist_env()
        device = _resolve_device(device_name, local_rank)
        if world > 1:
            import torch.distributed as dist
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")
        return cls(device, world, rank)

    def max_over_ranks(self, x: torch.Tensor) -> torch.Tensor:
        """The elementwise maximum of ``x`` over all ranks (``x`` itself when alone)."""
        x = x.clone()
        if self.distributed:
            import torch.distributed as dist
            dist.all_reduce(x, op=dist.ReduceOp.MAX)
        return x

    def stop(self) -> None:
        if self.distributed:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()


class _EarlyExits(torch.nn.Module):
    """``forward`` = ``model.stages`` (or ``model.stages_and_residuals`` for the descent hinges):
    lets DDP / torch.compile wrap the deep-supervision forward (DDP synchronises gradients only
    for calls through its own ``forward``)."""

    def __init__(self, model: torch.nn.Module, residuals: bool = False):
        super().__init__()
        self.model, self.residuals = model, residuals

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | tuple[list[torch.Tensor], torch.Tensor]:
        return self.model.stages_and_residuals(x) if self.residuals else self.model.stages(x)


class _LossMeter:
    """Running sums of (loss, l1, fft) between log rows, kept on the device (no sync per step),
    and the first iteration whose loss was not finite."""

    def __init__(self, device: torch.device):
        self.zero = torch.zeros((), device=device)
        self.sums = torch.zeros(3, device=device)
        self.count = 0
        self.bad_iter = torch.zeros((), dtype=torch.long, device=device)

    def add(self, it: int, values: torch.Tensor) -> None:
        finite = torch.isfinite(values).all()
        self.bad_iter = torch.where((self.bad_iter == 0) & ~finite,
                                    torch.full_like(self.bad_iter, it), self.bad_iter)
        self.sums += torch.where(finite, values, self.zero)
        self.count += 1

    def pop_means(self) -> list[float]:
        means = (self.sums / max(self.count, 1)).tolist()
        self.sums.zero_()
        self.count = 0
        return means


class _StopOnSignal:
    """While active, the first SIGINT/SIGTERM only sets :attr:`signum` (the loop saves the state
    and stops after the current iteration); a second one raises KeyboardInterrupt. Inactive off
    the main thread, where Python cannot install handlers."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, active: bool = True):
        self.active = active and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "_StopOnSignal":
        if self.active:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# --------------------------------------------------------------------------- the trainer
class WeightEMA:
    """An exponential moving average of a model's weights (``train.ema_decay``; our option, not
    the paper's). After every optimiser step each floating tensor of the average moves towards
    the model's by ``1 - decay`` (a span of about ``1 / (1 - decay)`` iterations); other tensors
    are copied. ``module`` is a frozen copy of the model holding the average: it is validated,
    saved and loaded like the model itself."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise InterIRError(f"train.ema_decay: must be between 0 and 1, got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One step of the average towards ``model``'s current weights."""
        src, dst = model.state_dict(), self.module.state_dict()
        floats = [k for k, v in dst.items() if v.is_floating_point()]
        torch._foreach_lerp_([dst[k] for k in floats], [src[k] for k in floats], 1.0 - self.decay)
        for k, v in dst.items():
            if not v.is_floating_point():
                v.copy_(src[k])


class Trainer:
    """One training run: ``Trainer(cfg, resume=...).run()``. The steps, in order: set-up
    (runtime, data, model, optimiser, :meth:`resume`, wrappers, loss, logger), then per
    iteration :meth:`train_step`, :meth:`check_finite`, :meth:`log_train`, :meth:`validate`
    and :meth:`save`."""

    def __init__(self, cfg: dict, resume: bool = False, log: Callable[[str], None] | None = None,
                 stop_at: int | None = None):
        self.cfg, self.tcfg = cfg, cfg["train"]
        self.interrupted: int | None = None  # the signal that stopped run() early, if any
        self.pool: ThreadPoolExecutor | None = None
        self.logger: TrainLogger | None = None
        self.rt = Runtime.start(cfg["device"])
        try:
            self._setup(resume, log, stop_at)
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------------- set-up
    def _setup(self, resume: bool, log: Callable[[str], None] | None, stop_at: int | None) -> None:
        from tqdm import tqdm

        cfg = self.cfg
        self.say = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
        if not self.rt.is_main:
            self.say = lambda msg: None  # noqa: E731
        self.seed, self.total = cfg["seed"], self.tcfg["total_iter"]
        if stop_at is not None and (not isinstance(stop_at, int) or stop_at < 1):
            raise InterIRError(f"stop_at must be a positive integer, got {stop_at!r}")
        self.end = self.total if stop_at is None else min(self.total, stop_at)
        self.ckpt_dir = Path(cfg["checkpoint"]["dir"])
        self._prepare_dir(resume)
        self._build_data()
        self._build_model()
        self.start_iter, self.best_psnr, self.best_iter, self.elapsed0 = 0, -math.inf, 0, 0.0
        self.ema: WeightEMA | None = None
        ema_tensors: dict[str, torch.Tensor] = {}
        ema_from = f"{self.ckpt_dir / STATE_JSON}: its moving average of the weights"
        if resume:
            ema_tensors = self.resume()
        elif self.tcfg["init_weights"]:
            self.warm_start(self.tcfg["init_weights"])
            if self.tcfg.get("init_ema"):
                ema_from = f"train.init_ema: {self.tcfg['init_ema']}"
                ema_tensors = self._ema_weights(self.tcfg["init_ema"])
        if self.tcfg.get("ema_decay"):
            self._start_ema(ema_tensors, ema_from)
        self.last_ckpt = self.start_iter
        self.net = self._wrap_model()
        self.loss_fn = self._build_loss()
        self.amp = (torch.autocast(device_type=self.rt.device.type, dtype=torch.bfloat16)
                    if self.tcfg["amp"] == "bf16" else nullcontext())
        if self.tcfg["amp"] == "bf16" and self.rt.device.type != "cuda":
            self.say("note: train.amp bf16 on CPU uses CPU autocast (slow); use amp: none on CPU")
        self.logger = TrainLogger(cfg, self.ckpt_dir, self.start_iter, resume, self.rt.is_main)
        self.meter = _LossMeter(self.rt.device)

    def _prepare_dir(self, resume: bool) -> None:
        if not self.rt.is_main:
            return
        if not resume and (self.ckpt_dir / STATE_JSON).exists():
            raise InterIRError(f"checkpoint.dir {self.ckpt_dir} already holds a training run; use "
                               "--resume to continue it or choose another checkpoint.dir")
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.ckpt_dir.glob(".state-*.tmp-*"):  # partial writes of a killed run
            stale.unlink(missing_ok=True)

    def _build_data(self) -> None:
        dcfg, vcfg = self.cfg["datasets"]["train"], self.cfg["datasets"]["val"]
        root = Path(dcfg["root"])
        if not root.is_dir():
            raise InterIRError(f"datasets.train.root: folder not found: {root}")
        exclude = read_exclude_list(dcfg["exclude_list"]) if dcfg["exclude_list"] else None
        # with degrade_size the dataset's crops are that large and make_batch cuts the patches
        self.patch = dcfg["patch_size"]
        self.dataset = CleanImageDataset(root, patch_size=dcfg.get("degrade_size") or self.patch,
                                         augment=dcfg["augment"], exclude=exclude)
        self.combos, self.batch = list(dcfg["combos"]), dcfg["batch_size"]
        self.val_enabled = bool(vcfg["root"])
        self.val_sets = (_load_val_sets(vcfg["root"], vcfg["max_images"])
                         if self.rt.is_main and vcfg["root"] else None)

    def _build_model(self) -> None:
        torch.manual_seed(self.seed)
        try:
            model = build_model(**self.cfg["network"])
        except (TypeError, ValueError) as exc:
            raise InterIRError(f"network: {exc}") from None
        self.model = model.to(self.rt.device).train()
        self.optimizer = build_optimizer(self.model.parameters(), self.cfg)
        self.scheduler = build_scheduler(self.optimizer, self.cfg)

    def resume(self) -> dict[str, torch.Tensor]:
        """Restore model, optimiser, scheduler, RNG, iteration, best and elapsed time; returns
        the state's moving average of the weights (``ema.*`` tensors; empty if it has none)."""
        meta, tensors = load_training_state(self.ckpt_dir)
        network = self.cfg["network"]
        if meta.get("network") != network:
            raise InterIRError(f"cannot resume: network in the config ({network}) differs "
                               f"from the checkpoint's ({meta.get('network')})")
        try:
            self.model.load_state_dict(
                {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
            self.optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
            self.scheduler.load_state_dict(meta["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise InterIRError(f"{self.ckpt_dir / STATE_JSON}: does not match this config "
                               f"({exc})") from None
        _restore_rng(meta, tensors)
        self.start_iter = int(meta["iteration"])
        self.best_psnr = float(meta.get("best_psnr") or -math.inf)
        self.best_iter = int(meta.get("best_iter", 0))
        self.elapsed0 = float(meta.get("elapsed", 0.0))
        self._recover_best()
        self.say(f"resuming {self.cfg['name']} from iteration {self.start_iter} in {self.ckpt_dir}")
        return {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}

    def _ema_weights(self, weights_dir: str) -> dict[str, torch.Tensor]:
        """``train.init_ema``: the tensors of a weights folder (safetensors only) for the moving
        average to start from; it must be this network, with the same kind of convolution."""
        try:
            pretrained = load_pretrained(weights_dir)
        except InterIRError as exc:
            raise InterIRError(f"train.init_ema: {exc}") from None
        if pretrained.config["conv_type"] != self.model.config["conv_type"]:
            raise InterIRError(f"train.init_ema: {weights_dir}: conv_type {pretrained.config['conv_type']}, "
                               f"this network's is {self.model.config['conv_type']}")
        self.say(f"the moving average of the weights starts from {weights_dir}")
        return pretrained.state_dict()

    def _start_ema(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """The moving average (``train.ema_decay``): the resumed one, or ``train.init_ema``'s at a
        warm restart, else the current weights."""
        self.ema = WeightEMA(self.model, self.tcfg["ema_decay"])
        if tensors:
            try:
                self.ema.module.load_state_dict(tensors, strict=True)
            except RuntimeError as exc:
                raise InterIRError(f"{source} does not match this network "
                                   f"({str(exc).splitlines()[0]})") from None
        elif self.start_iter:
            self.say(f"train.ema_decay: the moving average of the weights starts at iteration "
                     f"{self.start_iter} (the resumed state had none)")

    def warm_start(self, weights_dir: str) -> None:
        """Start from a trained checkpoint (``train.init_weights``, safetensors only): every
        tensor whose name and shape match is copied; the others (e.g. IPBlocks beyond the
        checkpoint's n, or a learned Norm gain it did not have) keep their fresh initialisation.
        The optimiser and schedule start anew: a warm restart."""
        pretrained = load_pretrained(weights_dir)
        source = pretrained.state_dict()
        conv_type = self.model.config["conv_type"]
        old_type = pretrained.config["conv_type"]
        if (old_type == "standard" and conv_type in EXPLAIN_TYPES
                and self.tcfg["init_standard_as_uniform"]):
            source, _ = standard_as_uniform(source, pretrained.config, conv_type)
            self.say(f"warm start: the standard kernels of {weights_dir} taken as {conv_type} kernels "
                     "under uniform attention (train.init_standard_as_uniform; approximate)")
        elif old_type != conv_type:   # explain <-> explain_unit: exact
            try:
                source, _ = convert_conv_type(source, pretrained.config, conv_type)
            except ValueError as exc:
                hint = (" (train.init_standard_as_uniform: true starts the explainable kernels from "
                        "the standard ones under uniform attention, approximately)"
                        if old_type == "standard" and conv_type in EXPLAIN_TYPES else "")
                raise InterIRError(f"train.init_weights: {weights_dir}: {exc}{hint}") from None
            self.say(f"warm start: the kernels of {weights_dir} converted from conv_type "
                     f"{old_type} to {conv_type} (the same outputs)")
        target = self.model.state_dict()
        bad = [k for k in source if k in target and source[k].shape != target[k].shape]
        if bad:
            raise InterIRError(f"train.init_weights: {weights_dir}: {len(bad)} tensors have other shapes "
                               f"than this network's (e.g. {bad[0]}: {tuple(source[bad[0]].shape)} vs "
                               f"{tuple(target[bad[0]].shape)})")
        shared = {k: v for k, v in source.items() if k in target}
        if not shared:
            raise InterIRError(f"train.init_weights: {weights_dir}: no tensor matches this network")
        self.model.load_state_dict(shared, strict=False)
        self.say(f"warm start from {weights_dir}: {len(shared)} of {len(target)} tensors loaded, "
                 f"{len(target) - len(shared)} freshly initialised, {len(source) - len(shared)} unused")

    def _recover_best(self) -> None:
        """best/ may be newer than state.json (a kill between the two saves): trust it."""
        best_json = self.ckpt_dir / "best" / "metrics.json"
        if not best_json.is_file():
            return
        try:
            b = json.loads(best_json.read_text())
            if float(b["average"]["psnr"]) > self.best_psnr:
                self.best_psnr, self.best_iter = float(b["average"]["psnr"]), int(b["iter"])
        except (ValueError, KeyError, TypeError, OSError):
            pass

    def _wrap_model(self) -> torch.nn.Module:
        """What the training step calls: the model (its early exits with deep supervision),
        wrapped in DDP and torch.compile when configured."""
        net: torch.nn.Module = self.model
        if "deep_supervision" in self.tcfg["loss"]:
            net = _EarlyExits(net, residuals=self._hinged())
        if self.rt.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP
            dev = self.rt.device
            net = DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None)
        if self.tcfg["compile"]:
            net = torch.compile(net)
        return net

    def _build_loss(self) -> torch.nn.Module:
        lc = self.tcfg["loss"]
        loss = RestorationLoss(l1=lc["l1"], fft=lc["fft"],  # Eq. 2 (+ the brightness / PSNR options)
                               brightness=lc.get("brightness", 0.0), psnr=lc.get("psnr", 0.0))
        if "deep_supervision" in lc:
            loss = DeepSupervisionLoss(loss, lc["deep_supervision"])
        if self._hinged():
            loss = IterationHingeLoss(loss, lc.get("monotone", 0.0), lc.get("descent", 0.0))
        return loss

    def _hinged(self) -> bool:
        """Whether the loss has a descent hinge (then the step also returns the residuals)."""
        lc = self.tcfg["loss"]
        return bool(lc.get("monotone") or lc.get("descent"))

    # ----------------------------------------------------------------------- one iteration
    def start_prefetch(self, it: int) -> None:
        """Sample iteration ``it``'s clean batch on a thread, one ahead of the step (GPU runs;
        it is seeded per iteration, so results do not depend on it)."""
        self.pool = ThreadPoolExecutor(max_workers=1)
        self._pin = self.rt.device.type == "cuda"  # pinned host memory needs CUDA
        self._prefetched = (self.pool.submit(_sample_clean, self.dataset, self.batch, self.seed,
                                             it, self.rt.rank, self._pin)
                            if it <= self.end else None)

    def _next_clean(self, it: int) -> torch.Tensor | None:
        """The prefetched clean batch of ``it`` (GPU runs), queueing the next one; else None."""
        if self.pool is None:
            return None
        clean = self._prefetched.result()
        self._prefetched = (self.pool.submit(_sample_clean, self.dataset, self.batch, self.seed,
                                             it + 1, self.rt.rank, self._pin)
                            if it < self.end else None)
        return clean

    def train_step(self, it: int) -> torch.Tensor:
        """Forward, loss, backward, (clip,) optimiser and scheduler step for iteration ``it``.
        Returns the detached (loss, l1, fft); sets ``self.lr`` to the step's learning rate."""
        degraded, clean = make_batch(self.dataset, self.batch, self.combos, self.seed, it,
                                     self.rt.rank, self.rt.device, self._next_clean(it),
                                     patch_size=self.patch)
        self.lr = self.optimizer.param_groups[0]["lr"]
        with self.amp:
            out = self.net(degraded)
        loss, l1, fft = self.loss_fn(out, clean)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.tcfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tcfg["grad_clip"])
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return torch.stack([loss.detach(), l1, fft])

    def check_finite(self) -> None:
        """Stop with a clear error if any rank's loss was NaN/inf (a sync point on CUDA)."""
        bad = int(self.rt.max_over_ranks(self.meter.bad_iter))
        if bad:
            kept = (f"the last good checkpoint (iteration {self.last_ckpt}) in {self.ckpt_dir} "
                    "is kept" if self.last_ckpt else "no checkpoint had been written yet")
            raise InterIRError(
                f"loss became NaN/inf at iteration {bad}; stopped ({kept}); lower "
                "train.optimizer.lr or set train.grad_clip, then --resume")

    def log_train(self, it: int) -> None:
        self.logger.train(it, self.meter.pop_means(), self.lr, self._elapsed())

    def validate(self, it: int) -> None:
        """Validate (rank 0), log it, and keep the model in ``best/`` if it is the best yet."""
        vc = self.cfg["val"]
        val = validate(self.model, self.val_sets, self.rt.device, vc["crop_border"],
                       vc["y_channel"])  # the module-level function
        avg = val["average"]
        self.say(f"[{self.cfg['name']}] iter {it}: val PSNR {avg['psnr']:.2f} dB, "
                 f"SSIM {avg['ssim']:.4f}" + ("" if avg["psnr"] <= self.best_psnr else " (best)"))
        self.logger.val(it, val, self._elapsed())
        if avg["psnr"] > self.best_psnr:
            self.best_psnr, self.best_iter = avg["psnr"], it
            self._save_best(it, val)
        if self.ema is not None:   # the average beside the weights (best/ follows the weights)
            val = validate(self.ema.module, self.val_sets, self.rt.device, vc["crop_border"],
                           vc["y_channel"])
            self.say(f"[{self.cfg['name']}] iter {it}: moving average: val PSNR "
                     f"{val['average']['psnr']:.2f} dB, SSIM {val['average']['ssim']:.4f}")
            self.logger.val(it, val, self._elapsed(), kind="val_ema")

    def _save_best(self, it: int, val: dict) -> None:
        save_pretrained(self.model, self.ckpt_dir / "best", extra={
            "train": {"name": self.cfg["name"], "iter": it, "val": val["average"]}})
        _atomic_write_text(self.ckpt_dir / "best" / "metrics.json",
                           json.dumps({"iter": it, **val}, indent=1) + "\n")

    def save(self, it: int) -> None:
        """``last/`` weights, then the training state (``state.json`` last, atomically)."""
        self._save_weights(self.ckpt_dir / "last", it)
        if self.ema is not None:
            self._save_weights(self.ckpt_dir / "ema", it, self.ema.module)
        save_training_state(self.ckpt_dir, self.model, self.optimizer, self.scheduler, it, extra={
            "network": self.cfg["network"],
            "best_psnr": self.best_psnr if self.best_iter else None,
            "best_iter": self.best_iter, "elapsed": self._elapsed(), "name": self.cfg["name"],
            "world_size": self.rt.world}, ema=self.ema.module if self.ema is not None else None)
        self.last_ckpt = it
        self.logger.flush()

    def keep_weights(self, it: int) -> Path:
        """The weights at ``it`` in ``weights-<it>/`` (``checkpoint.keep_every``), loadable like
        ``last/``; a later ``last/`` does not replace them. With a moving average, it is kept
        in ``ema-<it>/`` too."""
        if self.ema is not None:
            self._save_weights(self.ckpt_dir / f"ema-{it:08d}", it, self.ema.module)
        return self._save_weights(self.ckpt_dir / f"weights-{it:08d}", it)

    def _save_weights(self, folder: Path, it: int, model: torch.nn.Module | None = None) -> Path:
        train = {"name": self.cfg["name"], "iter": it}
        if model is not None:
            train["ema_decay"] = self.tcfg["ema_decay"]
        return save_pretrained(self.model if model is None else model, folder, extra={"train": train})

    def _elapsed(self) -> float:
        return self.elapsed0 + time.time() - self.t0

    # ----------------------------------------------------------------------- the loop
    def run(self) -> torch.nn.Module:
        """Train from ``start_iter + 1`` to the end (or ``stop_at``); returns the raw model."""
        cfg = self.cfg
        every = {"log": cfg["logger"]["print_every"], "val": cfg["val"]["every"],
                 "ckpt": cfg["checkpoint"]["every"]}
        if cfg["checkpoint"].get("keep_every"):
            every["keep"] = cfg["checkpoint"]["keep_every"]
        on_cuda = self.rt.device.type == "cuda"
        if on_cuda:
            self.start_prefetch(self.start_iter + 1)
        self.t0 = time.time()
        with _StopOnSignal(active=self.rt.world == 1) as stop:
            try:
                for it in range(self.start_iter + 1, self.end + 1):
                    self.meter.add(it, self.train_step(it))
                    self.logger.bar.update(1)
                    due = {k: it % n == 0 or it == self.end for k, n in every.items()}
                    due["val"] = due["val"] and self.val_enabled
                    if any(due.values()) or not on_cuda:  # the same on every rank
                        self.check_finite()
                    if not self.rt.is_main:
                        continue
                    if due["log"]:
                        self.log_train(it)
                    if due["val"] and self.val_sets is not None:
                        self.validate(it)
                    if due["ckpt"]:
                        self.save(it)
                    if due.get("keep"):
                        self.keep_weights(it)
                    if stop.signum is not None and it < self.end:
                        self._stop_early(it, stop.signum)
                        break
            finally:
                self.close()
        if self.interrupted is None:
            self._report_done()
        return self.model

    def _stop_early(self, it: int, signum: int) -> None:
        """Save the state at ``it`` (unless just saved) after a stop signal, and say so."""
        if self.last_ckpt != it:
            self.save(it)
        self.interrupted = signum
        self.say(f"[{self.cfg['name']}] stopped by {signal.Signals(signum).name} at iteration "
                 f"{it} of {self.total}: state saved in {self.ckpt_dir}; continue with --resume")

    def _report_done(self) -> None:
        if not self.rt.is_main or self.start_iter >= self.end:
            return
        done, n = time.time() - self.t0, self.end - self.start_iter
        stopped = "done" if self.end == self.total else f"stopped at {self.end} of {self.total}"
        msg = (f"[{self.cfg['name']}] {stopped}: {n} iterations in {done:.1f} s "
               f"({n / max(done, 1e-9):.2f} it/s); weights in {self.ckpt_dir / 'last'}")
        if self.best_iter:
            msg += (f", best (val PSNR {self.best_psnr:.2f} dB @ {self.best_iter}) in "
                    f"{self.ckpt_dir / 'best'}")
        self.say(msg)

    def close(self) -> None:
        """Stop the prefetch thread, close the logs, leave the process group."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        self.rt.stop()


def train(cfg: dict | str | os.PathLike, resume: bool = False,
          log: Callable[[str], None] | None = None, stop_at: int | None = None) -> torch.nn.Module:
    """Run (or resume) a training run described by a validated config dict or a YAML path.

    ``stop_at``: stop (validate and checkpoint) after that iteration; the learning-rate schedule
    still spans ``train.total_iter``, so ``resume`` continues the same run.

    Returns the trained (unwrapped) model. Raises InterIRError for user problems and when the
    loss becomes NaN/inf (the last good checkpoint is kept).
    """
    if not isinstance(cfg, dict):
        cfg = load_config(cfg)
    return Trainer(cfg, resume=resume, log=log, stop_at=stop_at).run()
