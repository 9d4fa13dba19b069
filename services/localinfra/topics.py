"""Create the contract's topics (CONTRACT section 3) on a Kafka cluster; existing ones get the contract's settings."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.catalogue import TopicSpec
from services.kit.settings import KafkaAuth
from services.localinfra.procs import LocalInfraError

TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(
    bootstrap_servers: str, specs: Iterable[TopicSpec], progress: Callable[[str], None], auth: KafkaAuth | None = None
) -> None:
    """Create every missing topic of specs with replication factor 1 (the local cluster has one node), as `auth`."""
    security = (auth or KafkaAuth()).aiokafka_options()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=30000, **security)
    await admin.start()
    try:
        specs = list(specs)
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        present = [spec for spec in specs if spec.name in existing]
        if present:
            # A home made by an older `up` gets today's settings (e.g. the DLQ's larger message size).
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, s.name, configs=dict(s.config)) for s in present])
        if not missing:
            progress("topics: all present")
            return
        response = await admin.create_topics([_new_topic(spec, replication_factor=1) for spec in missing])
        _raise_on_errors(response.topic_errors)
        for spec in missing:
            progress(f"topics: created {spec.name} ({spec.partitions} partitions, {spec.config['cleanup.policy']})")
    finally:
        await admin.close()


def _new_topic(spec: TopicSpec, replication_factor: int) -> NewTopic:
    return NewTopic(
        name=spec.name,
        num_partitions=spec.partitions,
        replication_factor=replication_factor,
        topic_configs=dict(spec.config),
    )


def _raise_on_errors(topic_errors: Iterable[tuple[object, ...]]) -> None:
    """CreateTopics answers per topic; an already existing topic (a concurrent `up`) is not an error."""
    failures = [
        f"{error[0]}: error {error[1]} {error[2] if len(error) > 2 else ''}".strip()
        for error in topic_errors
        if error[1] not in (0, TOPIC_ALREADY_EXISTS)
    ]
    if failures:
        raise LocalInfraError("could not create topics: " + "; ".join(failures))
