"""SQL of an authority's register: listings, their append-only history and the outbox, in one transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
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


async def next_number(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT nextval('listing_number')"))


async def get(conn: asyncpg.Connection, listing_id: str, *, for_update: bool = False) -> StoredListing | None:
    sql = "SELECT state, subject_id, subject_name, extensions FROM listings WHERE listing_id = $1"
    row = await conn.fetchrow(sql + (" FOR UPDATE" if for_update else ""), listing_id)
    if row is None:
        return None
    return StoredListing(Listing.model_validate_json(row["state"]), row["subject_id"], row["subject_name"], row["extensions"])


async def save(
    conn: asyncpg.Connection,
    stored: StoredListing,
    event: ListingEvent,
    *,
    topic: str,
    actor: str,
    change: dict[str, Any],
) -> None:
    """Write the listing's new state, its history entry and its outbox record; the caller holds the transaction."""
    listing = event.listing
    state = listing.model_dump_json()
    await conn.execute(
        """
        INSERT INTO listings (listing_id, authority, list, version, status, subject_kind, subject_id, subject_name,
                              extensions, state)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
        ON CONFLICT (listing_id) DO UPDATE
           SET version = excluded.version, status = excluded.status, extensions = excluded.extensions,
               state = excluded.state, updated_at = now()
         WHERE listings.version = excluded.version - 1
        """,
        listing.listing_id,
        listing.authority,
        listing.list,
        listing.version,
        listing.status.value,
        listing.subject.kind.value,
        stored.subject_id,
        stored.subject_name,
        stored.extensions,
        state,
    )
    await conn.execute(
        """
        INSERT INTO listing_history (listing_id, version, event_id, event_type, actor, at, change, legal_basis)
        VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb)
        """,
        listing.listing_id,
        listing.version,
        event.event_id,
        event.event_type.value,
        actor,
        event.occurred_at,
        json.dumps(change),
        listing.legal_basis.model_dump_json(),
    )
    await conn.execute(
        "INSERT INTO outbox (topic, key, value, authority, event_type) VALUES ($1, $2, $3, $4, $5)",
        topic,
        listing.listing_id,
        to_wire(event),
        listing.authority,
        event.event_type.value,
    )
    await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)


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


@dataclass(frozen=True)
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
    """Lock the oldest unsent records; SKIP LOCKED lets a second relay take the next ones."""
    rows = await conn.fetch(
        """
        SELECT id, topic, key, value, authority, event_type FROM outbox
         WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    return [OutboxRecord(r["id"], r["topic"], r["key"], bytes(r["value"]), r["authority"], r["event_type"]) for r in rows]


async def mark_sent(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", ids)


async def backlog(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
