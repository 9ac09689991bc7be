#!/usr/bin/env bash
# Rebuild data_local/ (git-ignored) from ../shared/data/bsd400 and configs/splits/*.txt:
# the training photos, the validation set, the selection set and the held-out test set
# (make-testset layout).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-../shared/data/bsd400}
for split in train val test; do
  mkdir -p "data_local/${split}_clean"
  while read -r name; do cp "$SRC/$name" "data_local/${split}_clean/"; done < "configs/splits/bsd400_${split}.txt"
done
interir make-testset --clean data_local/val_clean --out data_local/val --per-combo 5 --seed 1 --size 256 --overwrite
# the selection set (since session 31): which candidate ships is decided here, on the validation
# photos, so that the test set only reports (docs/model_sweep.md, "Stage 18")
interir make-testset --clean data_local/val_clean --out data_local/valsel --per-combo 20 --seed 3 --size 256 --overwrite
interir make-testset --clean data_local/test_clean --out data_local/testset --per-combo 40 --seed 2 --size 256 --overwrite
