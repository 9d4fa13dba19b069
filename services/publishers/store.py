"""SQL of an authority's register: listings, their append-only history and the outbox, in one transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import asyncpg

from schemas.events import Listing, ListingEvent, to_wire

OUTBOX_CHANNEL = "outbox"


@dataclass(frozen=True)
class StoredListing:
    listing: Listing
    subject_id: str
    subject_name: str
    extensions: int


async def next_numbers(conn: asyncpg.Connection, count: int) -> list[int]:
    """`count` new listing numbers in one round trip (a sequence is not transactional: a failed write leaves a gap)."""
    rows = await conn.fetch("SELECT nextval('listing_number') FROM generate_series(1, $1)", count)
    return [int(r[0]) for r in rows]


async def get(conn: asyncpg.Connection, listing_id: str, *, for_update: bool = False) -> StoredListing | None:
    sql = "SELECT state, subject_id, subject_name, extensions FROM listings WHERE listing_id = $1"
    row = await conn.fetchrow(sql + (" FOR UPDATE" if for_update else ""), listing_id)
    if row is None:
        return None
    return StoredListing(Listing.model_validate_json(row["state"]), row["subject_id"], row["subject_name"], row["extensions"])


# The event's last field; nothing before it (a UUID, an event type, an integer, a time) can contain this text.
_LISTING_FIELD = b'"listing":'


def listing_json(value: bytes) -> bytes:
    """The listing's JSON inside an event's wire bytes: the same serializer wrote it, so it is what
    `listing.model_dump_json()` gives, without writing the listing a second time."""
    start = value.index(_LISTING_FIELD) + len(_LISTING_FIELD)
    if not value.endswith(b"}"):
        raise ValueError("an event's wire bytes end with the listing object")
    return value[start:-1]


@dataclass(frozen=True)
class Change:
    """One listing change to write: its new state, the event carrying it, and its history entry."""

    stored: StoredListing
    event: ListingEvent
    actor: str
    change_json: str  # the history entry's `change`, as JSON

    @cached_property
    def value(self) -> bytes:
        """The event's wire bytes (what the relay signs), written once: the state column and the API answer
        reuse the listing inside them, since serializing a listing is the largest cost of an issue."""
        return to_wire(self.event)

    @property
    def listing_json(self) -> bytes:
        return listing_json(self.value)


# State, history and outbox of every change in ONE statement: a statement is atomic by itself, so a write outside
# an explicit transaction is still all-or-nothing, and it costs one round trip instead of five. The NOTIFY is
# delivered at commit. Outbox ids follow the order of the changes (WITH ORDINALITY), which is the send order.
SAVE_SQL = """
WITH given AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::int[], $10::text[], $11::uuid[], $12::text[], $13::text[], $14::timestamptz[], $15::text[],
                         $16::text[], $17::text[], $18::bytea[])
           WITH ORDINALITY AS g(listing_id, authority, list, version, status, subject_kind, subject_id, subject_name,
                                extensions, state, event_id, event_type, actor, at, change, legal_basis, topic, value, n)
), saved AS (
    INSERT INTO listings (listing_id, authority, list, version, status, subject_kind, subject_id, subject_name,
                          extensions, state)
    SELECT listing_id, authority, list, version, status, subject_kind, subject_id, subject_name, extensions,
           state::jsonb
      FROM given ORDER BY n
    ON CONFLICT (listing_id) DO UPDATE
       SET version = excluded.version, status = excluded.status, extensions = excluded.extensions,
           state = excluded.state, updated_at = now()
     WHERE listings.version = excluded.version - 1
), logged AS (
    INSERT INTO listing_history (listing_id, version, event_id, event_type, actor, at, change, legal_basis)
    SELECT listing_id, version, event_id, event_type, actor, at, change::jsonb, legal_basis::jsonb FROM given ORDER BY n
), queued AS (
    INSERT INTO outbox (topic, key, value, authority, event_type)
    SELECT topic, listing_id, value, authority, event_type FROM given ORDER BY n
)
SELECT pg_notify($19, '')
"""


async def save_all(conn: asyncpg.Connection, changes: Sequence[Change], *, topic: str) -> None:
    """Write each change's new state, history entry and outbox record, atomically, in one round trip."""
    rows = []
    for c in changes:
        listing = c.event.listing
        rows.append(
            (
                listing.listing_id,
                listing.authority,
                listing.list,
                listing.version,
                listing.status.value,
                listing.subject.kind.value,
                c.stored.subject_id,
                c.stored.subject_name,
                c.stored.extensions,
                c.listing_json.decode(),
                c.event.event_id,
                c.event.event_type.value,
                c.actor,
                c.event.occurred_at,
                c.change_json,
                listing.legal_basis.model_dump_json(),
                topic,
                c.value,
            )
        )
    # Rows turned into the statement's 18 columns in one pass (appending to each column was a tenth of an issue).
    columns = [list(column) for column in zip(*rows, strict=True)]
    await conn.execute(SAVE_SQL, *columns, OUTBOX_CHANNEL)


