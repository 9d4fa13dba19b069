#!/usr/bin/env bash
# The whole suite: lint, types, then unit, integration and e2e tests on real Kafka and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

echo "== ruff"; $BIN/ruff check .
echo "== mypy"; $BIN/mypy
echo "== unit tests (no I/O)"; $BIN/python -m pytest tests/unit -q -p no:cacheprovider

started_here=0
if [[ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" || -z "${DATABASE_URL:-}" ]]; then
  if ! $BIN/python -c "import sys; from services import localinfra; sys.exit(0 if localinfra.is_running() else 1)"; then
    started_here=1
  fi
  echo "== local Kafka and PostgreSQL (blacklist-sync up)"
  $BIN/blacklist-sync up
  set -a; . "${BLACKLIST_SYNC_HOME:-$HOME/.blacklist-sync}/env"; set +a
fi
stop() { if [[ $started_here == 1 ]]; then echo "== blacklist-sync down"; $BIN/blacklist-sync down || true; fi; }
trap stop EXIT

echo "== integration and e2e tests (real Kafka, real PostgreSQL, services as processes)"
$BIN/python -m pytest tests/integration tests/e2e -v -p no:cacheprovider --durations=10 "$@"
