"""CopyKeeper.apply's round trips on real PostgreSQL: a small batch is one autocommitted statement (no BEGIN, no
COMMIT of its own), committed when apply returns; a large one is staged and applied inside one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.consumers import store
from services.consumers.copy import CopyKeeper, Prepared
from services.consumers.registry import POLICIES
from services.kit.db import keep_session
from services.kit.signing import Keyring
from tests.conftest import Infra
from tests.integration.test_apply_staged import large_history
from tests.integration.test_rebuild_bulk import random_history, rows_of, schemas

pytestmark = pytest.mark.integration
__all__ = ["schemas"]  # the fixture: two fresh copies of the airline schema


class Keeper:
    """A CopyKeeper on a one-connection pool in `schema`, and every query that connection was sent."""

    def __init__(self, keeper: CopyKeeper, pool: asyncpg.Pool) -> None:
        self.keeper = keeper
        self.pool = pool
        self.sent: list[str] = []

    def log(self, query: object) -> None:
        self.sent.append(getattr(query, "query", ""))


@pytest.fixture
async def keeper(infra: Infra, schemas: tuple[asyncpg.Connection, str, str]) -> AsyncIterator[Keeper]:
    _, _, schema = schemas
    # As the consumer's own pool (create_pool(reset_sessions=False)): no reset query when a connection goes back.
    pool = await asyncpg.create_pool(
        infra.database_url, min_size=1, max_size=1, server_settings={"search_path": schema}, reset=keep_session
    )
    assert pool is not None
    dlq = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)  # never started: these batches reject nothing
    watched = Keeper(CopyKeeper(POLICIES["airline"], pool, Keyring([]), dlq), pool)
    async with pool.acquire() as conn:
        conn.add_query_logger(watched.log)
    try:
        yield watched
    finally:
        await pool.close()
        await dlq.stop()


async def reference(conn: asyncpg.Connection, schema: str, changes: list[store.Change]) -> list[tuple[object, ...]]:
    """The copy the same changes leave when applied in an explicit transaction, as before."""
    await conn.execute(f'SET search_path TO "{schema}"')
    async with conn.transaction():
        await store.apply_batch(conn, changes)
    return await rows_of(conn, schema)


async def test_a_small_batch_is_one_statement_committed_on_its_own(
    keeper: Keeper, schemas: tuple[asyncpg.Connection, str, str]
) -> None:
    conn, expected_schema, schema = schemas
    warm_up, changes = random_history(11), random_history(12)
    assert len(store.newest_per_listing(changes)) < store.COPY_FROM_ROWS
    await keeper.keeper.apply(Prepared(len(warm_up), changes=warm_up))  # prepares the statement, loads the types
    keeper.sent.clear()

    outcome = await keeper.keeper.apply(Prepared(len(changes), changes=changes))

    assert keeper.sent == [store.APPLY], "one round trip: no BEGIN, no COMMIT"
    expected = await reference(conn, expected_schema, warm_up + changes)
    assert await rows_of(conn, schema) == expected, "committed: another connection sees the batch"
    assert outcome.accepted == len(changes)


async def test_a_large_batch_is_staged_and_applied_inside_one_transaction(
    keeper: Keeper, schemas: tuple[asyncpg.Connection, str, str]
) -> None:
    conn, expected_schema, schema = schemas
    changes = large_history(5)

    await keeper.keeper.apply(Prepared(len(changes), changes=changes))

    statements = [q.split()[0].rstrip(";").upper() for q in keeper.sent]
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT", keeper.sent
    assert keeper.sent.count(store.APPLY) == 0, "staged with COPY, not sent as one JSON document"
    assert await rows_of(conn, schema) == await reference(conn, expected_schema, changes) != []
