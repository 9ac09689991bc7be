"""Evaluate the shipped checkpoints on the held-out test set and write their model cards' numbers.

For each checkpoint: the Table-1-style evaluation (model vs degraded input vs the classical
DCP + NLM pipeline), ΔPSNR per combination against its twin, and the accuracy of a k-nearest-
neighbour classifier that predicts the degradation combination from ``trace(...).embedding``
(5-fold cross-validation grouped by source photo, so a photo never sits in both the fitting
and the scoring fold).

Also, per checkpoint: the brightness bias per combination (``"brightness"``), with
``--iterations`` the per-iteration behaviour (early-exit PSNR and relative data residual over
k, and how often each is monotone; one trace per image), and with ``--awgn-clean DIR`` an AWGN
row (``"awgn"``: sigma 25, clipped, 8-bit, on the centre 256^2 crops of the clean test photos,
seeded), and with ``--interventions`` the effect of each intervention (uniform attention,
Λ = 0) per combination (``"interventions"``) -- see :mod:`interir.eval`.

    python scripts/evaluate_checkpoints.py --data data_local/testset --iterations \
        --awgn-clean data_local/test_clean \
        checkpoints/interir-tiny checkpoints/interir-tiny-stdconv
Writes ``<checkpoint>/eval.json`` and ``<checkpoint>/eval.md`` for each. ``--against CK`` takes
the other side of the twin ΔPSNR from an ``eval.json`` measured earlier on the same pairs (and
adds the delta to it as well), instead of evaluating both together. ``--update`` keeps
every number of an existing ``eval.json`` and only adds the blocks asked for (``--interventions``,
and with ``--against`` the ΔPSNR, e.g. after evaluating both twins in parallel):

    python scripts/evaluate_checkpoints.py --data data_local/testset --update --interventions \
        checkpoints/interir-tiny checkpoints/interir-tiny-stdconv
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import interir  # noqa: E402
from interir.data.datasets import discover_eval_sets, manifest_sources  # noqa: E402
from interir.data.degrade import COMBOS  # noqa: E402
from interir.eval import (brightness_markdown, evaluate, evaluate_awgn,  # noqa: E402
                          evaluate_interventions, interventions_markdown, iterations_markdown,
                          to_json, to_markdown)


def embeddings(model, data: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embeddings, combo labels and source photo of every test input."""
    sources = manifest_sources(data)
    feats, labels, groups = [], [], []
    for combo, ds in discover_eval_sets(data).items():
        for i in range(len(ds)):
            inp, _tgt, name = ds[i]
            feats.append(interir.trace(model, inp[None]).embedding.numpy())
            labels.append(COMBOS.index(combo))
            groups.append(sources.get((combo, name), name))
    return np.stack(feats), np.array(labels), groups


def knn_accuracy(x: np.ndarray, y: np.ndarray, groups: list[str], k: int = 5) -> dict:
    cv = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    accs, confusion = [], np.zeros((len(COMBOS), len(COMBOS)), int)
    for train, test in cv.split(x, y, groups):
        clf = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k)).fit(x[train], y[train])
        pred = clf.predict(x[test])
        accs.append(float((pred == y[test]).mean()))
        for t, p in zip(y[test], pred):
            confusion[t, p] += 1
    return {"k": k, "folds": 5, "accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
            "chance": 1 / len(COMBOS), "n": int(len(y)), "confusion": confusion.tolist(),
            "labels": list(COMBOS)}


def render(ck: str, res: dict) -> str:
    """eval.md of a checkpoint from its eval.json content."""
    label = f"InterIR ({Path(ck).name})"
    md = to_markdown(res, model_label=label) + "\n" + brightness_markdown(res, label)
    if "iterations" in res:
        md += "\n" + iterations_markdown(res)
    if "awgn" in res:
        md += "\n" + to_markdown(res["awgn"], model_label=label)
    if "interventions" in res:
        md += "\n" + interventions_markdown(res["interventions"])
    return md + "\n"


def add_interventions(ck: str, res: dict, model, data: Path) -> None:
    """Measure the interventions and store them in ``res``; the output without intervention
    must reproduce the model row already in ``res`` (same data, same forward)."""
    iv = evaluate_interventions(model, data)
    gap = max(abs(iv["combos"][c]["none"]["psnr"] - res["combos"][c]["psnr"]) for c in res["combos"])
    if gap > 1e-6:
        sys.exit(f"{ck}: the output without intervention differs from eval.json's model row "
                 f"by {gap:.2g} dB; rerun without --update")
    res["interventions"] = iv
    avg = iv["average"]
    print(f"{ck}: interventions, average ΔPSNR "
          + ", ".join(f"{k} {v['delta_psnr']:+.3f} dB (mean abs. change {v['mean_abs_change']:.3f}/255)"
                      if v else f"{k} n/a" for k, v in avg.items() if k != "none"), flush=True)


