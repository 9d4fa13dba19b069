"""A consumer's copy against the authorities' state: the rows it must hold, the rows it holds, and how they differ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

from schemas.catalogue import schema_name
from schemas.events import Listing
from services.consumers.policy import ConsumerPolicy, CopyRow
from services.consumers.registry import POLICIES
from services.consumers.retention import past_retention, retention_from_env
from tests.faults import instruments

if TYPE_CHECKING:
    from tests.faults.conftest import FaultResult
    from tests.faults.history import History

RowData = tuple[Any, ...]
# One action per consumer, asked by the wrong-answer probe (ticketing's premium seats check RAIL and RAIL_PREMIUM).
PROBE_ACTION: dict[str, tuple[str, str | None]] = {
    "airline": ("board_flight", None),
    "ticketing": ("buy_rail_ticket", "first"),
    "luxury-retail": ("buy_luxury_goods", None),
    "admissions": ("pay_private_tuition", None),
}


@dataclass(frozen=True)
class Held:
    """What a copy holds for one listing: its version and data, or only a version marker (data None)."""

    version: int
    data: RowData | None


def _data(row: CopyRow) -> RowData:
    return (
        row.list,
        row.authority,
        row.subject_kind,
        row.id_hash,
        row.id_masked,
        tuple(sorted(row.restrictions)),
        row.scope,
        row.case_number,
        row.effective_from,
        row.expires_at,
    )


def kept(policy: ConsumerPolicy, listing: Listing) -> CopyRow | None:
    """The row the consumer keeps for this state of a listing: its projection, unless past the retention window."""
    row = policy.project(listing)
    if row is not None and past_retention(row.expires_at, retention_from_env()):
        return None
    return row


def expected_copy(policy: ConsumerPolicy, listings: Iterable[Listing]) -> dict[str, Held]:
    """The authorities' state as this consumer must hold it; a first version it does not apply leaves no row."""
    expected: dict[str, Held] = {}
    for listing in listings:
        row = kept(policy, listing)
        if row is None and listing.version == 1:
            continue
        expected[listing.listing_id] = Held(listing.version, None if row is None else _data(row))
    return expected


COPY = """
SELECT listing_id, version, list, authority, subject_kind, id_hash, id_masked, restrictions, scope, case_number,
       effective_from, expires_at
  FROM "{schema}".listings WHERE listing_id LIKE $1
"""


async def actual_copy(conn: asyncpg.Connection, consumer: str, authority: str) -> dict[str, Held]:
    """Every row the consumer's copy holds for listings of `authority` (a test run's own authority)."""
    rows = await conn.fetch(COPY.format(schema=schema_name(consumer)), f"{authority}:%")
    held: dict[str, Held] = {}
    for r in rows:
        data = None
        if r["id_hash"] is not None:
            data = (
                r["list"],
                r["authority"],
                r["subject_kind"],
                r["id_hash"],
                r["id_masked"],
                tuple(sorted(r["restrictions"])),
                r["scope"],
                r["case_number"],
                r["effective_from"],
                r["expires_at"],
            )
        held[r["listing_id"]] = Held(r["version"], data)
    return held


@dataclass(frozen=True)
class CopyDiff:
    """Listings the copy lost (missing, or at an older version) and holds wrongly (other data, extra, newer)."""

    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.lost or self.wrong)

    def describe(self, limit: int = 5) -> str:
        return f"lost {len(self.lost)} {self.lost[:limit]}, wrong {len(self.wrong)} {self.wrong[:limit]}"


def compare(expected: Mapping[str, Held], actual: Mapping[str, Held]) -> CopyDiff:
    lost, wrong = [], []
    for listing_id, want in expected.items():
        have = actual.get(listing_id)
        if have is None or have.version < want.version:
            lost.append(listing_id)
        elif have != want:
            wrong.append(listing_id)
    wrong += [listing_id for listing_id in actual if listing_id not in expected]
    return CopyDiff(sorted(lost), sorted(wrong))


