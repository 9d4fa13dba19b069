#!/usr/bin/env bash
# The whole suite: lint, types, then unit, integration and e2e tests on real Kafka and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

echo "== ruff"; $BIN/ruff check . && $BIN/ruff format --check .
echo "== mypy"; $BIN/mypy
echo "== unit and contract tests (no services)"; $BIN/python -m pytest tests/unit tests/contract -q -p no:cacheprovider

# The suite runs with Kafka access control on (SASL/SCRAM identities, ACLs); `make demo` keeps the open default.
export BLACKLIST_SYNC_KAFKA_ACCESS="${BLACKLIST_SYNC_KAFKA_ACCESS:-scram}"
started_here=0
stop() { if [[ $started_here == 1 ]]; then echo "== blacklist-sync down"; $BIN/blacklist-sync down || true; fi; }
trap stop EXIT  # before `up`: an `up` that fails halfway still stops what it started
if [[ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" || -z "${DATABASE_URL:-}" ]]; then
  if ! $BIN/python -c "import sys; from services import localinfra; sys.exit(0 if localinfra.is_running() else 1)"; then
    started_here=1
  fi
  echo "== local Kafka and PostgreSQL (blacklist-sync up)"
  $BIN/blacklist-sync up
  set -a; . "${BLACKLIST_SYNC_HOME:-$HOME/.blacklist-sync}/env"; set +a
fi

echo "== integration, e2e, browser and deployment tests (real Kafka, real PostgreSQL, services as processes)"
$BIN/python -m pytest tests/integration tests/e2e tests/browser tests/deploy -v -p no:cacheprovider --durations=15 \
  --ignore tests/e2e/test_faststream_run.py "$@"

# Own sessions: the session-wide `services` fixture above keeps every consumer group busy.
echo "== adversarial records, fuzzing and HTTP edges (its own airline consumer)"
$BIN/python -m pytest tests/adversarial -v -p no:cacheprovider --durations=10

echo "== services run the FastStream way; SIGTERM mid-load loses nothing (no other airline consumer may run)"
$BIN/python -m pytest tests/e2e/test_faststream_run.py -v -p no:cacheprovider

echo "== fault tests (kill -9, Kafka and PostgreSQL outages, rebalances)"
$BIN/python -m pytest tests/faults -v -p no:cacheprovider --durations=10
