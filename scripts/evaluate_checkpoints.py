"""Evaluate the shipped checkpoints on the held-out test set and write their model cards' numbers.

For each checkpoint: the Table-1-style evaluation (model vs degraded input vs the classical
DCP + NLM pipeline), ΔPSNR per combination against its twin, and the accuracy of a k-nearest-
neighbour classifier that predicts the degradation combination from ``trace(...).embedding``
(5-fold cross-validation grouped by source photo, so a photo never sits in both the fitting
and the scoring fold).

    python scripts/evaluate_checkpoints.py --data data_local/testset \
        checkpoints/interir-tiny checkpoints/interir-tiny-stdconv
Writes ``<checkpoint>/eval.json`` and ``<checkpoint>/eval.md`` for each.
"""
from __future__ import annotations

import argparse
import csv
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
from interir.data.datasets import discover_eval_sets  # noqa: E402
from interir.data.degrade import COMBOS  # noqa: E402
from interir.eval import evaluate, to_json, to_markdown  # noqa: E402


def embeddings(model, data: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embeddings, combo labels and source photo of every test input."""
    sources = {}
    with open(data / "manifest.csv") as fh:
        for row in csv.DictReader(fh):
            sources[(row["combo"], row["file"])] = row["source"]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("checkpoints", nargs="+")
    args = ap.parse_args()
    data = Path(args.data)
    torch.manual_seed(0)
    results = {}
    classical = None
    for ck in args.checkpoints:
        model = interir.load_pretrained(ck)
        t0 = time.time()
        res = evaluate(model, data, include_classical=classical is None, weights=ck)
        if classical is None:
            classical = res["classical"]
        res["classical"] = classical
        res["meta"]["eval_seconds"] = round(time.time() - t0, 1)
        x, y, groups = embeddings(model, data)
        res["embedding_knn"] = knn_accuracy(x, y, groups)
        results[ck] = res
        print(f"{ck}: avg PSNR {res['average']['psnr']:.2f}, kNN acc {res['embedding_knn']['accuracy']:.3f}",
              flush=True)
    names = list(results)
    for ck in names:
        res = results[ck]
        for other in names:
            if other == ck:
                continue
            res.setdefault("delta_psnr_vs", {})[Path(other).name] = {
                c: res["combos"][c]["psnr"] - results[other]["combos"][c]["psnr"] for c in res["combos"]} | {
                "average": res["average"]["psnr"] - results[other]["average"]["psnr"]}
        Path(ck, "eval.json").write_text(to_json(res))
        Path(ck, "eval.md").write_text(to_markdown(res, model_label=f"InterIR ({Path(ck).name})") + "\n")
    print(json.dumps({Path(k).name: {"avg": v["average"], "knn": v["embedding_knn"]["accuracy"]}
                      for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
