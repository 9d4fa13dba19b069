"""`ops reconcile CONSUMER [--repair]`: compare a copy with the authorities' current state, listing by listing.

The authorities' current state is the newest verified record per listing in the compacted listing
topics, projected through the consumer's policy. The copy is read first, the topics after: a record
the copy holds is then always in what was read, so only real drift (or records the consumer has not
applied yet) shows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord

from schemas.catalogue import LISTING_TOPICS, schema_name
from services.consumers.copy import CopyKeeper
from services.consumers.policy import ConsumerPolicy, CopyRow
from services.kit.intake import Rejection, admit, headers_of
from services.kit.kafka import idempotent_producer
from services.kit.migrations import migrate
from services.kit.settings import Settings
from services.kit.signing import Keyring
from services.ops.dlq import KnownLetters, read_letters
from services.ops.lag import collect
from services.ops.offsets import BoundedRead, partitions_of, start_offsets
from services.ops.progress import ProgressBar
from services.ops.runtime import OneConnection, policy_of, reader, schema_pool

REPAIR_CHUNK = 2000
MISSING, EXTRA, STALE = "missing", "extra", "stale"


@dataclass(frozen=True)
class Held:
    """What the copy holds for a listing: a row, or only a version marker (row None)."""

    version: int
    row: CopyRow | None


@dataclass(frozen=True)
class Expected:
    """What the copy should hold after the newest verified record; the record is kept only when the copy differs."""

    version: int
    row: CopyRow | None
    record: ConsumerRecord[bytes, bytes] | None = None


@dataclass(frozen=True)
class Drift:
    kind: str
    listing_id: str
    expected: Expected | None
    held: Held | None

    def text(self) -> str:
        fields = ""
        if self.kind == STALE and self.expected and self.held and self.expected.row and self.held.row:
            fields = "  (" + ", ".join(differing(self.expected.row, self.held.row)) + ")"
        return f"{self.kind:<8} {self.listing_id}  authorities: {describe(self.expected)}  copy: {describe(self.held)}{fields}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "listing_id": self.listing_id,
            "authorities": describe(self.expected),
            "copy": describe(self.held),
        }


def describe(state: Expected | Held | None) -> str:
    if state is None:
        return "nothing"
    if state.row is None:
        return f"v{state.version} marker" if state.version > 1 or isinstance(state, Held) else "nothing (not applied)"
    return f"v{state.version} {','.join(state.row.restrictions)}"


def differing(a: CopyRow, b: CopyRow) -> list[str]:
    return [name for name in CopyRow._fields if getattr(a, name) != getattr(b, name)]


def classify(expected: Expected | None, held: Held | None, now: datetime) -> str | None:
    """The drift of one listing, or None when the copy holds what it should."""
    if expected is None:
        return EXTRA if held is not None and held.row is not None else None  # a marker without a record harms nothing
    if expected.row is not None:
        if held is None or held.row is None:
            swept = expected.row.expires_at <= now and held is not None and held.version == expected.version
            return None if swept else MISSING  # data of an expired listing may already have been swept
        return None if held.row == expected.row else STALE
    if held is not None and held.row is not None:
        return EXTRA
    wants_marker = expected.version > 1  # a first version the consumer does not apply leaves nothing at all
    held_version = held.version if held is not None else None
    return STALE if wants_marker and held_version != expected.version else None


COPY = """
SELECT listing_id, version, list, authority, subject_kind, id_hash, id_masked, restrictions, scope, case_number,
       effective_from, expires_at
  FROM listings
