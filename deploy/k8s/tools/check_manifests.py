"""Structural checks of deploy/k8s against the contract: what a schema cannot see (ports, topics, ACLs, probes, secrets)."""

# Run by validate.sh with the tools venv (PyYAML) and the repository on PYTHONPATH, so that the contract's own
# tables (schemas/catalogue.py, services/topology.py) are the reference, not a second copy of them.

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from schemas.catalogue import CONSUMERS, FAMILIES, LISTING_TOPIC_PARTITIONS, LISTING_TOPICS, all_topics, dlq_topic
from services import topology

Resource = dict[str, Any]
PLACEHOLDER = "REPLACE"
# Secret values that are configuration, not secrets: they may stay literal.
NOT_SECRET = {("keda-kafka-sasl", "sasl"), ("keda-kafka-sasl", "username"), ("keda-kafka-sasl", "tls")}


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    checks: int = 0

    def expect(self, ok: bool, problem: str) -> None:
        self.checks += 1
        if not ok:
            self.problems.append(problem)


def load(directory: Path) -> tuple[list[Resource], list[str]]:
    files = sorted(p for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")
    resources = [doc for path in files for doc in yaml.safe_load_all(path.read_text()) if doc]
    return resources, [p.name for p in files]


def by_kind(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r.get("kind") == kind}


def contract_port(name: str) -> int:
    return topology.SERVICES[name].port - topology.PORT_OFFSET


def containers(deployment: Resource) -> list[Resource]:
    pod = deployment["spec"]["template"]["spec"]
    return list(pod.get("initContainers", [])) + list(pod["containers"])


def check_kustomization(directory: Path, files: list[str], report: Report) -> None:
    path = directory / "kustomization.yaml"
    listed = yaml.safe_load(path.read_text()).get("resources", []) if path.exists() else []
    report.expect(sorted(listed) == files, f"kustomization.yaml resources {sorted(listed)} differ from the manifests {files}")


def check_service(name: str, resources: list[Resource], report: Report) -> None:
    deployment = by_kind(resources, "Deployment").get(name)
    report.expect(deployment is not None, f"{name}: no Deployment")
    report.expect(name in by_kind(resources, "Service"), f"{name}: no Service")
    report.expect(name in by_kind(resources, "PodDisruptionBudget"), f"{name}: no PodDisruptionBudget")
    if deployment is None:
        return
    main = deployment["spec"]["template"]["spec"]["containers"][0]
    report.expect(main.get("command", [])[:3] == ["blacklist-sync", "run", name], f"{name}: container does not run {name}")
    ports = [p["containerPort"] for p in main.get("ports", [])]
    report.expect(ports == [contract_port(name)], f"{name}: container port {ports}, contract says {contract_port(name)}")
    probes = {kind: main.get(kind, {}).get("httpGet", {}).get("path") for kind in ("livenessProbe", "readinessProbe")}
    report.expect(probes == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}, f"{name}: probes are {probes}")
    for container in containers(deployment):
        resources_ = container.get("resources", {})
        report.expect(
            "memory" in resources_.get("requests", {}) and "memory" in resources_.get("limits", {}),
            f"{name}/{container['name']}: needs memory requests and limits",
        )


def check_consumer_scaling(name: str, resources: list[Resource], report: Report) -> None:
    scaled = by_kind(resources, "ScaledObject").get(name)
    report.expect(scaled is not None, f"{name}: no ScaledObject")
    if scaled is None:
        return
    spec = scaled["spec"]
    report.expect(spec["scaleTargetRef"]["name"] == name, f"{name}: ScaledObject scales {spec['scaleTargetRef']['name']}")
    report.expect(
        spec.get("maxReplicaCount", 100) <= LISTING_TOPIC_PARTITIONS,
        f"{name}: maxReplicaCount {spec.get('maxReplicaCount')} > {LISTING_TOPIC_PARTITIONS} partitions per topic",
    )
    kafka = [t for t in spec["triggers"] if t["type"] == "kafka"]
    report.expect(
        [t["metadata"].get("consumerGroup") for t in kafka] == [name], f"{name}: Kafka lag trigger must watch group {name}"
    )
    budget = by_kind(resources, "PodDisruptionBudget").get(name, {}).get("spec", {})
    report.expect(
        budget.get("minAvailable", 0) < spec.get("minReplicaCount", 1),
        f"{name}: PodDisruptionBudget minAvailable must stay below minReplicaCount, or no node could ever drain",
    )


