"""The rebuild loaders' timestamptz encoding against PostgreSQL: every instant a loader COPYs is stored exactly as
asyncpg's own encoder stores it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from services.ops.rebuild_load import timestamps_as_microseconds
from tests.conftest import Infra

pytestmark = pytest.mark.integration
MOMENTS = [
    datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC),
    datetime(2026, 3, 1, 8, 30, 15, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-8))),  # before the binary format's epoch
    datetime(2000, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, 12, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 58, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # asyncpg sends this one as infinity
    datetime(1, 1, 1, tzinfo=UTC),  # and this one as -infinity
    datetime(2026, 6, 1, 12, 0, 0, 1),  # no offset: read as local time by both
    datetime.max,
    datetime.min,
]
FINITE = 6  # the first six read back as they were sent
TABLE = "CREATE TEMP TABLE moments (n int, at timestamptz)"


@pytest.fixture
async def connections(infra: Infra) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection]]:
    """asyncpg as it comes, and a connection set up as a rebuild loader's is; each with a table of its own."""
    plain, loader = await asyncpg.connect(infra.database_url), await asyncpg.connect(infra.database_url)
    try:
        await timestamps_as_microseconds(loader)
        for conn in (plain, loader):
            await conn.execute(TABLE)
            await conn.execute("SET TIME ZONE 'UTC'")
        yield plain, loader
    finally:
        await plain.close()
        await loader.close()


async def test_a_loader_stores_every_instant_as_asyncpgs_own_encoder_does(
    connections: tuple[asyncpg.Connection, asyncpg.Connection],
) -> None:
    plain, loader = connections
    rows = list(enumerate(MOMENTS))

    for conn in (plain, loader):
        await conn.copy_records_to_table("moments", records=rows, columns=("n", "at"))

    stored = "SELECT n, at::text FROM moments ORDER BY n"
    expected = [tuple(r) for r in await plain.fetch(stored)]
    assert len(expected) == len(MOMENTS)
    assert [tuple(r) for r in await loader.fetch(stored)] == expected
    assert [r["at"] for r in await plain.fetch("SELECT at FROM moments WHERE n < $1 ORDER BY n", FINITE)] == MOMENTS[:FINITE]


async def test_a_loader_reads_back_the_instants_it_wrote(connections: tuple[asyncpg.Connection, asyncpg.Connection]) -> None:
    _, loader = connections

    await loader.copy_records_to_table("moments", records=list(enumerate(MOMENTS)), columns=("n", "at"))

    read = [r["at"] for r in await loader.fetch("SELECT at FROM moments ORDER BY n")]
    assert read[:FINITE] == MOMENTS[:FINITE]
    assert read[FINITE:] == [
        datetime.max,
        datetime.min,
        datetime(2026, 6, 1, 12, 0, 0, 1).astimezone(UTC),
        datetime.max,
        datetime.min,
    ]