"""


def held_of(r: asyncpg.Record) -> Held:
    if r["id_hash"] is None:
        return Held(r["version"], None)
    row = CopyRow(
        listing_id=r["listing_id"],
        version=r["version"],
        list=r["list"],
        authority=r["authority"],
        subject_kind=r["subject_kind"],
        id_hash=r["id_hash"],
        id_masked=r["id_masked"],
        restrictions=tuple(sorted(r["restrictions"])),
        scope=r["scope"],
        case_number=r["case_number"],
        effective_from=r["effective_from"],
        expires_at=r["expires_at"],
    )
    return Held(r["version"], row)


async def read_copy(pool: asyncpg.Pool, only: Sequence[str] | None = None) -> dict[str, Held]:
    if only is None:
        return {r["listing_id"]: held_of(r) for r in await pool.fetch(COPY)}
    return {r["listing_id"]: held_of(r) for r in await pool.fetch(COPY + " WHERE listing_id = ANY($1::text[])", list(only))}


@dataclass
class AuthorityState:
    expected: dict[str, Expected] = dataclasses.field(default_factory=dict)
    records: int = 0
    refused: int = 0


async def read_authorities(
    settings: Settings, policy: ConsumerPolicy, keyring: Keyring, held: dict[str, Held], now: datetime
) -> AuthorityState:
    """The newest verified version per listing in the listing topics, projected through the policy."""
    state = AuthorityState()

    async def take(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            state.records += 1
            try:
                listing = admit(record.key, record.value, headers_of(record.headers), keyring).listing
            except Rejection:
                state.refused += 1  # never applied by the consumer either; `ops dlq list` shows them
                continue
            current = state.expected.get(listing.listing_id)
            if current is not None and current.version >= listing.version:
                continue
            candidate = Expected(listing.version, policy.project(listing))
            drifts = classify(candidate, held.get(listing.listing_id), now) is not None
            state.expected[listing.listing_id] = dataclasses.replace(candidate, record=record) if drifts else candidate

    kafka = reader(settings)
    await kafka.start()
    try:
        partitions = await partitions_of(kafka, LISTING_TOPICS)
        read = BoundedRead(kafka, await start_offsets(kafka, partitions, None))
        await read.begin()
        end = await kafka.end_offsets(partitions)
        bar = ProgressBar(f"reconcile {policy.name}", read.remaining(end))
        await read.read_to(end, take, bar.update)
        bar.finish()
    finally:
        await kafka.stop()
    return state


def compare(expected: dict[str, Expected], held: dict[str, Held], now: datetime) -> list[Drift]:
    drifts = []
    for listing_id in sorted(expected.keys() | held.keys()):
        kind = classify(expected.get(listing_id), held.get(listing_id), now)
        if kind is not None:
            drifts.append(Drift(kind, listing_id, expected.get(listing_id), held.get(listing_id)))
    return drifts


@dataclass(frozen=True)
class Findings:
    consumer: str
    listings: int
    records: int
    refused: int
    held: int
    lag: int | None
    drifts: list[Drift]

    def counts(self) -> dict[str, int]:
        return {kind: sum(d.kind == kind for d in self.drifts) for kind in (MISSING, EXTRA, STALE)}

    def summary(self) -> str:
        counts = self.counts()
        return f"{counts[MISSING]} missing, {counts[EXTRA]} extra, {counts[STALE]} stale"

    def header(self) -> str:
        lag = "unknown" if self.lag is None else f"{self.lag:,}"
        return (
            f"reconcile {self.consumer}: {self.listings:,} listings in {self.records:,} records of the listing topics"
            f" ({self.refused:,} records refused), {self.held:,} listings in the copy, live consumer lag {lag}"
        )


async def find_drift(settings: Settings, consumer: str) -> Findings:
    policy = policy_of(consumer)
    keyring = Keyring.load(settings.keyring_path)
    now = datetime.now(UTC)
    pool = await schema_pool(settings, schema_name(consumer), max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, consumer)
        held = await read_copy(pool)
        state = await read_authorities(settings, policy, keyring, held, now)
        drifts = compare(state.expected, held, now)
        if drifts:
            # The live consumer may have applied some of these records since the copy was read: look again.
            again = await read_copy(pool, [d.listing_id for d in drifts])
            drifts = [d for d in drifts if classify(d.expected, again.get(d.listing_id), now) is not None]
            drifts = [dataclasses.replace(d, held=again.get(d.listing_id)) for d in drifts]
    finally:
        await pool.close()
    lags = (await collect(settings, [consumer]))[consumer]
    lag = sum(r.lag for r in lags if r.topic in LISTING_TOPICS) if lags else None
    return Findings(consumer, len(state.expected), state.records, state.refused, len(held), lag, drifts)


DELETE_HELD = """
DELETE FROM listings AS l USING unnest($1::text[], $2::int[]) AS u(listing_id, version)
 WHERE l.listing_id = u.listing_id AND l.version = u.version
"""
TO_MARKER = """
UPDATE listings AS l
   SET list = NULL, authority = NULL, subject_kind = NULL, id_hash = NULL, id_masked = NULL, restrictions = NULL,
       scope = NULL, case_number = NULL, effective_from = NULL, expires_at = NULL, applied_at = now()
  FROM unnest($1::text[], $2::int[]) AS u(listing_id, version)
 WHERE l.listing_id = u.listing_id AND l.version = u.version
"""


async def repair(settings: Settings, consumer: str, drifts: Sequence[Drift]) -> int:
    """Fix drift through the normal apply path, each chunk in one transaction; returns the listings repaired.

    A held row or marker that differs is deleted first (only at the version seen, so a newer one the live
    consumer wrote meanwhile stays) and the authorities' record applied in the same transaction: checks
    never see the gap. An extra row with no record behind it keeps only its version marker."""
    policy = policy_of(consumer)
    keyring = Keyring.load(settings.keyring_path)
    known = {letter.source for letter in await read_letters(settings, consumer)}
    pool = await schema_pool(settings, schema_name(consumer), max_size=2)
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        async with pool.acquire() as conn:
            keeper = CopyKeeper(policy, OneConnection(conn), keyring, KnownLetters(producer, known))
            for first in range(0, len(drifts), REPAIR_CHUNK):
                await _repair_chunk(conn, keeper, drifts[first : first + REPAIR_CHUNK])
    finally:
        await producer.stop()
        await pool.close()
    return len(drifts)


async def _repair_chunk(conn: asyncpg.Connection, keeper: CopyKeeper, drifts: Sequence[Drift]) -> None:
    replace = [d for d in drifts if d.expected is not None and d.expected.record is not None]
    orphans = [d for d in drifts if d.expected is None and d.held is not None]
    async with conn.transaction():
        held = [d for d in replace if d.held is not None]
        await conn.execute(DELETE_HELD, [d.listing_id for d in held], [d.held.version for d in held if d.held])
        await keeper.process([d.expected.record for d in replace if d.expected and d.expected.record])
        await conn.execute(TO_MARKER, [d.listing_id for d in orphans], [d.held.version for d in orphans if d.held])
