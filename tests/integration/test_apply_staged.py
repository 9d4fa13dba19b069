"""apply_batch's COPY path for large batches on real PostgreSQL: the same copy as its one-statement path gives for
the same batch, inside or outside a caller's transaction, and nothing left staged after a rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from services.consumers import store
from services.consumers.policy import CopyRow
from tests.integration.test_rebuild_bulk import random_history, rows_of, schemas

pytestmark = pytest.mark.integration
__all__ = ["schemas"]  # the fixture: two fresh copies of the airline schema


def large_history(seed: int) -> list[store.Change]:
    """Many listings' varied histories in one batch: after newest-per-listing, well over COPY_FROM_ROWS rows."""
    changes = [c for n in range(40) for c in random_history(seed * 100 + n)]
    assert len(store.newest_per_listing(changes)) >= store.COPY_FROM_ROWS
    return changes


async def unstaged(conn: asyncpg.Connection, schema: str, changes: list[store.Change], monkeypatch: pytest.MonkeyPatch) -> int:
    """The same batch through the one-statement path (one JSON document), the reference the COPY path must equal."""
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


INDIA = timezone(timedelta(hours=5, minutes=30))


def awkward_rows() -> list[store.Change]:
    """Rows whose values a JSON document could carry differently from binary COPY: the first and last instants
    (asyncpg sends them as -infinity and infinity), an offset other than UTC, microseconds, and texts with quotes,
    backslashes, a newline, non-ASCII letters and an emoji."""
    edges = [
        (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)),
        (datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=INDIA), datetime(2030, 1, 1, tzinfo=UTC)),
        (datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 58, tzinfo=UTC)),
    ]
    texts = ['(2026) "quoted" \\ case', "line\nbreak", "京 (2026) 执 1234号 ✓ 🚫"]
    changes = []
    for n, ((since, until), case) in enumerate(zip(edges, texts, strict=True)):
        listing_id = f"court.bj-1st-intermediate:awkward-{n}"
        row = CopyRow(
            listing_id,
            2,
            "court.dishonest_debtor",
            "court.bj-1st-intermediate",
            "person",
            f"{n:064x}",
            "110101********1234",
            ("FLIGHT", "RAIL"),
            "national",
            case,
            since,
            until,
        )
        changes.append(store.Change(listing_id, 2, row))
    changes.append(store.Change("court.bj-1st-intermediate:awkward-marker", 3, None))
    return changes


async def test_awkward_values_are_stored_alike_by_the_json_document_and_by_copy(
    schemas: tuple[asyncpg.Connection, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, as_json, as_copy = schemas
    changes = awkward_rows()
    await conn.execute(f'SET search_path TO "{as_json}"')
    assert await store.apply_batch(conn, changes) == len(changes)  # under COPY_FROM_ROWS: the JSON document

    await conn.execute(f'SET search_path TO "{as_copy}"')
    monkeypatch.setattr(store, "COPY_FROM_ROWS", 1)
    assert await store.apply_batch(conn, changes) == len(changes)

    as_text = (
        "SELECT listing_id, case_number, effective_from::text, expires_at::text, restrictions::text FROM listings ORDER BY 1"
    )
    await conn.execute(f'SET search_path TO "{as_json}"')
    from_json = [tuple(r) for r in await conn.fetch(as_text)]
    assert await rows_of(conn, as_json) == await rows_of(conn, as_copy)
    await conn.execute(f'SET search_path TO "{as_copy}"')
    assert [tuple(r) for r in await conn.fetch(as_text)] == from_json
    assert from_json[0][2:4] == ("-infinity", "infinity")
