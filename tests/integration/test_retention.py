"""Retention on real PostgreSQL: expired listings lose their personal data after the delay; markers stay."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from services.consumers.copy import CopyKeeper
from services.consumers.registry import POLICIES
from services.consumers.retention import sweep_once
from services.kit.migrations import migrate
from services.kit.signing import Keyring, SigningKey
from tests.conftest import Infra
from tests.events import COURT, court_event, signed, value_of

pytestmark = pytest.mark.integration
AIRLINE = POLICIES["airline"]
RETENTION = timedelta(days=3)


@pytest.fixture
async def scratch(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    """A scratch copy of the airline schema, migrated like the real one, dropped afterwards."""
    schema = f"retention_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(infra.database_url)
    await migrate(conn, "airline", schema=schema)
    pool = await asyncpg.create_pool(infra.database_url, min_size=1, max_size=2, server_settings={"search_path": schema})
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


def record(infra: Infra, listing_id: str, expires_at: datetime, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = value_of(
        court_event(
            listing_id,
            listing_id,
            effective_from=(expires_at - timedelta(days=700)).isoformat(),
            expires_at=expires_at.isoformat(),
        )
    )
    key = SigningKey.load(infra.home / "keys", "court-dev")
    headers = signed(key, COURT, value)
    return ConsumerRecord(
        "court.listings.v1", 0, offset, 0, 0, listing_id.encode(), value, None, len(listing_id), len(value), headers
    )


async def held(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    return {r["listing_id"]: r for r in await pool.fetch("SELECT * FROM listings")}


async def test_sweep_removes_personal_data_past_retention_and_replay_cannot_restore_it(
    infra: Infra, scratch: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    keeper = CopyKeeper(AIRLINE, scratch, Keyring.load(infra.keyring_path), dlq=None, retention=timedelta(days=3650))
    long_ago, lately, current = "court.x:retention-long-ago", "court.x:retention-lately", "court.x:retention-current"
    batch = [
        record(infra, long_ago, now - timedelta(days=4), 0),
        record(infra, lately, now - timedelta(days=1), 1),
        record(infra, current, now + timedelta(days=100), 2),
    ]
    await keeper.process(batch)
    before = await held(scratch)
    assert all(before[k]["id_hash"] for k in (long_ago, lately, current))

    swept = await sweep_once(scratch, RETENTION)

    rows = await held(scratch)
    assert swept == 1
    assert rows[long_ago]["id_hash"] is None and rows[long_ago]["version"] == 1, "past retention: only a marker"
    assert rows[lately]["id_hash"] is not None, "expired one day ago: still inside the 3-day window"
    assert rows[current]["id_hash"] is not None

    replaying = CopyKeeper(AIRLINE, scratch, Keyring.load(infra.keyring_path), dlq=None, retention=RETENTION)
    await replaying.process(batch)
    assert (await held(scratch))[long_ago]["id_hash"] is None, "a replay of the old record did not bring its data back"


async def test_rebuild_from_old_records_never_stores_data_past_retention(infra: Infra, scratch: asyncpg.Pool) -> None:
    keeper = CopyKeeper(AIRLINE, scratch, Keyring.load(infra.keyring_path), dlq=None, retention=RETENTION)
    old = "court.x:retention-replayed"
    await keeper.process([record(infra, old, datetime.now(UTC) - timedelta(days=30), 0)])
    rows = await held(scratch)
    assert old not in rows or rows[old]["id_hash"] is None
