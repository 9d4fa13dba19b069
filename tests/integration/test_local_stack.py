"""After `up`, the contract's topics exist on the real Kafka with their partitions and cleanup policy."""

from __future__ import annotations

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.catalogue import LISTING_TOPIC_PARTITIONS, all_topics
from tests import kafka_clients
from tests.conftest import Infra


async def topic_settings(bootstrap_servers: str, names: list[str]) -> dict[str, tuple[int, str]]:
    """name -> (partition count, cleanup.policy) as the cluster reports them."""
    admin = kafka_clients.admin(bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        partitions = {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name, configs={"cleanup.policy": None}) for name in names]
        policies: dict[str, str] = {}
        for response in await admin.describe_configs(resources):
            for resource in response.resources:
                entries = {entry[0]: entry[1] for entry in resource[4]}
                policies[resource[3]] = entries["cleanup.policy"]
    finally:
        await admin.close()
    return {name: (partitions[name], policies[name]) for name in names if name in partitions}


@pytest.mark.asyncio
async def test_contract_topics_exist_with_six_partitions_and_their_cleanup_policy(infra: Infra) -> None:
    specs = all_topics()

    found = await topic_settings(infra.bootstrap_servers, [spec.name for spec in specs])

    expected = {spec.name: (LISTING_TOPIC_PARTITIONS, spec.config["cleanup.policy"]) for spec in specs}
    assert found == expected
    assert {policy for _, policy in found.values()} == {"compact", "delete"}
