"""The check API's own connections on a real PostgreSQL: every slot usable at once, and nothing lost to a failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.consumers.checks import CheckConnections
from tests.conftest import Infra

pytestmark = pytest.mark.integration

SIZE = 3
# Each query holds its connection a moment, so that SIZE of them at once need SIZE connections.
PID_HELD = "SELECT pg_backend_pid() AS pid, pg_sleep(0.2)"


@pytest.fixture
async def lane(infra: Infra) -> AsyncIterator[CheckConnections]:
    connections = await CheckConnections.open(infra.database_url, "airline", size=SIZE)
    try:
        yield connections
    finally:
        await connections.close()


async def pids_at_once(lane: CheckConnections) -> set[int]:
    rows = await asyncio.gather(*(lane.fetch(PID_HELD) for _ in range(SIZE)))
    return {r[0]["pid"] for r in rows}


async def test_every_connection_serves_a_check_at_the_same_time(lane: CheckConnections) -> None:
    assert len(await pids_at_once(lane)) == SIZE


async def test_connections_are_kept_between_checks(lane: CheckConnections) -> None:
    first = await pids_at_once(lane)

    assert await pids_at_once(lane) == first


async def test_a_failed_query_raises_and_loses_no_connection(lane: CheckConnections) -> None:
    with pytest.raises(asyncpg.DivisionByZeroError):
        await lane.fetch("SELECT 1 / 0")

    assert len(await pids_at_once(lane)) == SIZE


async def test_connections_the_database_dropped_are_replaced_by_fresh_ones(lane: CheckConnections, infra: Infra) -> None:
    dropped = await pids_at_once(lane)
    admin = await asyncpg.connect(infra.database_url)
    try:
        # With a timeout, pg_terminate_backend returns once the backend is gone (or false after 5 s).
        ended = await admin.fetch("SELECT pg_terminate_backend(pid, 5000) AS gone FROM unnest($1::int[]) AS pid", sorted(dropped))
    finally:
        await admin.close()

    fresh = await pids_at_once(lane)

    assert all(r["gone"] for r in ended)
    assert len(fresh) == SIZE
    assert not fresh & dropped


async def test_the_check_query_reads_the_consumers_own_schema(lane: CheckConnections) -> None:
    rows = await lane.fetch("SELECT current_schema() AS schema")

    assert rows[0]["schema"] == "airline"
