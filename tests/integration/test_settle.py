"""store.settle on real PostgreSQL: after it returns, the WAL of a transaction committed asynchronously on another
connection is on disk, and it names the run of the server that the apply statement reported."""

from __future__ import annotations

import asyncpg
import pytest

from services.consumers import store
from tests.conftest import Infra
from tests.integration.test_rebuild_bulk import random_history, schemas

pytestmark = pytest.mark.integration
__all__ = ["schemas"]  # the fixture: two fresh copies of the airline schema


async def test_settle_flushes_an_asynchronous_commit_of_another_connection(
    infra: Infra, schemas: tuple[asyncpg.Connection, str, str]
) -> None:
    control, schema, _ = schemas
    settings = {"search_path": schema}
    applying = await asyncpg.connect(infra.database_url, server_settings={**settings, "synchronous_commit": "off"})
    settling = await asyncpg.connect(infra.database_url, server_settings=settings)
    try:
        for attempt in range(20):  # the WAL writer flushes on its own every 200 ms: catch a commit it has not
            applied = await store.apply_changes(applying, random_history(1000 + attempt))
            committed_to = await applying.fetchval("SELECT pg_current_wal_insert_lsn()")
            if await control.fetchval("SELECT pg_current_wal_flush_lsn() < $1::pg_lsn", committed_to):
                break
        else:
            pytest.skip("every asynchronous commit was flushed before it could be looked at")

        server_started = await store.settle(settling)

        flushed = await control.fetchval("SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn", committed_to)
        assert flushed, "settle returned before the asynchronous commit's WAL was on disk"
        assert applied.server_started == server_started
        assert server_started == await control.fetchval("SELECT pg_postmaster_start_time()")
    finally:
        await applying.close()
        await settling.close()
