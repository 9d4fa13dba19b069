"""`ops lag` on the real cluster agrees with Kafka's own `kafka-consumer-groups --describe`."""

from __future__ import annotations

import json
import uuid

import pytest

from schemas.catalogue import CONSUMERS, FAMILIES
from services.ops.bench import COURT, listing_event
from tests.conftest import Infra
from tests.integration.helpers import fresh_person
from tests.integration.test_ops_support import caught_up, describe_rows, hash_key, kafka_tool, publish, run_cli

pytestmark = pytest.mark.integration


async def test_lag_per_group_and_partition_agrees_with_kafka_consumer_groups_describe(
    services: dict[str, str], infra: Infra
) -> None:
    listing_id = f"{COURT}:lag-{uuid.uuid4().hex[:8]}"
    await publish(
        infra, FAMILIES["court"].topic, "court-dev", COURT, [(listing_id, listing_event(listing_id, fresh_person(), hash_key()))]
    )
    for consumer in CONSUMERS:
        await caught_up(infra, consumer)

    ours = await run_cli(infra, "ops", "lag", *CONSUMERS, "--json")
    theirs = await kafka_tool(infra, "--describe", *(a for c in CONSUMERS for a in ("--group", c)))

    assert ours.code == 0, ours.err
    assert theirs.code == 0, theirs.err
    kafka_rows = {
        (r["GROUP"], r["TOPIC"], int(r["PARTITION"])): (int(r["CURRENT-OFFSET"]), int(r["LOG-END-OFFSET"]), int(r["LAG"]))
        for r in describe_rows(theirs.out)
        if r["CURRENT-OFFSET"] != "-"
    }
    our_rows = {(r["group"], r["topic"], r["partition"]): (r["committed"], r["end"], r["lag"]) for r in json.loads(ours.out)}
    assert our_rows == kafka_rows
    assert {group for group, _, _ in our_rows} == set(CONSUMERS)
    assert any(end > 0 for _, end, _ in our_rows.values()), "the comparison covered partitions holding records"


async def test_lag_table_shows_a_consumer_behind_while_it_is_stopped_from_reading(infra: Infra) -> None:
    group = f"ops-lag-probe-{uuid.uuid4().hex[:8]}"
    topic = FAMILIES["court"].topic
    reset = await kafka_tool(infra, "--reset-offsets", "--to-earliest", "--execute", "--group", group, "--topic", topic)
    assert reset.code == 0, reset.err

    shown = await run_cli(infra, "ops", "lag", group)

    assert shown.code == 0, shown.err
    lines = [line.split() for line in shown.out.splitlines() if line.startswith(group + " ")]
    described = {
        (r["TOPIC"], int(r["PARTITION"])): int(r["LAG"])
        for r in describe_rows((await kafka_tool(infra, "--describe", "--group", group)).out)
    }
    assert {(cells[1], int(cells[2])): int(cells[5]) for cells in lines} == described
    assert sum(described.values()) > 0, "a group reset to the earliest offsets of a non-empty topic lags"
    assert f"{group}: lag {sum(described.values()):,} over {len(described)} partitions" in shown.out
    await kafka_tool(infra, "--delete", "--group", group)
