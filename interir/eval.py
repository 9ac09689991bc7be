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

Beyond PSNR / SSIM (issue targets for a model worth stepping through):

* ``"brightness"``: per combo, the signed mean and the mean absolute of
  ``mean(output) - mean(target)`` over the images, on the 0-255 scale (RGB, 8-bit quantised,
  whole image), for the model, the degraded input and the classical baseline.
* ``"iterations"`` (``iterations=True``; one :func:`interir.trace` per image): per combo the
  mean early-exit PSNR of every iteration's decode, the mean relative data residual
  ``||A_k I_{k+1} B_k - z|| / ||z||`` (z: the embedded input), and the fraction of pairs whose
  PSNR never drops by more than :data:`MONOTONE_TOL_DB` from one iteration to the next and
  whose residual decreases at every iteration; ``"all_pairs"`` pools every pair.
* :func:`evaluate_interventions`: per combo, the output without and with each intervention
  of :mod:`interir.interventions` (uniform attention, Λ = 0): PSNR / SSIM, their change, and
  the mean absolute change of the output on the 0-255 scale.
* :func:`evaluate_awgn`: the same numbers for additive white Gaussian noise (clipped, 8-bit)
  on centre crops of clean photos, as one more combo named ``awgn<sigma>``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from . import metrics
from .classical import classical_restore
from .fileio import atomic_write_text, check_output_path, require_folder
from .errors import InterIRError
from .imageio import to_uint8

#: Row label of the classical baseline in the markdown table.
CLASSICAL_LABEL = "Classical (DCP + NLM)"
INPUT_LABEL = "Degraded input"
_LETTERS = {"haze": "H", "rain": "R", "noise": "N"}
#: An early-exit PSNR curve counts as non-decreasing if no iteration loses more than this (dB).
MONOTONE_TOL_DB = 0.05
#: The rows measured per image (model, degraded input, classical baseline).
_ROWS = ("model", "input", "classical")


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


def brightness_bias(pred: np.ndarray, target: np.ndarray) -> float:
    """``mean(pred) - mean(target)`` on the 0-255 scale, both (H,W,3) in [0,1] quantised to
    8 bit first (RGB, whole image)."""
    return float(to_uint8(pred).mean(dtype=np.float64) - to_uint8(target).mean(dtype=np.float64))


def _summarise_bias(per_combo: dict[str, list[float]]) -> dict[str, Any]:
    combos = {name: {"bias": float(np.mean(v)), "abs_bias": float(np.mean(np.abs(v))),
                     "n": len(v)} for name, v in per_combo.items()}
    avg = {key: float(np.mean([c[key] for c in combos.values()])) for key in ("bias", "abs_bias")}
    return {"combos": combos, "average": avg}


def relative_residual(it: Any) -> float:
    """``||A_k I_{k+1} B_k - z|| / ||z||`` of one :class:`interir.trace.IterationRecord`: how
    far the iterate, pushed through the estimated degradation, is from the embedded input."""
    z = it.z
    with torch.inference_mode():
        r = torch.linalg.vector_norm((it.A @ it.I @ it.B - z).double())
        return float(r / torch.linalg.vector_norm(z.double()).clamp_min(1e-12))


def non_decreasing(values: Sequence[float], tol: float = MONOTONE_TOL_DB) -> bool:
    """No step loses more than ``tol``."""
    return all(b >= a - tol for a, b in zip(values, values[1:]))


def decreasing(values: Sequence[float]) -> bool:
    """Every step is strictly lower than the one before."""
    return all(b < a for a, b in zip(values, values[1:]))


def iteration_curves(tr: Any, target: np.ndarray, crop_border: int = 0, y_channel: bool = False
                     ) -> tuple[list[float], list[float]]:
    """(early-exit PSNR per iteration, relative data residual per iteration) of a trace
    against ``target`` (H,W,3); decodes are clipped to [0, 1] as the model's output is."""
    psnrs = [metrics.psnr(_to_numpy_hwc(it.image.clamp(0.0, 1.0)), target, crop_border,
                          y_channel) for it in tr.iterations]
    return psnrs, [relative_residual(it) for it in tr.iterations]