async def save(
    conn: asyncpg.Connection,
    stored: StoredListing,
    event: ListingEvent,
    *,
    topic: str,
    actor: str,
    change: dict[str, Any],
) -> None:
    """Write one listing's new state, its history entry and its outbox record (see save_all)."""
    await save_all(conn, [Change(stored, event, actor, json.dumps(change))], topic=topic)


async def page(conn: asyncpg.Connection, status: str | None, authorities: list[str], limit: int, offset: int) -> list[Listing]:
    rows = await conn.fetch(
        """
        SELECT state FROM listings
         WHERE ($1::text IS NULL OR status = $1) AND authority LIKE ANY($2::text[])
         ORDER BY listing_id LIMIT $3 OFFSET $4
        """,
        status,
        authorities,
        limit,
        offset,
    )
    return [Listing.model_validate_json(r["state"]) for r in rows]


async def history(conn: asyncpg.Connection, listing_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT version, event_id, event_type, actor, at, change, legal_basis
          FROM listing_history WHERE listing_id = $1 ORDER BY version
        """,
        listing_id,
    )
    return [
        {
            "version": r["version"],
            "event_id": str(r["event_id"]),
            "event_type": r["event_type"],
            "actor": r["actor"],
            "at": r["at"],
            "change": json.loads(r["change"]),
            "legal_basis": json.loads(r["legal_basis"]),
        }
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    id: int
    topic: str
    key: str
    value: bytes
    authority: str
    event_type: str


async def take_relay_turn(conn: asyncpg.Connection) -> bool:
    """One relay per service at a time (held to the end of the transaction): with two sending at once,
    version 2 of a listing could reach Kafka before version 1, and compaction would keep the older state."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext('outbox-relay:' || current_schema()))"))


async def claim_pending(conn: asyncpg.Connection, limit: int) -> list[OutboxRecord]:
    """Lock the oldest unsent records. Relay turns run one at a time (take_relay_turn's lock), so no other turn holds
    them; SKIP LOCKED would matter only to a turn run without that lock.

    Writers (uvicorn workers, the IssueWriter's concurrent group writes) commit in an order other than their outbox
    ids, so a record can become visible after one with a larger id and be sent after it. That never reorders one
    listing's versions: version n+1 is written by a transaction that first locks the listing's row, which it can
    only do once version n's transaction committed, so n's record has the smaller id and is visible to every turn
    that sees n+1's; each turn (one at a time, take_relay_turn) takes the smallest pending ids first and commits
    its mark only after Kafka's acks."""
    rows = await conn.fetch(
        """
        SELECT id, topic, key, value, authority, event_type FROM outbox
         WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    # By position: a relay turn reads thousands of rows, and a lookup by name costs more than the record itself.
    return [OutboxRecord(*r) for r in rows]


async def mark_sent(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", ids)


async def backlog(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))


RELAY_LOCK_SQL = "hashtext('outbox-relay:' || current_schema())"


async def pause_relays(conn: asyncpg.Connection) -> None:
    """Hold this schema's relay turn on a session of its own, so no relay sends until resume_relays (benches, ops)."""
    await conn.execute(f"SELECT pg_advisory_lock({RELAY_LOCK_SQL})")


async def resume_relays(conn: asyncpg.Connection) -> None:
    """Release the turn taken by pause_relays and wake the relays at once."""
    await conn.execute(f"SELECT pg_advisory_unlock({RELAY_LOCK_SQL}), pg_notify($1, '')", OUTBOX_CHANNEL)
