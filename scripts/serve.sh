#!/usr/bin/env bash
# Serve the explorer and the API together on the configured database, until Ctrl-C.
# Used by `make run`; each can also run alone: `python -m api`, `python -m explorer`.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}

trap 'kill $(jobs -p) 2>/dev/null || true' EXIT INT TERM
"$python" -m api &
"$python" -m explorer &
echo "explorer: http://localhost:${EXPLORER_PORT:-5006}/app   API: http://${API_HOST:-127.0.0.1}:${API_PORT:-8000}/api/v1/people (Ctrl-C stops both)"
# If either dies, stop the other and report its failure.
wait -n
