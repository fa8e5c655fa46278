#!/usr/bin/env bash
# The whole life cycle on the bundled data (what `make run` shows):
#   1. when nothing is deployed yet, a first deployment from practicedata (config.practice.json),
#      with an API serving that config for its API calls;
#   2. fullprocess on sourcedata (config.json), with an API serving the production config: new
#      data, drift, re-train, re-deploy, diagnostics, reports, API returns;
#   3. where the outputs are, and how to open the web page (make serve, then the URL).
# Each API is gunicorn on 127.0.0.1:$PORT for the duration only, as the course switches
# config.json and restarts the app between practice and production. Running this again is a
# no-op tick that says "no new data".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
URL="http://$HOST:$PORT"
# make run-db runs the same life cycle on a database table: the configs of the two steps, their
# production folder, and a command run between them (the new rows arriving) come from there.
PRACTICE_CONFIG=${LIFECYCLE_FIRST_CONFIG:-config.practice.json}
CONFIG=${LIFECYCLE_CONFIG:-config.json}
PROD=${LIFECYCLE_PROD:-production_deployment}
NEW_DATA=${LIFECYCLE_NEW_DATA:-}
mkdir -p logs

health() { "$PY" -c "import urllib.request; urllib.request.urlopen('$URL/health', timeout=2)" 2>/dev/null; }

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  server_pid=""
}
trap stop_server EXIT

start_server() {  # $1: the config the API serves
  if health; then
    echo "error: something already answers at $URL; stop it or choose another PORT=." >&2
    exit 1
  fi
  echo "== API for $1: gunicorn (gunicorn.conf.py) at $URL (log: logs/gunicorn.log)"
  HOST="$HOST" PORT="$PORT" RISK_CONFIG="$PWD/$1" .venv/bin/gunicorn -c gunicorn.conf.py wsgi:app \
    >> logs/gunicorn.log 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do health && return 0; sleep 0.1; done
  echo "error: the API did not start at $URL (see logs/gunicorn.log)." >&2
  exit 1
}

if [ ! -e "$PROD/current" ]; then
  echo "== first deployment ($PRACTICE_CONFIG)"
  start_server "$PRACTICE_CONFIG"
  "$PY" fullprocess.py --config "$PRACTICE_CONFIG" --api-url "$URL"
  stop_server
fi
if [ -n "$NEW_DATA" ]; then echo "== new data: $NEW_DATA"; bash -c "$NEW_DATA"; fi
echo "== fullprocess ($CONFIG)"
start_server "$CONFIG"
status=0
"$PY" fullprocess.py --config "$CONFIG" --api-url "$URL" || status=$?
stop_server
echo "== run history (python fullprocess.py --history)"
"$PY" fullprocess.py --config "$CONFIG" --history
echo "== where to look"
# riskcore.report.outputs is standard library only: naming the files needs no matplotlib or reportlab.
"$PY" -c 'import sys; from riskcore.config import load_config; from riskcore.report.outputs import where_to_look
print(where_to_look(load_config(sys.argv[1]), sys.argv[2], int(sys.argv[3])))' "$CONFIG" "$HOST" "$PORT"
exit "$status"