async def copy_diff(conn: asyncpg.Connection, consumer: str, authority: str, listings: Iterable[Listing]) -> CopyDiff:
    return compare(expected_copy(POLICIES[consumer], listings), await actual_copy(conn, consumer, authority))


async def wait_for_copies(
    conn: asyncpg.Connection, consumers: Iterable[str], authority: str, listings: Iterable[Listing], timeout: float
) -> dict[str, CopyDiff]:
    """Poll until every consumer's copy equals the authorities' state; the last differences (empty when equal)."""
    wanted = list(listings)
    deadline = time.monotonic() + timeout
    while True:
        diffs = {c: await copy_diff(conn, c, authority, wanted) for c in consumers}
        if not any(diffs.values()) or time.monotonic() > deadline:
            return diffs
        await asyncio.sleep(0.25)


async def authority_state(conn: asyncpg.Connection, publisher_schema: str, authority: str) -> list[Listing]:
    """The authority's current listings as its publisher recorded them (column state = the listing JSON)."""
    rows = await conn.fetch(f'SELECT state FROM "{publisher_schema}".listings WHERE authority = $1', authority)
    return [Listing.model_validate_json(r["state"]) for r in rows]


async def outbox_unsent(conn: asyncpg.Connection, publisher_schema: str, authority: str) -> int:
    sql = f'SELECT count(*) FROM "{publisher_schema}".outbox WHERE authority = $1 AND sent_at IS NULL'
    return int(await conn.fetchval(sql, authority))


async def wait_outbox_drained(conn: asyncpg.Connection, publisher_schema: str, authority: str, timeout: float) -> None:
    """Wait until the publisher's relay has sent, and marked sent, every outbox record of the authority."""
    deadline = time.monotonic() + timeout
    while (left := await outbox_unsent(conn, publisher_schema, authority)) > 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{left} outbox records of {authority} still unsent after {timeout}s")
        await asyncio.sleep(0.2)


def blocks(policy: ConsumerPolicy, listing: Listing, action: str, seat_class: str | None, at: datetime) -> bool:
    """Whether the law says this listing must block the action here and now (national check, no region)."""
    row = policy.project(listing)
    if row is None or row.scope != "national" or not (row.effective_from <= at < row.expires_at):
        return False
    return bool(set(row.restrictions) & {r.value for r in policy.actions[action].restrictions(seat_class)})


async def wrong_answers(
    client: httpx.AsyncClient, url: str, consumer: str, listings: Iterable[Listing], subjects: Mapping[str, str]
) -> list[str]:
    """Ask the consumer's check API about each listing's subject; the listing ids whose answer the law contradicts."""
    policy = POLICIES[consumer]
    action, seat_class = PROBE_ACTION[consumer]
    wrong = []
    for listing in listings:
        body: dict[str, Any] = {"subject": {"kind": "person", "id": subjects[listing.listing_id]}, "action": action}
        if seat_class:
            body["seat_class"] = seat_class
        response = await client.post(f"{url}/v1/checks", json=body)
        response.raise_for_status()
        answer = response.json()
        blocked = listing.listing_id in {b["listing_id"] for b in answer["blocking"]}
        if blocked != blocks(policy, listing, action, seat_class, datetime.now(UTC)):
            wrong.append(listing.listing_id)
    return wrong


async def assert_exact_copy(db: asyncpg.Connection, consumer: str, authors: History, result: FaultResult) -> None:
    """The consumer's copy equals the authorities' newest state, and no version of theirs was written twice."""
    diff = compare(expected_copy(POLICIES[consumer], authors.newest.values()), await actual_copy(db, consumer, authors.authority))
    result.lost, result.wrong_rows = len(diff.lost), len(diff.wrong)
    assert not diff, f"{consumer} copy differs from the authority's state: {diff.describe()}"
    twice = instruments.applied_twice(await instruments.writes(db, consumer, authors.authority))
    assert not twice, f"versions written twice: {twice[:5]}"
