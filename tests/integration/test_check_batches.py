"""The check query for many checks at once, on a real PostgreSQL: each check gets exactly the rows it would get alone."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio

from services.consumers import store
from services.consumers.checks import CheckConnections
from services.consumers.policy import CopyRow
from services.consumers.store import Ask, Change
from services.kit.migrations import migrate
from tests.conftest import Infra

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)
REGION = "CN-ZJ-HZ"


def row(
    listing_id: str,
    subject: str,
    codes: tuple[str, ...],
    *,
    kind: str = "person",
    scope: str = "national",
    starts: datetime = NOW - DAY,
    ends: datetime = NOW + DAY,
) -> CopyRow:
    case = f"case {listing_id}"
    listed = ("court.dishonest_debtor", "court.test")
    return CopyRow(listing_id, 1, *listed, kind, subject, "1101**", codes, scope, case, starts, ends)


# Listed subject A has listings of every shape: national and regional, in force, expired and not yet in force, and
# one under its hash for the other kind; B has one listing; C none. A marker row holds no subject at all.
ROWS = [
    row("t:a-national", "hash-a", ("FLIGHT", "RAIL_PREMIUM")),
    row("t:a-regional", "hash-a", ("RAIL",), scope=REGION),
    row("t:a-expired", "hash-a", ("FLIGHT",), ends=NOW - timedelta(hours=1)),
    row("t:a-future", "hash-a", ("RAIL",), starts=NOW + DAY, ends=NOW + 3 * DAY),
    row("t:a-organization", "hash-a", ("FLIGHT",), kind="organization"),
    row("t:b-national", "hash-b", ("RAIL", "RAIL_PREMIUM")),
]
ASKS = [
    Ask(subject, kind, codes, at, region)
    for subject, kind, codes, at, region in itertools.product(
        ("hash-a", "hash-b", "hash-c"),
        ("person", "organization"),
        (("FLIGHT",), ("RAIL",), ("RAIL", "RAIL_PREMIUM")),
        (NOW, NOW + 2 * DAY),
        (None, REGION),
    )
]


def expected(ask: Ask) -> list[store.Blocking]:
    """The contract's rule (section 5), applied to ROWS in Python: in force at `at`, any asked code, scope here."""
    return [
        store.Blocking(r.listing_id, r.list, r.authority, sorted({*r.restrictions} & {*ask.codes}), r.case_number, r.expires_at)
        for r in sorted(ROWS, key=lambda r: r.listing_id)
        if r.id_hash == ask.id_hash
        and r.subject_kind == ask.kind
        and set(r.restrictions) & set(ask.codes)
        and r.effective_from <= ask.at < r.expires_at
        and r.scope in ("national", ask.region)
    ]


@dataclass(frozen=True)
class Copy:
    schema: str
    pool: asyncpg.Pool


@pytest_asyncio.fixture(loop_scope="session")
async def copy(infra: Infra) -> AsyncIterator[Copy]:
    """A scratch ticketing copy, migrated like the real one, holding ROWS and one version marker."""
    schema = f"checks_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(infra.database_url)
    await migrate(admin, "ticketing", schema=schema)
    pool = await asyncpg.create_pool(infra.database_url, min_size=1, max_size=4, server_settings={"search_path": schema})
    try:
        await store.apply_batch(pool, [*(Change(r.listing_id, r.version, r) for r in ROWS), Change("t:marker", 2, None)])
        yield Copy(schema, pool)
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def test_many_checks_in_one_query_get_the_rows_each_would_get_alone(copy: Copy) -> None:
    together = await store.blocking_many(copy.pool, ASKS)
    alone = [(await store.blocking_many(copy.pool, [ask]))[0] for ask in ASKS]

    assert together == alone
    assert together == [expected(ask) for ask in ASKS]
    assert {len(found) for found in together} == {0, 1, 2}  # the fixture is not trivially empty or uniform


async def test_checks_asked_at_once_through_the_check_connections_are_answered_each_correctly(copy: Copy, infra: Infra) -> None:
    pool = await asyncpg.create_pool(infra.database_url, min_size=1, max_size=2, server_settings={"search_path": copy.schema})
    lane = CheckConnections(pool, size=2)
    try:
        answers = await asyncio.wait_for(asyncio.gather(*(lane.blocking(ask) for ask in ASKS)), timeout=30)
        plan_mode = await lane.fetch("SHOW plan_cache_mode")
    finally:
        await lane.close()

    assert answers == [expected(ask) for ask in ASKS]
    # The check query's plan is made once per connection, not once per batch.
    assert plan_mode[0][0] == "force_generic_plan"


async def test_an_empty_batch_and_a_subject_without_listings_get_no_rows(copy: Copy) -> None:
    assert await store.blocking_many(copy.pool, []) == []
    assert await store.blocking(copy.pool, "hash-c", "person", ["FLIGHT"], NOW, None) == []