def _summarise_iterations(per_combo: dict[str, list[tuple[list[float], list[float]]]],
                          tol: float) -> dict[str, Any]:
    def block(pairs: list[tuple[list[float], list[float]]]) -> dict[str, Any]:
        ps = np.array([p for p, _ in pairs], dtype=np.float64)
        rs = np.array([r for _, r in pairs], dtype=np.float64)
        return {"n": len(pairs), "psnr": ps.mean(0).tolist(), "residual": rs.mean(0).tolist(),
                "psnr_non_decreasing": float(np.mean([non_decreasing(p, tol) for p, _ in pairs])),
                "residual_decreasing": float(np.mean([decreasing(r) for _, r in pairs]))}

    pooled = [pair for pairs in per_combo.values() for pair in pairs]
    return {"combos": {name: block(pairs) for name, pairs in per_combo.items()},
            "all_pairs": block(pooled), "tolerance_db": tol}


def _discover(data_root: str | os.PathLike) -> dict[str, Any]:
    root = require_folder(data_root, "data", "a folder of image pairs")
    from .data.datasets import discover_eval_sets

    sets = discover_eval_sets(root)
    sets = {name: ds for name, ds in sets.items() if len(ds) > 0}
    if not sets:
        raise InterIRError(
            f"{root}: no image pairs found; expected {root}/<combo>/input + target folders "
            f"(combos like haze_rain_noise, haze, rain, noise) or {root}/input + {root}/target")
    return sets


PairSource = Callable[[int], tuple[torch.Tensor, torch.Tensor, str]]


def _check_options(max_images: int | None, crop_border: int) -> int:
    if max_images is not None and (isinstance(max_images, bool) or int(max_images) < 1):
        raise InterIRError(f"max_images must be a positive integer, got {max_images!r}")
    if isinstance(crop_border, bool) or int(crop_border) < 0:
        raise InterIRError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    return int(crop_border)


def _run(model: torch.nn.Module | None, sets: dict[str, tuple[PairSource, int]],
         y_channel: bool, crop_border: int, dev: torch.device, include_classical: bool,
         iterations: bool, tol: float,
         progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None,
         ) -> dict[str, Any]:
    """Measure every pair of ``sets`` ({combo: (get(i) -> (input, target, name), count)}) and
    return the result blocks (without ``meta``). The model's mode is restored afterwards."""
    if iterations and model is not None:
        from .model.interir import InterIR

        if not isinstance(model, InterIR):
            raise InterIRError("per-iteration evaluation needs an InterIR model (it traces it)")
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {k: {} for k in _ROWS}
    bias: dict[str, dict[str, list[float]]] = {k: {} for k in _ROWS}
    curves: dict[str, list[tuple[list[float], list[float]]]] = {}
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    try:
        for combo, (get, n) in sets.items():
            for key in _ROWS:
                rows[key][combo], bias[key][combo] = [], []
            curves[combo] = []
            indices: Iterable[int] = range(n)
            if progress is not None:
                indices = progress(indices, n, combo)
            for i in indices:
                inp, target, name = get(i)
                tgt = _to_numpy_hwc(target)

                def measure(key: str, pred: np.ndarray) -> None:
                    try:
                        rows[key][combo].append((metrics.psnr(pred, tgt, crop_border, y_channel),
                                                 metrics.ssim(pred, tgt, crop_border, y_channel)))
                        bias[key][combo].append(brightness_bias(pred, tgt))
                    except InterIRError as exc:
                        raise InterIRError(f"{combo}/{name}: {exc}") from None

                inp_np = _to_numpy_hwc(inp)
                measure("input", inp_np)
                if model is not None:
                    x = (inp.unsqueeze(0) if inp.ndim == 3 else inp).to(dev, torch.float32)
                    if iterations:
                        from .trace import trace

                        tr = trace(model, x)
                        y = tr.output.clamp(0.0, 1.0)
                        curves[combo].append(iteration_curves(tr, tgt, crop_border, y_channel))
                    else:
                        with torch.inference_mode():
                            y = model(x).clamp(0.0, 1.0)
                    measure("model", _to_numpy_hwc(y))
                if include_classical:
                    measure("classical", classical_restore(inp_np))
    finally:
        if model is not None:
            model.train(was_training)
    result: dict[str, Any] = {}
    if model is not None:
        result.update(_summarise(rows["model"]))
    result["input"] = _summarise(rows["input"])
    if include_classical:
        result["classical"] = _summarise(rows["classical"])
    result["brightness"] = {k: _summarise_bias(bias[k]) for k in _ROWS
                            if (k != "model" or model is not None)
                            and (k != "classical" or include_classical)}
    if iterations and model is not None:
        result["iterations"] = _summarise_iterations(curves, tol)
    return result