def check_topics(resources: list[Resource], report: Report) -> None:
    topics = by_kind(resources, "KafkaTopic")
    expected = {t.name: t for t in all_topics()}
    report.expect(
        sorted(topics) == sorted(expected), f"KafkaTopics {sorted(topics)} differ from the contract's {sorted(expected)}"
    )
    for name, spec in expected.items():
        topic = topics.get(name, {}).get("spec", {})
        report.expect(topic.get("partitions") == spec.partitions, f"{name}: partitions {topic.get('partitions')}")
        config = {k: str(v) for k, v in topic.get("config", {}).items()}
        for key in ("cleanup.policy", "retention.ms"):
            if key in spec.config:
                report.expect(
                    config.get(key) == spec.config[key], f"{name}: {key} is {config.get(key)}, contract {spec.config[key]}"
                )


def acl_grants(user: Resource) -> set[tuple[str, str, str]]:
    """(resource type, name, operation) triples a KafkaUser is allowed."""
    acls = user.get("spec", {}).get("authorization", {}).get("acls", [])
    return {(a["resource"]["type"], a["resource"]["name"], op) for a in acls for op in a["operations"]}


def check_identities(resources: list[Resource], report: Report) -> None:
    users = by_kind(resources, "KafkaUser")
    for family in FAMILIES.values():
        writes = {n for t, n, op in acl_grants(users.get(family.service, {})) if t == "topic" and op == "Write"}
        report.expect(writes == {family.topic}, f"publisher {family.service} may write {sorted(writes)}, not only {family.topic}")
    for consumer in CONSUMERS:
        grants = acl_grants(users.get(consumer, {}))
        writes = {n for t, n, op in grants if t == "topic" and op == "Write"}
        reads = {n for t, n, op in grants if t == "topic" and op == "Read"}
        report.expect(writes == {dlq_topic(consumer)}, f"consumer {consumer} may write {sorted(writes)}, not only its DLQ")
        report.expect(reads == set(LISTING_TOPICS), f"consumer {consumer} reads {sorted(reads)}")
        report.expect(("group", consumer, "Read") in grants, f"consumer {consumer} may not use its group {consumer}")


def check_secrets(resources: list[Resource], report: Report) -> None:
    for name, secret in by_kind(resources, "Secret").items():
        report.expect("data" not in secret, f"secret {name}: use stringData placeholders, never encoded values")
        for key, value in secret.get("stringData", {}).items():
            if (name, key) not in NOT_SECRET:
                report.expect(PLACEHOLDER in str(value), f"secret {name}/{key} holds a value that is not a placeholder")


def referenced_secrets(deployment: Resource) -> Iterator[str]:
    pod = deployment["spec"]["template"]["spec"]
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            yield volume["secret"]["secretName"]
    for container in containers(deployment):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                yield ref["name"]


def check_references(resources: list[Resource], report: Report) -> None:
    # Strimzi's User Operator writes a Secret named after each KafkaUser.
    known = set(by_kind(resources, "Secret")) | set(by_kind(resources, "KafkaUser"))
    for name, deployment in by_kind(resources, "Deployment").items():
        for secret in referenced_secrets(deployment):
            report.expect(secret in known, f"{name}: refers to Secret {secret}, defined nowhere")
        for container in containers(deployment):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                report.expect(ref is None or ref in by_kind(resources, "ConfigMap"), f"{name}: ConfigMap {ref} undefined")


def check(directory: Path) -> Report:
    resources, files = load(directory)
    report = Report()
    check_kustomization(directory, files, report)
    for name in topology.SERVICES:
        check_service(name, resources, report)
    for name in CONSUMERS:
        check_consumer_scaling(name, resources, report)
    check_topics(resources, report)
    check_identities(resources, report)
    check_secrets(resources, report)
    check_references(resources, report)
    return report


def main() -> int:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    report = check(directory)
    for problem in report.problems:
        print(f"structure: {problem}")
    print(f"structure: {report.checks - len(report.problems)} of {report.checks} checks passed in {directory}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
