"""deploy/k8s validates offline (kubeconform + contract checks), and each kind of mistake makes validation fail."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, broken_copy, run_validator

pytestmark = pytest.mark.deploy

K8S = ROOT / "deploy" / "k8s"
VALIDATE = K8S / "validate.sh"


def test_manifests_are_valid_for_every_supported_kubernetes_version_and_match_the_contract() -> None:
    outcome = run_validator(VALIDATE)
    assert outcome.returncode == 0, outcome.output
    summaries = re.findall(
        r"Summary: (\d+) resources found in (\d+) files - Valid: (\d+), Invalid: (\d+), Errors: (\d+), Skipped: (\d+)",
        outcome.output,
    )
    assert len(summaries) == 2, outcome.output  # one per Kubernetes version
    for found, _, valid, invalid, errors, skipped in summaries:
        assert int(found) > 0 and valid == found and (invalid, errors, skipped) == ("0", "0", "0")
    structure = re.search(r"structure: (\d+) of (\d+) checks passed", outcome.output)
    assert structure is not None, outcome.output
    assert structure[1] == structure[2] and int(structure[2]) > 0


@pytest.mark.parametrize(
    ("file", "old", "new", "says"),
    [
        # Kubernetes schema, strict: an unknown field (a typo) and a wrong type.
        ("consumers.yaml", "readinessProbe:", "readinesProbe:", "Deployment airline is invalid"),
        ("publishers.yaml", "containerPort: 8001", 'containerPort: "8001"', "Deployment court is invalid"),
        # Vendored CRD schemas: a typo in a Strimzi topic and in a KEDA trigger.
        ("kafka.yaml", "partitions: 6", "partition: 6", "KafkaTopic court.listings.v1 is invalid"),
        ("consumers.yaml", "metricType: Utilization", "metricType: Utilisation", "ScaledObject airline is invalid"),
        # Contract checks a schema cannot make.
        ("kafka.yaml", "cleanup.policy: compact", "cleanup.policy: delete", "cleanup.policy"),
        ("consumers.yaml", "maxReplicaCount: 6", "maxReplicaCount: 12", "maxReplicaCount 12"),
        ("publishers.yaml", "containerPort: 8002", "containerPort: 8080", "contract says 8002"),
        ("consumers.yaml", "path: /readyz", "path: /healthz", "probes are"),
        (
            "kafka.yaml",
            "name: airline.dlq.v1\n          patternType: literal\n        operations: [Write",
            "name: court.listings.v1\n          patternType: literal\n        operations: [Write",
            "consumer airline may write",
        ),
        ("secrets.yaml", "REPLACE-WITH-32-RANDOM-BYTES-BASE64", "s3cr3t-value", "not a placeholder"),
    ],
)
def test_each_kind_of_mistake_fails_validation(tmp_path: Path, file: str, old: str, new: str, says: str) -> None:
    replace = broken_copy(K8S, tmp_path / "k8s")
    replace(file, old, new)
    outcome = run_validator(VALIDATE, tmp_path / "k8s")
    assert outcome.returncode != 0, outcome.output
    assert says in outcome.output