def evaluate(model: torch.nn.Module | None, data_root: str | os.PathLike, y_channel: bool = False,
             crop_border: int = 0, device: str | torch.device = "cpu",
             max_images: int | None = None, include_classical: bool = True,
             weights: str | None = None,
             progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
             iterations: bool = False, tolerance_db: float = MONOTONE_TOL_DB,
             ) -> dict[str, Any]:
    """Evaluate ``model`` (and the degraded inputs and, optionally, the classical baseline).

    ``max_images`` limits the images **per combo** (the first ones in file order).
    ``weights`` is only recorded in ``meta``. ``model=None`` skips the model row (only
    ``"input"``/``"classical"`` are filled). ``progress(iterable, total, desc)`` may wrap the
    per-combo loop (e.g. with tqdm). The model's train/eval mode is restored afterwards.
    ``iterations=True`` traces every image (an InterIR model) for the ``"iterations"`` block.

    Returns ``{"combos": {name: {"psnr", "ssim", "n"}}, "average": {"psnr", "ssim"},
    "input": {"combos", "average"}, "classical": {...} (if included),
    "brightness": {"model" | "input" | "classical": {"combos": {name: {"bias", "abs_bias",
    "n"}}, "average": {"bias", "abs_bias"}}}, "iterations": {...} (if asked), "meta": {...}}``.
    """
    crop_border = _check_options(max_images, crop_border)
    sets = _discover(data_root)
    runs = {name: (ds.__getitem__, len(ds) if max_images is None else min(len(ds), int(max_images)))
            for name, ds in sets.items()}
    result = _run(model, runs, y_channel, crop_border, torch.device(device), include_classical,
                  iterations, float(tolerance_db), progress)
    result["meta"] = {"weights": None if weights is None else str(weights),
                      "data": str(data_root), "y_channel": bool(y_channel),
                      "crop_border": crop_border, "n_images": sum(n for _, n in runs.values()),
                      "max_images_per_combo": None if max_images is None else int(max_images),
                      "average": "unweighted mean over combos",
                      "brightness": "mean(output) - mean(target), 0-255 scale, RGB, 8-bit"}
    return result


def awgn_pairs(clean_dir: str | os.PathLike, sigma: float = 25.0, size: int = 256, seed: int = 0,
               max_images: int | None = None) -> tuple[PairSource, int]:
    """``(get, count)`` over the clean photos of ``clean_dir`` (sorted by name): ``get(i)``
    returns (noisy, clean, name) with ``clean`` the photo's centre ``size``^2 crop (as
    ``make-testset`` crops) quantised to 8 bit and ``noisy`` = clean + N(0, (sigma/255)^2),
    clipped to [0, 1] and quantised to 8 bit; the noise of photo i is seeded by (seed, i)."""
    from .data.datasets import centre_square, list_images
    from .imageio import load_image

    if not math.isfinite(float(sigma)) or float(sigma) <= 0:
        raise InterIRError(f"sigma must be a positive number, got {sigma!r}")
    paths = list_images(clean_dir)
    if not paths:
        raise InterIRError(f"{clean_dir}: no images found")
    if max_images is not None:
        paths = paths[:int(max_images)]

    def get(i: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        clean = to_uint8(centre_square(load_image(paths[i]), size)).astype(np.float32) / 255.0
        x = torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1)))
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + i)
        noisy = (x + torch.randn(x.shape, generator=g) * (float(sigma) / 255.0)).clamp(0, 1)
        noisy = torch.from_numpy(to_uint8(noisy.permute(1, 2, 0).numpy()).transpose(2, 0, 1))
        return noisy.float() / 255.0, x, paths[i].name

    return get, len(paths)


