"""The rebuild's bulk load on real Kafka and PostgreSQL: two loader processes, and the set-based dedupe judged
against CopyKeeper's record-by-record apply of the same changes."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from schemas.catalogue import FAMILIES
from services.consumers import store
from services.consumers.copy import Prepared
from services.consumers.policy import CopyRow
from services.kit.migrations import migrate
from services.ops.bench import COURT, listing_event
from services.ops.rebuild import Deferred
from services.ops.rebuild_load import Stager
from tests.conftest import Infra
from tests.integration.helpers import fresh_person
from tests.integration.test_ops_rebuild import publish_varied_history
from tests.integration.test_ops_support import caught_up, copy_of, execute, hash_key, publish, run_cli

pytestmark = pytest.mark.integration
LISTINGS = 12  # few listings, many changes each: every kind of collision happens
CHANGES = 60
SEEDS = range(8)


async def test_rebuild_by_two_loader_processes_equals_the_copy_before(services: dict[str, str], infra: Infra) -> None:
    run = uuid.uuid4().hex[:8]
    await publish_varied_history(infra, run)
    invalid = f"{COURT}:{run}-invalid"
    event = json.loads(listing_event(invalid, fresh_person(), hash_key()))
    event["listing"]["version"] = 0  # signed, but schema-invalid: dead-lettered
    await publish(infra, FAMILIES["court"].topic, "court-dev", COURT, [(invalid, json.dumps(event).encode())])
    await caught_up(infra, "ticketing")
    before = await copy_of(infra, "ticketing")
    await execute(infra, "DELETE FROM ticketing.listings")

    rebuilt = await run_cli(infra, "ops", "replay", "ticketing", "--rebuild", env={"REBUILD_WORKERS": "2"})

    assert rebuilt.code == 0, rebuilt.err
    assert await copy_of(infra, "ticketing") == before
    assert "rebuild ticketing [" in rebuilt.err, rebuilt.err
    letters = await run_cli(infra, "ops", "dlq", "list", "ticketing", "--json")
    mine = [letter for letter in json.loads(letters.out) if letter["listing_id"] == invalid]
    assert len(mine) == 1, f"the invalid record is dead-lettered once, by the live consumer, never again: {mine}"


async def test_rebuild_with_a_loader_count_that_is_not_a_number_fails_with_a_reason(infra: Infra) -> None:
    rebuilt = await run_cli(infra, "ops", "replay", "ticketing", "--rebuild", env={"REBUILD_WORKERS": "two"})

    assert rebuilt.code != 0
    assert "REBUILD_WORKERS must be a whole number" in rebuilt.err, rebuilt.err


def random_history(seed: int) -> list[store.Change]:
    """Changes in reading order: versions out of order, equal versions with other content, markers of every version;
    every other listing only ever at version 1, where a marker must leave nothing and a later row must still apply."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    changes = []
    for _ in range(CHANGES):
        number = rng.randrange(LISTINGS)
        listing_id = f"{COURT}:bulk-{seed}-{number:02d}"
        version = 1 if number % 2 else rng.randint(1, 4)
        row = None
        if rng.random() < 0.7:
            codes = tuple(sorted(rng.sample(["FLIGHT", "RAIL", "RAIL_PREMIUM"], rng.randint(1, 2))))
            row = CopyRow(
                listing_id,
                version,
                "court.dishonest_debtor",
                COURT,
                "person",
                uuid.UUID(int=rng.getrandbits(128)).hex * 2,
                "110101********1234",
                codes,
                "national",
                f"(2026) case {rng.randrange(1000)}",
                start,
                start + timedelta(days=rng.randint(1, 900)),
            )
        changes.append(store.Change(listing_id, version, row))
    return changes


