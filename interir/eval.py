"""Evaluation on paired test folders: PSNR / SSIM per degradation combination, for the model,
the degraded inputs and the classical DCP + NLM baseline, and a Table-1-style markdown table.

Data layout (see docs/design.md): ``DIR/<combo>/input/*.png`` + ``DIR/<combo>/target/*.png`` for
the combos present (in ``COMBOS`` order), or a plain ``DIR/input`` + ``DIR/target`` counted as
one combo named after ``DIR``. Discovery is :func:`interir.data.datasets.discover_eval_sets`.

Per combo, PSNR and SSIM are the mean over its images; ``"average"`` is the **unweighted
mean over combos** (as in the paper's Table 1), not over images. Metrics follow
:mod:`interir.metrics` (8-bit quantised, 0-255 scale, optional Y channel / border crop).
An infinite PSNR (an image identical to its target) stays ``inf`` in the returned dict and is
written as ``null`` by :func:`to_json`.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from . import metrics
from .classical import classical_restore
from .fileio import atomic_write_text
from .errors import InterIRError

#: Row label of the classical baseline in the markdown table.
CLASSICAL_LABEL = "Classical (DCP + NLM)"
INPUT_LABEL = "Degraded input"
_LETTERS = {"haze": "H", "rain": "R", "noise": "N"}


def combo_label(name: str) -> str:
    """Table-1 column header: ``haze_rain_noise`` -> ``H + R + N``; other names unchanged."""
    parts = name.split("_")
    if parts and all(p in _LETTERS for p in parts):
        return " + ".join(_LETTERS[p] for p in parts)
    return name


def _to_numpy_hwc(x: torch.Tensor) -> np.ndarray:
    """(3,H,W) or (1,3,H,W) tensor -> float32 (H,W,3) numpy."""
    if x.ndim == 4:
        x = x[0]
    return x.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()


def _summarise(per_combo: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    combos: dict[str, dict[str, Any]] = {}
    for name, vals in per_combo.items():
        p = [v[0] for v in vals]
        s = [v[1] for v in vals]
        combos[name] = {"psnr": float(np.mean(p)), "ssim": float(np.mean(s)), "n": len(vals)}
    avg = {"psnr": float(np.mean([c["psnr"] for c in combos.values()])),
           "ssim": float(np.mean([c["ssim"] for c in combos.values()]))}
    return {"combos": combos, "average": avg}


def _discover(data_root: str | os.PathLike) -> dict[str, Any]:
    root = Path(data_root)
    if not root.exists():
        raise InterIRError(f"{root}: data folder does not exist")
    if not root.is_dir():
        raise InterIRError(f"{root}: data path is not a folder")
    from .data.datasets import discover_eval_sets

    sets = discover_eval_sets(root)
    sets = {name: ds for name, ds in sets.items() if len(ds) > 0}
    if not sets:
        raise InterIRError(
            f"{root}: no image pairs found; expected {root}/<combo>/input + target folders "
            f"(combos like haze_rain_noise, haze, rain, noise) or {root}/input + {root}/target")
    return sets


def evaluate(model: torch.nn.Module | None, data_root: str | os.PathLike, y_channel: bool = False,
             crop_border: int = 0, device: str | torch.device = "cpu",
             max_images: int | None = None, include_classical: bool = True,
             weights: str | None = None,
             progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
             ) -> dict[str, Any]:
    """Evaluate ``model`` (and the degraded inputs and, optionally, the classical baseline).

    ``max_images`` limits the images **per combo** (the first ones in file order).
    ``weights`` is only recorded in ``meta``. ``model=None`` skips the model row (only
    ``"input"``/``"classical"`` are filled). ``progress(iterable, total, desc)`` may wrap the
    per-combo loop (e.g. with tqdm). The model's train/eval mode is restored afterwards.

    Returns ``{"combos": {name: {"psnr", "ssim", "n"}}, "average": {"psnr", "ssim"},
    "input": {"combos", "average"}, "classical": {...} (if included), "meta": {...}}``.
    """
    if max_images is not None and (isinstance(max_images, bool) or int(max_images) < 1):
        raise InterIRError(f"max_images must be a positive integer, got {max_images!r}")
    if isinstance(crop_border, bool) or int(crop_border) < 0:
        raise InterIRError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    crop_border = int(crop_border)
    sets = _discover(data_root)
    dev = torch.device(device)

    rows: dict[str, dict[str, list[tuple[float, float]]]] = {"model": {}, "input": {},
                                                              "classical": {}}
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    n_total = 0
    try:
        for combo, ds in sets.items():
            n = len(ds) if max_images is None else min(len(ds), int(max_images))
            for key in rows:
                rows[key][combo] = []
            indices: Iterable[int] = range(n)
            if progress is not None:
                indices = progress(indices, n, combo)
            for i in indices:
                inp, target, name = ds[i]
                where = f"{combo}/{name}"
                tgt = _to_numpy_hwc(target)
                inp_np = _to_numpy_hwc(inp)

                def measure(pred: np.ndarray) -> tuple[float, float]:
                    try:
                        return (metrics.psnr(pred, tgt, crop_border, y_channel),
                                metrics.ssim(pred, tgt, crop_border, y_channel))
                    except InterIRError as exc:
                        raise InterIRError(f"{where}: {exc}") from None

                rows["input"][combo].append(measure(inp_np))
                if model is not None:
                    x = inp.unsqueeze(0) if inp.ndim == 3 else inp
                    with torch.inference_mode():
                        y = model(x.to(dev, torch.float32)).clamp(0.0, 1.0)
                    rows["model"][combo].append(measure(_to_numpy_hwc(y)))
                if include_classical:
                    rows["classical"][combo].append(measure(classical_restore(inp_np)))
                n_total += 1
    finally:
        if model is not None:
            model.train(was_training)

    result: dict[str, Any] = {}
    if model is not None:
        result.update(_summarise(rows["model"]))
    result["input"] = _summarise(rows["input"])
    if include_classical:
        result["classical"] = _summarise(rows["classical"])
    result["meta"] = {"weights": None if weights is None else str(weights),
                      "data": str(data_root), "y_channel": bool(y_channel),
                      "crop_border": crop_border, "n_images": n_total,
                      "max_images_per_combo": None if max_images is None else int(max_images),
                      "average": "unweighted mean over combos"}
    return result


def _cell(entry: dict[str, Any]) -> str:
    p = entry["psnr"]
    ps = "inf" if math.isinf(p) else f"{p:.2f}"
    return f"{ps}/{entry['ssim']:.3f}"


def to_markdown(result: dict[str, Any], model_label: str | None = None) -> str:
    """Table-1-style markdown: one column per combo plus "Average", cells ``PSNR/SSIM``.

    Rows: the model (if present), "Degraded input", "Classical (DCP + NLM)" (if present),
    followed by a one-line caption with the metric settings.
    """
    source = result if "combos" in result else result["input"]
    names = list(source["combos"])
    header = ["Method"] + [combo_label(n) for n in names] + ["Average"]
    rule = "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    meta = result.get("meta", {})
    if model_label is None:
        weights = meta.get("weights")
        model_label = f"InterIR ({Path(weights).name})" if weights else "InterIR"

    def row(label: str, block: dict[str, Any]) -> str:
        cells = [_cell(block["combos"][n]) if n in block["combos"] else "-" for n in names]
        return "| " + " | ".join([label] + cells + [_cell(block["average"])]) + " |"

    if "combos" in result:
        lines.append(row(model_label, result))
    lines.append(row(INPUT_LABEL, result["input"]))
    if "classical" in result:
        lines.append(row(CLASSICAL_LABEL, result["classical"]))
    space = "Y channel (BT.601)" if meta.get("y_channel") else "RGB"
    counts = ", ".join(f"{combo_label(n)}: {source['combos'][n]['n']}" for n in names)
    lines.append("")
    lines.append(f"PSNR (dB) / SSIM on {space}, 8-bit quantised, border crop "
                 f"{meta.get('crop_border', 0)} px; Average = mean over combos; "
                 f"images per combo: {counts}.")
    return "\n".join(lines) + "\n"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def to_json(result: dict[str, Any]) -> str:
    """Strict JSON text of an :func:`evaluate` result (infinite PSNR -> ``null``)."""
    return json.dumps(_json_safe(result), indent=2, allow_nan=False) + "\n"


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    path = Path(path)
    if path.is_dir():
        raise InterIRError(f"{path}: is a folder, expected a file name")
    if not path.parent.exists():
        raise InterIRError(f"{path}: output folder {path.parent} does not exist")
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise InterIRError(f"{path}: cannot write ({exc.strerror or exc})") from None


__all__ = ["evaluate", "to_markdown", "to_json", "combo_label", "write_text_atomic",
           "CLASSICAL_LABEL", "INPUT_LABEL"]
