"""apply_batch's COPY path for large batches on real PostgreSQL: the same copy as its one-statement path gives for
the same batch, inside or outside a caller's transaction, and nothing left staged after a rollback."""

from __future__ import annotations

import asyncpg
import pytest

from services.consumers import store
from tests.integration.test_rebuild_bulk import random_history, rows_of, schemas

pytestmark = pytest.mark.integration
__all__ = ["schemas"]  # the fixture: two fresh copies of the airline schema


def large_history(seed: int) -> list[store.Change]:
    """Many listings' varied histories in one batch: after newest-per-listing, well over COPY_FROM_ROWS rows."""
    changes = [c for n in range(40) for c in random_history(seed * 100 + n)]
    assert len(store.newest_per_listing(changes)) >= store.COPY_FROM_ROWS
    return changes


async def unstaged(conn: asyncpg.Connection, schema: str, changes: list[store.Change], monkeypatch: pytest.MonkeyPatch) -> int:
    """The same batch through the one-statement path (arrays), the reference the COPY path must equal."""
    await conn.execute(f'SET search_path TO "{schema}"')
    with monkeypatch.context() as patch:
        patch.setattr(store, "COPY_FROM_ROWS", 10**9)
        async with conn.transaction():
            return await store.apply_batch(conn, changes)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_large_batch_staged_with_copy_keeps_what_the_one_statement_apply_keeps(
    schemas: tuple[asyncpg.Connection, str, str], seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, reference, staged = schemas
    changes = large_history(seed)
    expected_applied = await unstaged(conn, reference, changes, monkeypatch)
    expected = await rows_of(conn, reference)

    await conn.execute(f'SET search_path TO "{staged}"')
    async with conn.transaction():
        applied = await store.apply_batch(conn, changes)

    assert await rows_of(conn, staged) == expected
    assert applied == expected_applied == len(expected)
    assert await store.apply_batch(conn, changes) == 0, "the same batch again (outside a transaction) changes nothing"
    assert await rows_of(conn, staged) == expected


@pytest.mark.parametrize("staged", [True, False])
async def test_a_batch_keeps_what_applying_its_records_one_by_one_keeps(
    schemas: tuple[asyncpg.Connection, str, str], staged: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, one_by_one, batched = schemas
    changes = large_history(7)
    await conn.execute(f'SET search_path TO "{one_by_one}"')
    for change in changes:
        await store.apply_batch(conn, [change])

    await conn.execute(f'SET search_path TO "{batched}"')
    if not staged:
        monkeypatch.setattr(store, "COPY_FROM_ROWS", 10**9)
    async with conn.transaction():
        await store.apply_batch(conn, changes)

    assert await rows_of(conn, batched) == await rows_of(conn, one_by_one)


async def test_a_large_batch_outside_a_transaction_is_applied_whole(
    schemas: tuple[asyncpg.Connection, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, reference, staged = schemas
    changes = large_history(4)
    await unstaged(conn, reference, changes, monkeypatch)

    await conn.execute(f'SET search_path TO "{staged}"')
    await store.apply_batch(conn, changes)

    assert await rows_of(conn, staged) == await rows_of(conn, reference) != []


async def test_a_rolled_back_large_batch_leaves_nothing_applied_and_the_next_batch_whole(
    schemas: tuple[asyncpg.Connection, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, reference, staged = schemas
    await conn.execute(f'SET search_path TO "{staged}"')
    with pytest.raises(RuntimeError, match="crash after the upsert"):
        async with conn.transaction():
            await store.apply_batch(conn, large_history(5))
            raise RuntimeError("crash after the upsert")
    assert await rows_of(conn, staged) == []

    changes = large_history(6)
    await unstaged(conn, reference, changes, monkeypatch)
    await conn.execute(f'SET search_path TO "{staged}"')
    async with conn.transaction():
        await store.apply_batch(conn, changes)

    assert await rows_of(conn, staged) == await rows_of(conn, reference)
    assert await conn.fetchval("SELECT count(*) FROM pg_temp.apply_stage") == 0, "the commit empties the stage"
