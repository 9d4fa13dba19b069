#!/usr/bin/env bash
# Validate deploy/k8s offline: kubeconform against Kubernetes and vendored CRD schemas, then the contract checks.
#   bash deploy/k8s/validate.sh [MANIFEST_DIR]
# Installs what it needs once into $BLACKLIST_SYNC_TOOLS (default ~/.cache/blacklist-sync-tools):
#   kubeconform      `go install` through the Go module proxy (needs Go; /usr/local/go/bin/go on our machines)
#   Kubernetes schemas  from the kubernetes-validate wheel (PyPI), made standalone by tools/standalone_schemas.py
# CRDs (Strimzi Kafka/KafkaNodePool/KafkaTopic/KafkaUser, KEDA ScaledObject/TriggerAuthentication) are checked
# against the strict schemas in schemas/, written from the upstream CRDs for the fields these manifests use.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MANIFESTS=$(cd "${1:-$HERE}" && pwd)
TOOLS=${BLACKLIST_SYNC_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/blacklist-sync-tools}
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VALIDATE_VERSION=1.37.0
# The oldest and the newest Kubernetes release the manifests promise to work on.
KUBERNETES_VERSIONS=(1.31.0 1.37.0)

mkdir -p "$TOOLS/bin"
exec 9>"$TOOLS/.lock"
flock 9  # one installer at a time; a second run waits, then finds everything in place

if [[ ! -x "$TOOLS/bin/kubeconform-$KUBECONFORM_VERSION" ]]; then
  GO=$(command -v go || echo /usr/local/go/bin/go)
  [[ -x "$GO" ]] || { echo "validate: kubeconform needs Go to install (go install); none found" >&2; exit 2; }
  echo "validate: installing kubeconform $KUBECONFORM_VERSION (go install)"
  GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod "$GO" install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  mv "$TOOLS/bin/kubeconform" "$TOOLS/bin/kubeconform-$KUBECONFORM_VERSION"
fi

VENV="$TOOLS/venv-k8s-$KUBERNETES_VALIDATE_VERSION"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import kubernetes_validate, yaml" 2>/dev/null; then
  echo "validate: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (Kubernetes JSON schemas) into $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" pyyaml
fi

SCHEMAS="$TOOLS/k8s-schemas-$KUBERNETES_VALIDATE_VERSION"
for version in "${KUBERNETES_VERSIONS[@]}"; do
  if [[ ! -f "$SCHEMAS/v$version-standalone-strict/deployment-apps-v1.json" ]]; then
    "$VENV/bin/python" "$HERE/tools/standalone_schemas.py" --out "$SCHEMAS" "$version"
  fi
done
flock -u 9

mapfile -t files < <(find "$MANIFESTS" -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml | sort)
((${#files[@]})) || { echo "validate: no manifests in $MANIFESTS" >&2; exit 2; }

status=0
for version in "${KUBERNETES_VERSIONS[@]}"; do
  echo "validate: kubeconform -strict, Kubernetes $version"
  "$TOOLS/bin/kubeconform-$KUBECONFORM_VERSION" -strict -summary -output text -kubernetes-version "$version" \
    -schema-location "$SCHEMAS/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -schema-location "$HERE/schemas/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
    "${files[@]}" || status=1
done

# The contract's tables come from the repository itself; topology ports are read without a local port offset.
env -u BLACKLIST_SYNC_PORT_OFFSET PYTHONPATH="$ROOT" "$VENV/bin/python" "$HERE/tools/check_manifests.py" "$MANIFESTS" || status=1

if ((status)); then echo "validate: FAILED ($MANIFESTS)"; else echo "validate: ok ($MANIFESTS)"; fi
exit $status