def evaluate_awgn(model: torch.nn.Module | None, clean_dir: str | os.PathLike,
                  sigma: float = 25.0, size: int = 256, seed: int = 0,
                  max_images: int | None = None, y_channel: bool = False, crop_border: int = 0,
                  device: str | torch.device = "cpu", include_classical: bool = False,
                  weights: str | None = None, iterations: bool = False,
                  progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
                  ) -> dict[str, Any]:
    """:func:`evaluate` on :func:`awgn_pairs` (one combo, ``awgn<sigma>``): the same result
    layout, so :func:`to_markdown` and :func:`to_json` apply."""
    crop_border = _check_options(max_images, crop_border)
    name = f"awgn{float(sigma):g}"
    get, n = awgn_pairs(clean_dir, sigma, size, seed, max_images)
    result = _run(model, {name: (get, n)}, y_channel, crop_border, torch.device(device),
                  include_classical, iterations, MONOTONE_TOL_DB, progress)
    result["meta"] = {"weights": None if weights is None else str(weights),
                      "data": f"{clean_dir} + AWGN sigma {float(sigma):g} (clipped, 8-bit), "
                              f"centre {size}x{size}, seed {seed}",
                      "y_channel": bool(y_channel), "crop_border": crop_border, "n_images": n,
                      "max_images_per_combo": None if max_images is None else int(max_images),
                      "average": "unweighted mean over combos",
                      "brightness": "mean(output) - mean(target), 0-255 scale, RGB, 8-bit"}
    return result


#: Table labels of the interventions of :mod:`interir.interventions`.
INTERVENTION_LABELS = {"uniform_attention": "Uniform attention", "zero_multiplier": "Λ = 0"}
#: Below these, an intervention's effect is reported as negligible: the mean absolute change
#: of the output (0-255 scale) and the absolute PSNR change (dB).
NEGLIGIBLE_CHANGE = 1.0
NEGLIGIBLE_DB = 0.1


def _intervention_block(per_image: list[tuple[float, ...]], none: dict[str, float]
                        ) -> dict[str, float]:
    """Mean PSNR / SSIM / |change| over a combo's images, and the change against no intervention."""
    a = np.array(per_image, dtype=np.float64)
    psnr, ssim = float(a[:, 0].mean()), float(a[:, 1].mean())
    return {"psnr": psnr, "ssim": ssim, "delta_psnr": psnr - none["psnr"],
            "delta_ssim": ssim - none["ssim"], "mean_abs_change": float(a[:, 2].mean()),
            "max_abs_change": float(a[:, 3].max())}


def _summarise_interventions(per_combo: dict[str, dict[str, list[tuple[float, ...]]]],
                             applicable: dict[str, bool]) -> dict[str, Any]:
    combos: dict[str, dict[str, Any]] = {}
    for combo, rec in per_combo.items():
        pairs = np.array(rec["none"], dtype=np.float64)
        entry: dict[str, Any] = {"none": {"psnr": float(pairs[:, 0].mean()),
                                          "ssim": float(pairs[:, 1].mean())}, "n": len(pairs)}
        for name, ok in applicable.items():
            entry[name] = _intervention_block(rec[name], entry["none"]) if ok else None
        combos[combo] = entry
    avg: dict[str, Any] = {"none": {k: float(np.mean([c["none"][k] for c in combos.values()]))
                                    for k in ("psnr", "ssim")}}
    for name, ok in applicable.items():
        if not ok:
            avg[name] = None
            continue
        blocks = [c[name] for c in combos.values()]
        avg[name] = {k: float(np.mean([b[k] for b in blocks])) for k in blocks[0]}
        avg[name]["max_abs_change"] = max(b["max_abs_change"] for b in blocks)
    return {"applicable": dict(applicable), "combos": combos, "average": avg}


