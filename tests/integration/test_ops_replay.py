"""Replays into the live copy: `ops replay --to-earliest / --to-datetime`, and Kafka's own reset-offsets path."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from schemas.catalogue import FAMILIES, LISTING_TOPICS
from services import runner
from services.ops.bench import COURT, listing_event
from services.topology import SERVICES
from tests.conftest import Infra
from tests.integration.helpers import fresh_person
from tests.integration.test_ops_rebuild import publish_varied_history
from tests.integration.test_ops_support import (
    caught_up,
    child_service_pid,
    copy_of,
    execute,
    fetch,
    hash_key,
    kafka_tool,
    publish,
    run_cli,
    wait_gone,
)

pytestmark = pytest.mark.integration
COURT_TOPIC = FAMILIES["court"].topic


async def held(infra: Infra, consumer_schema: str, listing_ids: list[str]) -> dict[str, int]:
    rows = await fetch(
        infra, f'SELECT listing_id, version FROM "{consumer_schema}".listings WHERE listing_id = ANY($1::text[])', listing_ids
    )
    return {r["listing_id"]: r["version"] for r in rows}


async def test_replay_to_earliest_restores_rows_deleted_by_hand_beside_the_running_consumer(
    services: dict[str, str], infra: Infra
) -> None:
    run = uuid.uuid4().hex[:8]
    ids = [f"{COURT}:{run}-{n}" for n in range(3)]
    await publish(infra, COURT_TOPIC, "court-dev", COURT, [(i, listing_event(i, fresh_person(), hash_key())) for i in ids])
    await caught_up(infra, "airline")
    before = await copy_of(infra, "airline")
    await execute(infra, "DELETE FROM airline.listings WHERE listing_id = ANY($1::text[])", ids)

    replayed = await run_cli(infra, "ops", "replay", "airline", "--to-earliest")

    assert replayed.code == 0, replayed.err
    assert await copy_of(infra, "airline") == before
    assert f"{len(ids)} rows written" in replayed.out or f"{len(ids):,} rows written" in replayed.out, replayed.out
    assert "replay airline [" in replayed.err
    assert "airline.replay." not in (await run_cli(infra, "ops", "lag")).out, "the temporary group is deleted"


async def test_replay_to_datetime_reapplies_only_records_written_since_then(services: dict[str, str], infra: Infra) -> None:
    run = uuid.uuid4().hex[:8]
    older, newer = f"{COURT}:{run}-older", f"{COURT}:{run}-newer"
    await publish(infra, COURT_TOPIC, "court-dev", COURT, [(older, listing_event(older, fresh_person(), hash_key()))])
    await asyncio.sleep(1.1)  # record timestamps are milliseconds: keep the boundary clear of both records
    since = datetime.now(UTC)
    await asyncio.sleep(1.1)
    await publish(infra, COURT_TOPIC, "court-dev", COURT, [(newer, listing_event(newer, fresh_person(), hash_key()))])
    await caught_up(infra, "airline")
    await execute(infra, "DELETE FROM airline.listings WHERE listing_id = ANY($1::text[])", [older, newer])

    replayed = await run_cli(infra, "ops", "replay", "airline", "--to-datetime", since.isoformat())

    assert replayed.code == 0, replayed.err
    assert await held(infra, "airline", [older, newer]) == {newer: 1}
    restored = await run_cli(infra, "ops", "replay", "airline", "--to-earliest")
    assert restored.code == 0, restored.err
    assert await held(infra, "airline", [older, newer]) == {older: 1, newer: 1}


async def test_replay_refuses_a_time_without_utc_offset_and_rebuild_from_a_time(infra: Infra) -> None:
    naive = await run_cli(infra, "ops", "replay", "airline", "--to-datetime", "2026-11-26T10:00:00")
    rebuild_since = await run_cli(infra, "ops", "replay", "airline", "--rebuild", "--to-datetime", "2026-11-26T10:00:00Z")

    assert naive.code != 0 and "has no UTC offset" in naive.err
    assert rebuild_since.code != 0 and "--rebuild builds the copy from the earliest offsets" in rebuild_since.err
    assert len(rebuild_since.err.strip().splitlines()) == 1


@pytest.fixture(scope="session")
def restarted() -> Iterator[list[runner.RunningService]]:
    """Services a test stopped and started again; they run until the session ends, like the originals."""
    started: list[runner.RunningService] = []
    yield started
    runner.stop(started)


async def wait_group_inactive(infra: Infra, group: str, timeout: float = 60.0) -> None:
    """Kafka resets offsets only of a group without members: wait until the stopped consumer has left."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await kafka_tool(infra, "--describe", "--state", "--group", group)
        if any(state in described.out.split() for state in ("Empty", "Dead")):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"group {group} still active: {described.out}")
        await asyncio.sleep(1)


async def test_kafka_reset_offsets_to_earliest_while_stopped_converges_to_the_same_copy(
    services: dict[str, str], infra: Infra, restarted: list[runner.RunningService]
) -> None:
    await publish_varied_history(infra, uuid.uuid4().hex[:8])
    await caught_up(infra, "admissions")
    before = await copy_of(infra, "admissions")
    pid = child_service_pid(SERVICES["admissions"].app)
    runner_env = infra.env()
    try:
        os.kill(pid, signal.SIGTERM)
        await asyncio.to_thread(wait_gone, pid)
        await wait_group_inactive(infra, "admissions")
        await execute(infra, "DELETE FROM admissions.listings")
        reset = await kafka_tool(
            infra,
            "--reset-offsets",
            "--to-earliest",
            "--execute",
            "--group",
            "admissions",
            *(a for t in LISTING_TOPICS for a in ("--topic", t)),
        )
        assert reset.code == 0, reset.err + reset.out
        assert await copy_of(infra, "admissions") == []
    finally:
        again = runner.start(["admissions"], infra.home / "logs" / "tests", env=runner_env)
        restarted.extend(again)
        await asyncio.to_thread(runner.wait_ready, again, 120, lambda _: None)

    await caught_up(infra, "admissions", timeout=120)
    assert await copy_of(infra, "admissions") == before
