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
* ``log.csv`` (``kind=train`` rows: iter, loss, l1, fft, lr, time; ``kind=val`` rows: iter,
  combo, psnr, ssim) and ``tb/`` (TensorBoard).

Multi-GPU: launch with ``torchrun --nproc_per_node N -m interir.cli train --config ...``.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import load_config
from .errors import InterIRError
from .losses import RestorationLoss
from .fileio import atomic_write_text as _atomic_write_text  # tests patch it here

__all__ = ["train", "step_seed", "save_training_state", "load_training_state", "read_exclude_list",
           "build_optimizer", "build_scheduler", "make_batch"]

STATE_JSON = "state.json"
STATE_FORMAT = "interir-train-state-v1"
CSV_NAME = "log.csv"
CSV_FIELDS = ["kind", "iter", "loss", "l1", "fft", "lr", "time", "combo", "psnr", "ssim"]


# --------------------------------------------------------------------------- small helpers
def step_seed(seed: int, iteration: int, rank: int = 0) -> int:
    """A 63-bit generator seed that is a pure function of (seed, iteration, rank)."""
    digest = hashlib.sha256(f"interir-train:{seed}:{iteration}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def read_exclude_list(path: str | os.PathLike) -> list[str]:
    """File names to hold out of training: one per line (``#`` comments allowed), or a
    ``make-testset`` ``manifest.csv`` (its ``source`` column). Only base names are kept."""
    p = Path(path)
    if not p.is_file():
        raise InterIRError(f"datasets.train.exclude_list: file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InterIRError(f"datasets.train.exclude_list: cannot read {p}: {exc}") from None
    lines = text.splitlines()
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


def build_scheduler(opt: torch.optim.Optimizer, cfg: dict):
    """CosineAnnealingLR over ``total_iter`` (stepped once per iteration) or a constant lr."""
    s = cfg["train"]["scheduler"]
    if s["type"] == "constant":
        return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["train"]["total_iter"],
                                                      eta_min=s["eta_min"])


def make_batch(dataset, batch: int, combos, seed: int, iteration: int, rank: int,
               device: torch.device, clean: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(degraded, clean) on ``device`` for one step — a pure function of (seed, iter, rank).

    ``clean`` may be passed in if it was already sampled (prefetched) with the same seed.
    """
    from .data.degrade import degrade, sample_levels

    s = step_seed(seed, iteration, rank)
    if clean is None:
        clean = dataset.sample_batch(batch, torch.Generator().manual_seed(s))
    clean = clean.to(device, non_blocking=True)
    g = torch.Generator(device=device).manual_seed(s)
    haze, rain, noise, _ = sample_levels(batch, combos, generator=g, device=device)
    degraded = degrade(clean, haze, rain, noise, generator=g)
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
                        extra: dict | None = None) -> Path:
    """Write ``state-<iter>.safetensors`` then atomically point ``state.json`` at it."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_t, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_t)
    tensors["rng.cpu"] = torch.get_rng_state()
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for i in range(n_cuda):
        tensors[f"rng.cuda.{i}"] = torch.cuda.get_rng_state(i)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    name = f"state-{iteration:08d}.safetensors"
    tmp = directory / f".{name}.tmp-{os.getpid()}"
    save_file(tensors, str(tmp), metadata={"format": STATE_FORMAT, "iteration": str(iteration)})
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, directory / name)
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
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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
    def __init__(self, path: Path, keep_upto: int | None):
        self.path = path
        if keep_upto is not None and path.is_file():
            # drop rows a killed run wrote after its last checkpoint
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


# --------------------------------------------------------------------------- validation
def _load_val_sets(root: str, max_images: int | None) -> dict[str, list]:
    from .data.datasets import discover_eval_sets

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


@torch.no_grad()
def validate(model: torch.nn.Module, val_sets: dict[str, list], device: torch.device,
             crop_border: int = 0, y_channel: bool = False) -> dict[str, dict[str, float]]:
    """PSNR/SSIM per combo (model output clamped to [0,1], float32) plus ``average``
    (mean over combos)."""
    from .metrics import psnr, ssim

    was_training = model.training
    model.eval()
    res: dict[str, dict[str, float]] = {}
    try:
        for combo, items in val_sets.items():
            ps, ss = [], []
            for inp, tgt in items:
                out = model(inp.unsqueeze(0).to(device)).float().clamp(0, 1)[0].cpu()
                ps.append(psnr(out, tgt, crop_border=crop_border, y_channel=y_channel))
                ss.append(ssim(out, tgt, crop_border=crop_border, y_channel=y_channel))
            res[combo] = {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "n": len(ps)}
    finally:
        model.train(was_training)
    res["average"] = {"psnr": float(np.mean([r["psnr"] for r in res.values()])),
                      "ssim": float(np.mean([r["ssim"] for r in res.values()])),
                      "n": int(sum(r["n"] for r in res.values()))}
    return res


# --------------------------------------------------------------------------- main loop
def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return world, rank, local


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
    import interir
    from .data.datasets import CleanImageDataset

    world, rank, local_rank = _dist_env()
    device = _resolve_device(cfg["device"], local_rank)
    distributed = world > 1
    if distributed:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")

    from tqdm import tqdm
    say = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    if not is_main:
        say = lambda msg: None  # noqa: E731

    tcfg, dcfg = cfg["train"], cfg["datasets"]["train"]
    seed, total = cfg["seed"], tcfg["total_iter"]
    if stop_at is not None and (not isinstance(stop_at, int) or stop_at < 1):
        raise InterIRError(f"stop_at must be a positive integer, got {stop_at!r}")
    end = total if stop_at is None else min(total, stop_at)
    ckpt_dir = Path(cfg["checkpoint"]["dir"])
    if is_main:
        if not resume and (ckpt_dir / STATE_JSON).exists():
            raise InterIRError(f"checkpoint.dir {ckpt_dir} already holds a training run; use "
                               "--resume to continue it or choose another checkpoint.dir")
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        for stale in ckpt_dir.glob(".state-*.tmp-*"):  # partial writes of a killed run
            stale.unlink(missing_ok=True)

    # data
    root = Path(dcfg["root"])
    if not root.is_dir():
        raise InterIRError(f"datasets.train.root: folder not found: {root}")
    exclude = read_exclude_list(dcfg["exclude_list"]) if dcfg["exclude_list"] else None
    dataset = CleanImageDataset(root, patch_size=dcfg["patch_size"], augment=dcfg["augment"],
                                exclude=exclude)
    val_sets = None
    vcfg = cfg["datasets"]["val"]
    if is_main and vcfg["root"]:
        val_sets = _load_val_sets(vcfg["root"], vcfg["max_images"])

    # model / optimiser
    torch.manual_seed(seed)
    try:
        model = interir.build_model(**cfg["network"])
    except (TypeError, ValueError) as exc:
        raise InterIRError(f"network: {exc}") from None
    model = model.to(device).train()
    optimizer = build_optimizer(model.parameters(), cfg)
    scheduler = build_scheduler(optimizer, cfg)
    start_iter, best_psnr, best_iter, elapsed0 = 0, -math.inf, 0, 0.0
    if resume:
        meta, tensors = load_training_state(ckpt_dir)
        if meta.get("network") != cfg["network"]:
            raise InterIRError(f"cannot resume: network in the config ({cfg['network']}) differs "
                               f"from the checkpoint's ({meta.get('network')})")
        try:
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
                                  strict=True)
            optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
            scheduler.load_state_dict(meta["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise InterIRError(f"{ckpt_dir / STATE_JSON}: does not match this config ({exc})") from None
        _restore_rng(meta, tensors)
        start_iter = int(meta["iteration"])
        best_psnr = float(meta.get("best_psnr") or -math.inf)
        best_iter = int(meta.get("best_iter", 0))
        elapsed0 = float(meta.get("elapsed", 0.0))
        best_json = ckpt_dir / "best" / "metrics.json"
        if best_json.is_file():  # a kill between saving best/ and state.json
            try:
                b = json.loads(best_json.read_text())
                if float(b["average"]["psnr"]) > best_psnr:
                    best_psnr, best_iter = float(b["average"]["psnr"]), int(b["iter"])
            except (ValueError, KeyError, TypeError, OSError):
                pass
        del tensors
        say(f"resuming {cfg['name']} from iteration {start_iter} in {ckpt_dir}")

    raw_model = model
    train_model: torch.nn.Module = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP
        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if tcfg["compile"]:
        train_model = torch.compile(train_model)
    loss_fn = RestorationLoss(**tcfg["loss"])
    amp = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
           if tcfg["amp"] == "bf16" else nullcontext())
    if tcfg["amp"] == "bf16" and device.type != "cuda":
        say("note: train.amp bf16 on CPU uses CPU autocast (slow); use amp: none on CPU")

    # logging (rank 0)
    csv_log = tb = None
    if is_main and cfg["logger"]["csv"]:
        csv_log = _CsvLog(ckpt_dir / CSV_NAME, keep_upto=start_iter if resume else None)
    elif is_main and not resume and (ckpt_dir / CSV_NAME).exists():
        (ckpt_dir / CSV_NAME).unlink()
    if is_main and cfg["logger"]["tensorboard"]:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise InterIRError(f"logger.tensorboard: tensorboard is not installed ({exc}); "
                               "set it to false") from None
        tb = SummaryWriter(log_dir=str(ckpt_dir / "tb"),
                           purge_step=start_iter + 1 if resume else None)

    combos = list(dcfg["combos"])
    B = dcfg["batch_size"]
    print_every, val_every = cfg["logger"]["print_every"], cfg["val"]["every"]
    ckpt_every = cfg["checkpoint"]["every"]
    on_cuda = device.type == "cuda"
    # one-ahead prefetch of the clean batch on a thread (GPU only; it is seeded per iteration,
    # so results do not depend on it)
    pool = ThreadPoolExecutor(max_workers=1) if on_cuda else None
    nxt = (pool.submit(_sample_clean, dataset, B, seed, start_iter + 1, rank, True)
           if pool and start_iter < total else None)

    zero = torch.zeros((), device=device)
    acc = torch.zeros(3, device=device)  # loss, l1, fft sums since the last log row
    acc_n = 0
    bad_iter = torch.zeros((), dtype=torch.long, device=device)  # first non-finite iteration
    last_ckpt = start_iter
    t0 = time.time()
    bar = tqdm(total=total, initial=start_iter, disable=not is_main, desc=cfg["name"],
               dynamic_ncols=True, mininterval=1.0, file=sys.stderr)

    def save_all(it: int, val: dict | None) -> None:
        nonlocal last_ckpt
        interir.save_pretrained(raw_model, ckpt_dir / "last",
                                extra={"train": {"name": cfg["name"], "iter": it}})
        save_training_state(ckpt_dir, raw_model, optimizer, scheduler, it, extra={
            "network": cfg["network"], "best_psnr": best_psnr if best_iter else None,
            "best_iter": best_iter, "elapsed": elapsed0 + time.time() - t0, "name": cfg["name"],
            "world_size": world})
        last_ckpt = it

    try:
        for it in range(start_iter + 1, end + 1):
            if pool is not None:
                clean_cpu = nxt.result()
                nxt = (pool.submit(_sample_clean, dataset, B, seed, it + 1, rank, True)
                       if it < end else None)
            else:
                clean_cpu = None
            degraded, clean = make_batch(dataset, B, combos, seed, it, rank, device, clean_cpu)
            lr = optimizer.param_groups[0]["lr"]
            with amp:
                out = train_model(degraded)
            loss, l1, fft = loss_fn(out, clean)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), tcfg["grad_clip"])
            optimizer.step()
            scheduler.step()

            lvals = torch.stack([loss.detach(), l1, fft])
            finite = torch.isfinite(lvals).all()
            bad_iter = torch.where((bad_iter == 0) & ~finite, torch.full_like(bad_iter, it),
                                   bad_iter)
            acc += torch.where(finite, lvals, zero)
            acc_n += 1
            bar.update(1)

            do_log = it % print_every == 0 or it == end
            val_due = bool(vcfg["root"]) and (it % val_every == 0 or it == end)
            do_val = val_due and val_sets is not None  # rank 0 only
            do_ckpt = it % ckpt_every == 0 or it == end
            # sync point for the NaN check: rank-independent, so all ranks all_reduce together
            if do_log or do_ckpt or val_due or not on_cuda:
                flag = bad_iter.clone()
                if distributed:
                    import torch.distributed as dist
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                if int(flag):
                    kept = (f"the last good checkpoint (iteration {last_ckpt}) in {ckpt_dir} is "
                            "kept" if last_ckpt else "no checkpoint had been written yet")
                    raise InterIRError(
                        f"loss became NaN/inf at iteration {int(flag)}; stopped ({kept}); lower "
                        "train.optimizer.lr or set train.grad_clip, then --resume")
            if not is_main:
                continue
            if do_log:
                m = (acc / max(acc_n, 1)).tolist()
                acc.zero_()
                acc_n = 0
                elapsed = elapsed0 + time.time() - t0
                bar.set_postfix(loss=f"{m[0]:.4f}", lr=f"{lr:.2e}", refresh=False)
                if csv_log:
                    csv_log.row(kind="train", iter=it, loss=_fmt(m[0]), l1=_fmt(m[1]),
                                fft=_fmt(m[2]), lr=_fmt(lr), time=f"{elapsed:.3f}")
                if tb:
                    for k, v in zip(("loss", "l1", "fft"), m):
                        tb.add_scalar(f"train/{k}", v, it)
                    tb.add_scalar("train/lr", lr, it)
            val = None
            if do_val:
                val = validate(raw_model, val_sets, device, cfg["val"]["crop_border"],
                               cfg["val"]["y_channel"])
                avg = val["average"]
                say(f"[{cfg['name']}] iter {it}: val PSNR {avg['psnr']:.2f} dB, "
                    f"SSIM {avg['ssim']:.4f}" + ("" if avg["psnr"] <= best_psnr else " (best)"))
                for combo, r in val.items():
                    if csv_log:
                        csv_log.row(kind="val", iter=it, combo=combo, psnr=_fmt(r["psnr"]),
                                    ssim=_fmt(r["ssim"]),
                                    time=f"{elapsed0 + time.time() - t0:.3f}")
                    if tb:
                        tb.add_scalar(f"val_psnr/{combo}", r["psnr"], it)
                        tb.add_scalar(f"val_ssim/{combo}", r["ssim"], it)
                if avg["psnr"] > best_psnr:
                    best_psnr, best_iter = avg["psnr"], it
                    interir.save_pretrained(raw_model, ckpt_dir / "best", extra={
                        "train": {"name": cfg["name"], "iter": it, "val": avg}})
                    _atomic_write_text(ckpt_dir / "best" / "metrics.json",
                                       json.dumps({"iter": it, **val}, indent=1) + "\n")
            if do_ckpt:
                save_all(it, val)
                if tb:
                    tb.flush()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if csv_log:
            csv_log.close()
        if tb:
            tb.close()
        if distributed:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
    if is_main and start_iter < end:
        done = time.time() - t0
        msg = (f"[{cfg['name']}] {'done' if end == total else f'stopped at {end} of {total}'}: "
               f"{end - start_iter} iterations in {done:.1f} s "
               f"({(end - start_iter) / max(done, 1e-9):.2f} it/s); weights in {ckpt_dir / 'last'}")
        if best_iter:
            msg += f", best (val PSNR {best_psnr:.2f} dB @ {best_iter}) in {ckpt_dir / 'best'}"
        say(msg)
    return raw_model