def evaluate_interventions(model: torch.nn.Module, data_root: str | os.PathLike,
                           y_channel: bool = False, crop_border: int = 0,
                           device: str | torch.device = "cpu", max_images: int | None = None,
                           progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
                           ) -> dict[str, Any]:
    """The effect of each intervention of :mod:`interir.interventions` (uniform attention,
    Λ = 0) per combination: PSNR / SSIM of the output without and with it, the change in dB
    and SSIM, and the mean and maximum absolute change of the output (clipped to [0, 1], not
    quantised, on the 0-255 scale, so an effect below one grey level stays visible).

    An intervention with nothing to act on (uniform attention in a standard-conv model) is
    not run: ``applicable[name]`` is False and its entries are ``None``. ``"average"`` is the
    unweighted mean over combos (``max_abs_change``: the maximum). Same data layout and
    metric options as :func:`evaluate`; the model's mode is restored afterwards.

    Returns ``{"applicable": {name: bool}, "combos": {combo: {"none": {"psnr", "ssim"},
    name: {"psnr", "ssim", "delta_psnr", "delta_ssim", "mean_abs_change", "max_abs_change"}
    | None, "n"}}, "average": {...}, "meta": {...}}``.
    """
    from . import interventions
    from .model.interir import InterIR

    if not isinstance(model, InterIR):
        raise InterIRError("interventions need an InterIR model (they hook its modules)")
    crop_border = _check_options(max_images, crop_border)
    sets = _discover(data_root)
    applicable = {name: interventions.applies(model, name) for name in interventions.INTERVENTIONS}
    per_combo: dict[str, dict[str, list[tuple[float, ...]]]] = {}
    dev, was_training, n_images = torch.device(device), model.training, 0
    model.eval()
    try:
        for combo, ds in sets.items():
            n = len(ds) if max_images is None else min(len(ds), int(max_images))
            rec = per_combo[combo] = {"none": [], **{k: [] for k, ok in applicable.items() if ok}}
            indices: Iterable[int] = range(n) if progress is None else progress(range(n), n, combo)
            for i in indices:
                inp, target, name = ds[i]
                tgt = _to_numpy_hwc(target)
                x = (inp.unsqueeze(0) if inp.ndim == 3 else inp).to(dev, torch.float32)
                with torch.inference_mode():
                    base = model(x).clamp(0.0, 1.0)
                    outs = {}
                    for iv in rec.keys() - {"none"}:
                        with getattr(interventions, iv)(model):
                            outs[iv] = model(x).clamp(0.0, 1.0)
                try:
                    y = _to_numpy_hwc(base)
                    rec["none"].append((metrics.psnr(y, tgt, crop_border, y_channel),
                                        metrics.ssim(y, tgt, crop_border, y_channel)))
                    for iv, out in outs.items():
                        d = (out - base).abs() * 255.0
                        yi = _to_numpy_hwc(out)
                        rec[iv].append((metrics.psnr(yi, tgt, crop_border, y_channel),
                                        metrics.ssim(yi, tgt, crop_border, y_channel),
                                        float(d.double().mean()), float(d.max())))
                except InterIRError as exc:
                    raise InterIRError(f"{combo}/{name}: {exc}") from None
            n_images += n
    finally:
        model.train(was_training)
    result = _summarise_interventions(per_combo, applicable)
    result["meta"] = {"data": str(data_root), "y_channel": bool(y_channel),
                      "crop_border": crop_border, "n_images": n_images,
                      "max_images_per_combo": None if max_images is None else int(max_images),
                      "average": "unweighted mean over combos (max_abs_change: maximum)",
                      "change": "|output with - output without|, outputs clipped to [0, 1], "
                                "0-255 scale, not quantised; mean over pixels and channels",
                      "negligible": {"mean_abs_change": NEGLIGIBLE_CHANGE,
                                     "abs_delta_psnr_db": NEGLIGIBLE_DB}}
    return result


def interventions_markdown(block: dict[str, Any]) -> str:
    """Markdown table of an :func:`evaluate_interventions` result: per combo (and the
    average), PSNR / SSIM without and with each intervention, ΔPSNR and mean |Δ output|."""
    names = list(block["applicable"])
    header = ["Combination", "no intervention"]
    for name in names:
        label = INTERVENTION_LABELS.get(name, name)
        header += [label, "ΔPSNR (dB)", "mean abs. change (0–255)"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]

    def row(label: str, e: dict[str, Any]) -> str:
        cells = [label, _cell(e["none"])]
        for name in names:
            b = e[name]
            cells += (["n/a"] * 3 if b is None else
                      [_cell(b), f"{b['delta_psnr']:+.3f}", f"{b['mean_abs_change']:.3f}"])
        return "| " + " | ".join(cells) + " |"

    lines += [row(combo_label(c), e) for c, e in block["combos"].items()]
    lines.append(row("Average", block["average"]))
    lines += ["", "PSNR (dB) / SSIM of the output without and with each intervention; ΔPSNR = "
                  "with − without; mean abs. change: the mean absolute change of the output "
                  "(clipped to [0, 1], not quantised) on the 0–255 scale."]
    if not all(block["applicable"].values()):
        off = ", ".join(INTERVENTION_LABELS.get(n, n) for n, ok in block["applicable"].items()
                        if not ok)
        lines.append(f"n/a: {off} has nothing to act on in this model (a standard-conv model "
                     "has no attention maps), so it was not run.")
    return "\n".join(lines) + "\n"


