#!/usr/bin/env bash
# One call on a lent GPU machine: train the given configs side by side on the GPU for at most
# BUDGET seconds, then pack each run's state, weights and logs into $OUT/<name>/ (what comes back).
#
#   device run, carry [data_local/train_clean, data_local/val]:
#     bash scripts/device_train.sh 480 configs/interir-n6-long8.yaml configs/interir-n6-stdconv-long8.yaml
#
# Each config runs as written except `device` (DEVICE, default cuda), its run folder
# (/tmp/device-runs/<name>) and `checkpoint.keep_every` (dropped: no room to bring the kept
# weights back). At BUDGET seconds a run still going gets SIGTERM: `interir train` saves its
# state at the current iteration and stops (docs/design.md). Back come, per run, its
# console log (train.log) and its run folder (last/, state.json + state tensors, log.csv) as a
# tar in parts of 15 MiB (the tool returns at most 8 files of 16 MiB, 64 MiB in all: two n = 6
# runs fit). Unpack into RUNS and `--resume` there continues the run on the CPU:
#   cat FILES_AT/<name>/<name>.tar.part-* | tar xf - -C RUNS
# Needs only what the device image has (torch, numpy, pillow, safetensors, pyyaml, tqdm).
set -uo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  # two runs at most: each comes back as three files and the tool returns eight
  echo "usage: bash scripts/device_train.sh BUDGET_SECONDS CONFIG [CONFIG]" >&2; exit 2
fi
budget=$1; shift
out=${OUT:?set OUT to the folder that comes back}
runs=${RUNS_DIR:-/tmp/device-runs}
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
command -v nvidia-smi >/dev/null && nvidia-smi -L
mkdir -p "$runs" "$out"
names=()
for cfg in "$@"; do
  name=$("$py" - "$cfg" "$runs" "${DEVICE:-cuda}" <<'EOF'
import sys, yaml
from interir.config import load_config
from interir.errors import InterIRError
src, runs, device = sys.argv[1:]
try:
    cfg = load_config(src)          # validated here, so a bad config fails before any GPU time
except InterIRError as exc:
    sys.exit(f"device_train: error: {exc}")
raw = yaml.safe_load(open(src))
raw["device"] = device
(raw.get("checkpoint") or {}).pop("keep_every", None)  # no room for kept weights in what comes back
with open(f"{runs}/{cfg['name']}.yaml", "w") as fh:
    yaml.safe_dump(raw, fh)
print(cfg["name"])
EOF
) || exit 2
  names+=("$name")
  timeout -s TERM -k 120 "$budget" "$py" -m interir.cli train --config "$runs/$name.yaml" \
    --run-dir "$runs/$name" > "$runs/$name.log" 2>&1 &
done
wait
rc=0
for name in "${names[@]}"; do
  mkdir -p "$out/$name"
  # the console log without the progress bar's redraws
  tr '\r' '\n' < "$runs/$name.log" | grep -avE "^$name: +[0-9]+%\|" > "$out/$name/train.log"
  echo "== $name"; tail -n 3 "$out/$name/train.log"
  if [ ! -f "$runs/$name/state.json" ]; then echo "no training state for $name" >&2; rc=1; continue; fi
  awk -F, '$1=="val" && $8=="average" {print "val", $2, $9}' "$runs/$name/log.csv"
  # the run folder (last/, state, log.csv; not best/) in parts under the tool's 16 MiB per file
  (cd "$runs" && tar cf - --exclude="$name/best" "$name") | split -b 15m -d - "$out/$name/$name.tar.part-" || rc=1
done
exit $rc
