#!/usr/bin/env bash
# The whole life cycle on the bundled data (what `make run` shows):
#   1. an API server for the duration (gunicorn on 127.0.0.1:$PORT, unless one already answers);
#   2. when nothing is deployed yet, a first deployment from practicedata (config.practice.json);
#   3. fullprocess on sourcedata (config.json): new data, drift, re-train, re-deploy, reports.
# Running it again is a no-op tick that says "no new data".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
URL="http://$HOST:$PORT"
mkdir -p logs

health() { "$PY" -c "import sys, urllib.request; urllib.request.urlopen('$URL/health', timeout=2)" 2>/dev/null; }

server_pid=""
stop_server() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi; }
trap stop_server EXIT

if health; then
  echo "== using the API already answering at $URL"
else
  echo "== starting the API (gunicorn, 2 workers) at $URL; its log: logs/gunicorn.log"
  RISK_CONFIG="$PWD/config.json" .venv/bin/gunicorn --workers 2 --bind "$HOST:$PORT" wsgi:app \
    >> logs/gunicorn.log 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do health && break; sleep 0.1; done
  health || { echo "error: the API did not start at $URL (see logs/gunicorn.log)." >&2; exit 1; }
fi

if [ ! -e production_deployment/current ]; then
  echo "== first deployment from practicedata"
  "$PY" fullprocess.py --config config.practice.json --api-url "$URL"
fi
echo "== fullprocess on sourcedata"
status=0
"$PY" fullprocess.py --config config.json --api-url "$URL" || status=$?
"$PY" fullprocess.py --config config.json --history
exit "$status"