def _cell(entry: dict[str, Any]) -> str:
    p = entry["psnr"]
    ps = "inf" if p is None or math.isinf(p) else f"{p:.2f}"  # None: inf read back from JSON
    return f"{ps}/{entry['ssim']:.3f}"


def _model_label(result: dict[str, Any], model_label: str | None) -> str:
    if model_label is not None:
        return model_label
    weights = result.get("meta", {}).get("weights")
    return f"InterIR ({Path(weights).name})" if weights else "InterIR"


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
    model_label = _model_label(result, model_label)

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


def brightness_markdown(result: dict[str, Any], model_label: str | None = None) -> str:
    """Markdown table of the ``"brightness"`` block: cells ``signed/absolute`` bias (0-255)."""
    bright = result["brightness"]
    names = list(bright["input"]["combos"])
    labels = {"model": _model_label(result, model_label), "input": INPUT_LABEL,
              "classical": CLASSICAL_LABEL}
    header = ["Method"] + [combo_label(n) for n in names] + ["Average"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]

    def cell(e: dict[str, Any]) -> str:
        return f"{e['bias']:+.2f}/{e['abs_bias']:.2f}"

    for key, block in bright.items():
        cells = [cell(block["combos"][n]) for n in names] + [cell(block["average"])]
        lines.append("| " + " | ".join([labels[key]] + cells) + " |")
    lines += ["", "Brightness bias mean(output) - mean(target) on the 0-255 scale (RGB, 8-bit): "
                  "signed mean / mean of the absolute value over each combination's images."]
    return "\n".join(lines) + "\n"


def iterations_markdown(result: dict[str, Any]) -> str:
    """Markdown table of the ``"iterations"`` block: per combo, the mean early-exit PSNR and
    relative data residual over k, and the fractions of monotone pairs."""
    it = result["iterations"]
    lines = ["| Combination | early-exit PSNR over k (dB) | ‖A I B − z‖ / ‖z‖ over k | "
             "PSNR non-decreasing | residual decreasing |", "|---|---|---|:---:|:---:|"]

    def row(label: str, b: dict[str, Any]) -> str:
        ps = " → ".join("inf" if math.isinf(v) else f"{v:.2f}" for v in b["psnr"])
        rs = " → ".join(f"{v:.3g}" for v in b["residual"])
        return (f"| {label} | {ps} | {rs} | {100 * b['psnr_non_decreasing']:.0f} % | "
                f"{100 * b['residual_decreasing']:.0f} % |")

    lines += [row(combo_label(n), b) for n, b in it["combos"].items()]
    lines.append(row(f"all pairs ({it['all_pairs']['n']})", it["all_pairs"]))
    lines += ["", f"Non-decreasing: no iteration loses more than {it['tolerance_db']:g} dB; "
                  "decreasing: every iteration lowers the residual (z: the embedded input)."]
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
    path = check_output_path(path)
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise InterIRError(f"{path}: cannot write ({exc.strerror or exc})") from None


__all__ = ["evaluate", "evaluate_awgn", "awgn_pairs", "to_markdown", "brightness_markdown",
           "iterations_markdown", "evaluate_interventions",
           "interventions_markdown", "to_json", "combo_label", "write_text_atomic",
           "brightness_bias", "relative_residual", "iteration_curves", "non_decreasing",
           "decreasing", "CLASSICAL_LABEL", "INPUT_LABEL", "MONOTONE_TOL_DB",
           "INTERVENTION_LABELS", "NEGLIGIBLE_CHANGE", "NEGLIGIBLE_DB"]
