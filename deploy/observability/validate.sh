#!/usr/bin/env bash
# Check the Prometheus alert rules and the Grafana dashboard with promtool, offline:
#   bash deploy/observability/validate.sh [OBSERVABILITY_DIR]
# promtool comes from Debian's `prometheus` package, unpacked (not installed: no daemon is started) once into
# $BLACKLIST_SYNC_TOOLS (default ~/.cache/blacklist-sync-tools).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$(cd "${1:-$HERE}" && pwd)
TOOLS=${BLACKLIST_SYNC_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/blacklist-sync-tools}
PROMTOOL="$TOOLS/bin/promtool"

mkdir -p "$TOOLS/bin"
exec 9>"$TOOLS/.lock"
flock 9
if [[ ! -x "$PROMTOOL" ]]; then
  command -v apt-get >/dev/null || { echo "validate: promtool comes from Debian's prometheus package; no apt-get here" >&2; exit 2; }
  echo "validate: fetching promtool (Debian package prometheus, unpacked only)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null; }; })
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  install -m 0755 "$work/root/usr/bin/promtool" "$PROMTOOL"
fi
flock -u 9
"$PROMTOOL" --version 2>&1 | head -1

status=0
echo "validate: promtool check rules"
"$PROMTOOL" check rules "$DIR/prometheus/alerts.yaml" || status=1
echo "validate: promtool test rules (each alert fires on its failure, stays silent when healthy)"
(cd "$DIR/prometheus" && "$PROMTOOL" test rules alerts.test.yaml) || status=1

echo "validate: dashboard structure and every panel query parsed by promtool"
queries=$(mktemp --suffix=.rules.json)
python3 "$HERE/tools/dashboard_rules.py" "$DIR/grafana/blacklist-sync.json" "$queries" || status=1
"$PROMTOOL" check rules "$queries" || status=1
rm -f "$queries"

if ((status)); then echo "validate: FAILED ($DIR)"; else echo "validate: ok ($DIR)"; fi
exit $status