def update(args: argparse.Namespace, data: Path) -> None:
    """--update: add the asked-for blocks (--interventions, the ΔPSNR of --against) to each
    existing eval.json, keep everything else."""
    if args.iterations or args.awgn_clean:
        sys.exit("--update adds only --interventions and --against; run without --update to redo the rest")
    if not (args.interventions or args.against):
        sys.exit("--update needs a block to add (--interventions or --against)")
    results = {}
    for ck in args.checkpoints:
        path = Path(ck, "eval.json")
        if not path.is_file():
            sys.exit(f"{path}: no eval.json to update; run without --update first")
        res = json.loads(path.read_text())
        if args.interventions:
            add_interventions(ck, res, interir.load_pretrained(ck), data)
        results[ck] = res
    write_results(results | earlier_results(args.against, results), list(results))


def write_results(results: dict[str, dict], names: list[str]) -> None:
    """Write eval.json/eval.md of every checkpoint, with the ΔPSNR of each pair in which at
    least one side (``names``) was just measured or updated."""
    for ck in results:
        res = results[ck]
        for other in results:
            if other == ck or (ck not in names and other not in names):
                continue
            res.setdefault("delta_psnr_vs", {})[Path(other).name] = {
                c: res["combos"][c]["psnr"] - results[other]["combos"][c]["psnr"] for c in res["combos"]} | {
                "average": res["average"]["psnr"] - results[other]["average"]["psnr"]}
        Path(ck, "eval.json").write_text(to_json(res))
        Path(ck, "eval.md").write_text(render(ck, res))


def earlier_results(checkpoints: list[str], fresh: dict[str, dict]) -> dict[str, dict]:
    """The eval.json of each ``--against`` checkpoint; refused unless it was measured on the
    same test pairs (data folder, image count, PSNR convention) as the fresh results."""
    out = {}
    ref = next(iter(fresh.values()))["meta"]
    for ck in checkpoints:
        path = Path(ck, "eval.json")
        if not path.is_file():
            sys.exit(f"--against {ck}: no eval.json; evaluate it first")
        res = json.loads(path.read_text())
        keys = ("data", "n_images", "y_channel", "crop_border", "max_images_per_combo")
        if any(res["meta"].get(k) != ref.get(k) for k in keys):
            sys.exit(f"--against {ck}: its eval.json was measured on other data or settings "
                     f"({ {k: res['meta'].get(k) for k in keys} }); evaluate both together")
        out[ck] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--iterations", action="store_true",
                    help="trace every test image: per-iteration PSNR and data residual")
    ap.add_argument("--awgn-clean", metavar="DIR", default=None,
                    help="clean test photos for the AWGN row (e.g. data_local/test_clean)")
    ap.add_argument("--awgn-sigma", type=float, default=25.0)
    ap.add_argument("--awgn-size", type=int, default=256)
    ap.add_argument("--awgn-seed", type=int, default=0)
    ap.add_argument("--interventions", action="store_true",
                    help="the effect of uniform attention and of Λ = 0 per combination")
    ap.add_argument("--update", action="store_true",
                    help="keep an existing eval.json and only add the blocks asked for")
    ap.add_argument("--against", nargs="+", default=[], metavar="CHECKPOINT",
                    help="checkpoints already evaluated on the same data: their eval.json gives "
                         "the other side of the ΔPSNR (written into both), without re-running them")
    args = ap.parse_args()
    data = Path(args.data)
    if args.update:
        update(args, data)
        return
    torch.manual_seed(0)
    results = {}
    classical = None
    for ck in args.checkpoints:
        model = interir.load_pretrained(ck)
        t0 = time.time()
        res = evaluate(model, data, include_classical=classical is None, weights=ck,
                       iterations=args.iterations)
        if classical is None:  # the classical baseline is the same for every checkpoint
            classical = res["classical"]
            classical_bright = res["brightness"]["classical"]
        res["classical"] = classical
        res["brightness"]["classical"] = classical_bright
        res["meta"]["eval_seconds"] = round(time.time() - t0, 1)
        if args.awgn_clean:
            res["awgn"] = evaluate_awgn(model, args.awgn_clean, sigma=args.awgn_sigma,
                                        size=args.awgn_size, seed=args.awgn_seed, weights=ck)
        if args.interventions:
            add_interventions(ck, res, model, data)
        x, y, groups = embeddings(model, data)
        res["embedding_knn"] = knn_accuracy(x, y, groups)
        results[ck] = res
        line = (f"{ck}: avg PSNR {res['average']['psnr']:.2f}, "
                f"kNN acc {res['embedding_knn']['accuracy']:.3f}, "
                f"|brightness bias| {res['brightness']['model']['average']['abs_bias']:.2f}")
        if "iterations" in res:
            pooled = res["iterations"]["all_pairs"]
            line += (f", PSNR non-decreasing {pooled['psnr_non_decreasing']:.2f}, "
                     f"residual decreasing {pooled['residual_decreasing']:.2f}")
        if "awgn" in res:
            line += f", AWGN PSNR {res['awgn']['average']['psnr']:.2f}"
        print(line, flush=True)
    names = list(results)
    results |= earlier_results(args.against, results)
    write_results(results, names)
    print(json.dumps({Path(k).name: {"avg": v["average"], "knn": v["embedding_knn"]["accuracy"]}
                      for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    from interir.errors import InterIRError
    try:
        main()
    except InterIRError as exc:  # bad paths or data: one line, no traceback
        sys.exit(f"evaluate_checkpoints: {exc}")
