#!/usr/bin/env bash
# Rehearse a Hugging Face Space build of this repository on this machine:
#   1. a fresh virtual environment and an empty folder holding only requirements.txt;
#      `pip install -r requirements.txt` there (the Space installs it before the code exists);
#   2. the repository copied in (git ls-files: tracked files only);
#   3. app.py started the way a Space starts it (GRADIO_SERVER_NAME=0.0.0.0, port 7860, or a
#      free port when 7860 is taken), the page fetched on 127.0.0.1: HTTP 200 and the app's title in it;
#   4. the app stopped and everything removed (also on failure or Ctrl-C).
#
#   bash scripts/rehearse_space.sh [--keep] [--dev]
#     --keep  leave the temporary folder (its path is printed) for a look afterwards
#     --dev   also install requirements-dev.txt into the same environment and check that the
#             `interir` command (the test route's `-e .`) runs
# Env: PYTHON (default python3), START_TIMEOUT seconds for the app to answer (default 300).
# Exit status 0 when the page was served, 1 otherwise; the last lines say which step failed.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
START_TIMEOUT=${START_TIMEOUT:-300}
KEEP=0 DEV=0
for arg in "$@"; do
  case $arg in
    --keep) KEEP=1 ;;
    --dev) DEV=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "rehearse_space: unknown option $arg" >&2; exit 2 ;;
  esac
done

WORK=$(mktemp -d -t interir-space-XXXXXX)
APP_PID=""
cleanup() {
  if [ -n "$APP_PID" ] && kill -0 "$APP_PID" 2>/dev/null; then
    kill -TERM "$APP_PID" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$APP_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$APP_PID" 2>/dev/null
  fi
  if [ "$KEEP" = 1 ]; then echo "kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "REHEARSAL FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

SPACE="$WORK/space"   # what the Space's build sees as the repository folder
mkdir -p "$SPACE"
cp "$REPO/requirements.txt" "$SPACE/"

echo "== 1. fresh venv + pip install -r requirements.txt (the only file in $SPACE)"
t0=$(now)
"$PYTHON" -m venv "$WORK/venv" || fail "could not create a virtual environment with $PYTHON"
PY="$WORK/venv/bin/python"
"$PY" -m pip install -q --upgrade pip >"$WORK/pip.log" 2>&1 || true
(cd "$SPACE" && "$PY" -m pip install -r requirements.txt) >>"$WORK/pip.log" 2>&1 \
  || { tail -n 15 "$WORK/pip.log" >&2; fail "pip install -r requirements.txt (log above)"; }
echo "   installed in $(secs "$t0") s; $("$PY" -m pip list 2>/dev/null | grep -ciE '^(torch|gradio|numpy) ') key packages present"

echo "== 2. copy the repository in (git ls-files)"
n=0
while IFS= read -r -d '' f; do
  [ -f "$REPO/$f" ] || continue                  # tracked but deleted, or a submodule
  mkdir -p "$SPACE/$(dirname "$f")" && cp -p "$REPO/$f" "$SPACE/$f" && n=$((n + 1))
done < <(git -C "$REPO" ls-files -z)
[ -f "$SPACE/app.py" ] || fail "no app.py among the tracked files"
echo "   $n files"

PORT=7860
if ! "$PY" -c "import socket,sys; s=socket.socket(); s.bind(('0.0.0.0', $PORT))" 2>/dev/null; then
  PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  echo "   port 7860 is busy: using $PORT"
fi

echo "== 3. start app.py as a Space does (0.0.0.0:$PORT) and fetch the page"
t0=$(now)
(cd "$SPACE" && exec env GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT="$PORT" GRADIO_ANALYTICS_ENABLED=False \
   SYSTEM=spaces HOME="$WORK/home" "$PY" app.py) >"$WORK/app.log" 2>&1 &
APP_PID=$!
code="" body="$WORK/page.html"
for _ in $(seq 1 "$START_TIMEOUT"); do
  kill -0 "$APP_PID" 2>/dev/null || { tail -n 20 "$WORK/app.log" >&2; fail "app.py exited before serving (log above)"; }
  code=$(curl -s -o "$body" -w '%{http_code}' --max-time 10 "http://127.0.0.1:$PORT/" 2>/dev/null) || code=""
  [ "$code" = 200 ] && break
  sleep 1
done
[ "$code" = 200 ] || { tail -n 20 "$WORK/app.log" >&2; fail "no HTTP 200 from http://127.0.0.1:$PORT/ within ${START_TIMEOUT} s"; }
# Gradio sets the document title from its config (the page's JSON), not from a <title> tag
grep -qE '<title>InterIR Explorer</title>|"title": ?"InterIR Explorer"' "$body" \
  || fail "HTTP 200 but the page does not carry the title InterIR Explorer"
echo "   HTTP 200, title \"InterIR Explorer\" in the page, after $(secs "$t0") s"
grep -m1 -E "model:" "$WORK/app.log" | sed 's/^/   app log: /'

if [ "$DEV" = 1 ]; then
  echo "== 4. the test route: pip install -r requirements-dev.txt, then the interir command"
  t0=$(now)
  (cd "$SPACE" && "$PY" -m pip install -r requirements-dev.txt) >>"$WORK/pip.log" 2>&1 \
    || { tail -n 15 "$WORK/pip.log" >&2; fail "pip install -r requirements-dev.txt (log above)"; }
  "$WORK/venv/bin/interir" --help >/dev/null 2>&1 || fail "requirements-dev.txt did not install the interir command"
  echo "   installed in $(secs "$t0") s; \`interir --help\` runs"
fi

echo "REHEARSAL PASSED"
