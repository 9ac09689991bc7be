#!/usr/bin/env bash
# One call on a lent GPU machine: train the given configs side by side on the GPU for at most
# BUDGET seconds, then pack each run's weights and logs into $OUT/<name>/ (what comes back).
#
#   device run, carry [data_local/train_clean, data_local/val]:
#     bash scripts/device_train.sh [--fit] 540 configs/interir-n6-gpu1.yaml configs/interir-n6-stdconv-gpu1.yaml
#   a CPU run continued there (its state.json, state-*.safetensors and log.csv copied into
#   .device/runs/<name>/, carry [data_local/train_clean, data_local/val, .device/runs]):
#     RUNS_DIR=$PWD/.device/runs bash scripts/device_train.sh 430 configs/interir-n6-long8.yaml
#
# Each config runs as written except `device` (DEVICE, default cuda), its run folder
# (RUNS_DIR/<name>, RUNS_DIR default /tmp/device-runs) and, with two configs,
# `checkpoint.keep_every` (dropped: no room for two runs' kept weights; --fit sets its own).
# A run folder that already holds a training state (carried in under RUNS_DIR) is continued
# with --resume.
#
# --fit: the GPU's speed is not known ahead, so a cosine schedule written for the CPU would be
# cut off half-way. First all runs train together in a scratch folder until each has logged
# PROBE_ROWS (8) rows of 5 iterations, or for PROBE_SECONDS (90) at most; then
# scripts/device_fit.py sets, in every run's copy, `train.total_iter` to what the slowest run
# fits in the rest of the budget (a multiple of FIT_STEP, default 250, the same for all runs so
# twins stay at one iteration), with validation, state and kept weights at each quarter. If the probe says nothing usable, the configs train as written.
#
# At BUDGET seconds a run still going gets SIGTERM: `interir train` saves its state at the
# current iteration and stops (docs/design.md). Back come, per run, its console log (train.log)
# and its run folder as a tar in parts of 15 MiB (the tool returns at most 8 files of 16 MiB,
# 64 MiB in all). A run cut off brings back last/, its state (for --resume on the CPU) and
# log.csv; a run that finished its schedule needs no state. Both bring back as many of the
# weights kept on the device as fit (newest first). Each brings back the config it trained as
# device-config.yaml. Unpack into RUNS:
#   cat FILES_AT/<name>/<name>.tar.part-* | tar xf - -C RUNS
# Needs only what the device image has (torch, numpy, pillow, safetensors, pyyaml, tqdm).
set -uo pipefail
fit=0
if [ "${1:-}" = "--fit" ]; then fit=1; shift; fi
if [ $# -lt 2 ] || [ $# -gt 3 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  # two runs at most: each comes back as three files and the tool returns eight
  echo "usage: bash scripts/device_train.sh [--fit] BUDGET_SECONDS CONFIG [CONFIG]" >&2; exit 2
fi
budget=$1; shift
start=$SECONDS
out=${OUT:?set OUT to the folder that comes back}
runs=${RUNS_DIR:-/tmp/device-runs}
probe=${PROBE_SECONDS:-90} probe_rows=${PROBE_ROWS:-8} pids=()
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
command -v nvidia-smi >/dev/null && nvidia-smi -L
mkdir -p "$runs" "$out"
names=()
for cfg in "$@"; do
  name=$("$py" - "$cfg" "$runs" "${DEVICE:-cuda}" $# <<'EOF'
import sys, yaml
from interir.config import load_config
from interir.errors import InterIRError
src, runs, device, n_runs = sys.argv[1:]
try:
    cfg = load_config(src)          # validated here, so a bad config fails before any GPU time
except InterIRError as exc:
    sys.exit(f"device_train: error: {exc}")
raw = yaml.safe_load(open(src))
raw["device"] = device
if int(n_runs) > 1:  # no room for two runs' kept weights in what comes back
    (raw.get("checkpoint") or {}).pop("keep_every", None)
with open(f"{runs}/{cfg['name']}.yaml", "w") as fh:
    yaml.safe_dump(raw, fh)
print(cfg["name"])
EOF
) || exit 2
  names+=("$name")
done

if [ $fit = 1 ]; then
  # the probe: the same configs, a schedule too long to matter, a log row every 5 iterations
  mkdir -p "$runs/probe"
  for name in "${names[@]}"; do
    "$py" - "$runs/$name.yaml" "$runs/probe/$name.yaml" <<'EOF'
import sys, yaml
raw = yaml.safe_load(open(sys.argv[1]))
raw["train"]["total_iter"] = 10**6
raw.setdefault("logger", {})["print_every"] = 5
raw.setdefault("val", {})["every"] = 10**6
raw.setdefault("checkpoint", {})["every"] = 10**6
yaml.safe_dump(raw, open(sys.argv[2], "w"))
EOF
    "$py" -m interir.cli train --config "$runs/probe/$name.yaml" \
      --run-dir "$runs/probe/$name" > "$runs/probe/$name.log" 2>&1 &
    pids+=($!)
    disown $!   # out of the job table: bash prints no "Killed" line when the probe is cut off
  done
  # until every probe has logged PROBE_ROWS rows (start-up takes what it takes), at most PROBE_SECONDS
  t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$probe" ]; do
    sleep 2
    ready=1
    for name in "${names[@]}"; do
      rows=$(grep -c '^train,' "$runs/probe/$name/log.csv" 2>/dev/null); rows=${rows:-0}
      [ "$rows" -ge "$probe_rows" ] || ready=0
    done
    [ $ready = 1 ] && break
  done
  kill -KILL "${pids[@]}" 2>/dev/null
  # a disowned child cannot be waited for: poll until each is gone (bash reaps it)
  for pid in "${pids[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done
  left=$((budget - (SECONDS - start)))
  # FIT_RESERVE (60 s): the restart (imports, data, autotuning), validations, packing
  "$py" scripts/device_fit.py "$runs" "$left" "${FIT_STEP:-250}" "${FIT_RESERVE:-60}" "${names[@]}" \
    || echo "fit failed: the configs train as written"
fi

left=$((budget - (SECONDS - start)))
for name in "${names[@]}"; do
  resume=(); [ -f "$runs/$name/state.json" ] && resume=(--resume)   # a run carried in continues
  timeout -s TERM -k 120 "$left" "$py" -m interir.cli train --config "$runs/$name.yaml" \
    --run-dir "$runs/$name" "${resume[@]}" > "$runs/$name.log" 2>&1 &
done
wait
rc=0
share=$((56 / ${#names[@]}))   # MiB that come back per run (two parts of 15 MiB at most)
for name in "${names[@]}"; do
  mkdir -p "$out/$name"
  # the console log without the progress bar's redraws
  tr '\r' '\n' < "$runs/$name.log" | grep -avE "^$name: +[0-9]+%\|" > "$out/$name/train.log"
  echo "== $name"; tail -n 3 "$out/$name/train.log"
  if [ ! -f "$runs/$name/state.json" ]; then echo "no training state for $name" >&2; rc=1; continue; fi
  awk -F, '$1=="val" && $8=="average" {print "val", $2, $9}' "$runs/$name/log.csv"
  items=$("$py" - "$runs" "$name" "$share" <<'EOF'
import json, sys, yaml
from pathlib import Path
runs, name, share = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]) * 2**20
run = runs / name
total = yaml.safe_load(open(runs / f"{name}.yaml"))["train"]["total_iter"]
size = lambda p: p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
(run / "device-config.yaml").write_text((runs / f"{name}.yaml").read_text())  # what it trained
items = [run / "last", run / "log.csv", run / "state.json", run / "device-config.yaml"]
items += [run / "ema"] if (run / "ema").is_dir() else []     # train.ema_decay: the average
if json.loads((run / "state.json").read_text())["iteration"] < total:    # cut off: resumable
    items += sorted(run.glob("state-*.safetensors"))
# the kept weights and averages (made here: a carried-in run brings none), newest first, as
# many as fit; those of the last iteration are last/ and ema/ already
kept_dirs = [*run.glob("weights-*"), *run.glob("ema-*")]
for kept in sorted(kept_dirs, key=lambda p: (p.name.rsplit("-", 1)[1], p.name), reverse=True):
    if kept.name.rsplit("-", 1)[1] != "%08d" % total and sum(map(size, items)) + size(kept) <= share:
        items.append(kept)
print(" ".join(str(p.relative_to(runs)) for p in items))
EOF
) || { rc=1; continue; }
  echo "packed: $items"
  # shellcheck disable=SC2086  # names from the run folder, no spaces
  (cd "$runs" && tar cf - $items) | split -b 15m -d - "$out/$name/$name.tar.part-" || rc=1
done
exit $rc