@pytest.fixture
async def schemas(infra: Infra) -> AsyncIterator[tuple[asyncpg.Connection, str, str]]:
    """Two fresh copies of the airline schema: one filled record by record, one in bulk."""
    run = uuid.uuid4().hex[:8]
    one_by_one, bulk = f"rebuild_test_{run}_apply", f"rebuild_test_{run}_bulk"
    conn = await asyncpg.connect(infra.database_url)
    for schema in (one_by_one, bulk):
        await migrate(conn, "airline", schema=schema)
    try:
        yield conn, one_by_one, bulk
    finally:
        for schema in (one_by_one, bulk):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def rows_of(conn: asyncpg.Connection, schema: str) -> list[tuple[object, ...]]:
    await conn.execute(f'SET search_path TO "{schema}"')
    return [tuple(r) for r in await store.snapshot(conn)]


async def indexes_of(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch("SELECT indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname", schema)
    return [r["indexdef"].replace(f"{schema}.", "") for r in rows]


async def bulk_load(conn: asyncpg.Connection, schema: str, loaders: Sequence[Sequence[store.Change]], database_url: str) -> int:
    deferred = await Deferred.take(conn, schema)
    await conn.execute(f'SET search_path TO "{schema}"')
    for number, changes in enumerate(loaders):
        stager = Stager(conn, number, letters=None, consumer="airline")  # type: ignore[arg-type]  # nothing is rejected
        for change in changes:
            await stager.put(Prepared(records=1, changes=[change]))
        await stager.flush()
    helper = await asyncpg.connect(database_url)  # the second connection the rebuild builds indexes on
    try:
        return await deferred.finish(conn, helper)
    finally:
        await helper.close()


async def constraints_of(conn: asyncpg.Connection, schema: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = $1::regnamespace ORDER BY 1",
        schema,
    )
    return [(r[0], r[1]) for r in rows]


@pytest.mark.parametrize("seed", SEEDS)
async def test_bulk_load_keeps_what_applying_record_by_record_keeps(
    schemas: tuple[asyncpg.Connection, str, str], seed: int, infra: Infra
) -> None:
    conn, one_by_one, bulk = schemas
    changes = random_history(seed)
    await conn.execute(f'SET search_path TO "{one_by_one}"')
    for change in changes:
        await store.apply_batch(conn, [change])

    removed = await bulk_load(conn, bulk, [changes], infra.database_url)

    expected = await rows_of(conn, one_by_one)
    assert await rows_of(conn, bulk) == expected
    assert removed == len(changes) - len(expected)
    assert await indexes_of(conn, bulk) == await indexes_of(conn, one_by_one), "every index is built again"
    assert await constraints_of(conn, bulk) == await constraints_of(conn, one_by_one), "and every constraint"
    options = "SELECT reloptions FROM pg_class WHERE oid = $1::regclass"
    assert await conn.fetchval(options, f'"{bulk}".listings') == await conn.fetchval(options, f'"{one_by_one}".listings')


async def test_bulk_load_of_listings_split_across_loaders_keeps_each_listings_newest_version(
    schemas: tuple[asyncpg.Connection, str, str], infra: Infra
) -> None:
    conn, one_by_one, bulk = schemas
    changes = random_history(99)
    await conn.execute(f'SET search_path TO "{one_by_one}"')
    for change in changes:
        await store.apply_batch(conn, [change])
    # As Kafka keys them: every record of a listing in one partition, so with one loader.
    first = {c.listing_id for c in changes[::2]}
    shares = [[c for c in changes if c.listing_id in first], [c for c in changes if c.listing_id not in first]]

    await bulk_load(conn, bulk, shares, infra.database_url)

    assert await rows_of(conn, bulk) == await rows_of(conn, one_by_one)


async def test_bulk_load_of_one_record_per_listing_removes_nothing_and_has_its_primary_key(
    schemas: tuple[asyncpg.Connection, str, str], infra: Infra
) -> None:
    conn, _, bulk = schemas
    changes = [c for c in {c.listing_id: c for c in random_history(7) if c.row is not None}.values()]

    removed = await bulk_load(conn, bulk, [changes], infra.database_url)

    assert removed == 0
    assert len(await rows_of(conn, bulk)) == len(changes)
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(f'INSERT INTO "{bulk}".listings (listing_id, version) VALUES ($1, 9)', changes[0].listing_id)
