"""SQL of a consumer's copy: set-based apply (newest version wins, markers never revived) and the check query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg

from services.consumers.policy import CopyRow


@dataclass(frozen=True)
class Change:
    """What one accepted record asks of the copy: a row to keep, or only a version marker (row None)."""

    listing_id: str
    version: int
    row: CopyRow | None


def newest_per_listing(changes: Sequence[Change]) -> list[Change]:
    """The newest change per listing; a first version this consumer does not apply is dropped outright,
    since no older record exists that a marker would have to stop."""
    newest: dict[str, Change] = {}
    for change in changes:
        held = newest.get(change.listing_id)
        if held is None or change.version > held.version:
            newest[change.listing_id] = change
    return [c for c in newest.values() if c.row is not None or c.version > 1]


APPLY = """
INSERT INTO listings AS t (listing_id, version, list, authority, subject_kind, id_hash, id_masked, restrictions,
                           scope, case_number, effective_from, expires_at)
SELECT u.listing_id, u.version, u.list, u.authority, u.subject_kind, u.id_hash, u.id_masked,
       string_to_array(u.restrictions, ','), u.scope, u.case_number, u.effective_from, u.expires_at
  FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
              $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[])
       AS u(listing_id, version, list, authority, subject_kind, id_hash, id_masked, restrictions,
            scope, case_number, effective_from, expires_at)
ON CONFLICT (listing_id) DO UPDATE
   SET version = excluded.version, list = excluded.list, authority = excluded.authority,
       subject_kind = excluded.subject_kind, id_hash = excluded.id_hash, id_masked = excluded.id_masked,
       restrictions = excluded.restrictions, scope = excluded.scope, case_number = excluded.case_number,
       effective_from = excluded.effective_from, expires_at = excluded.expires_at, applied_at = now()
 WHERE t.version < excluded.version
"""


async def apply_batch(conn: asyncpg.Connection | asyncpg.Pool, changes: Sequence[Change]) -> int:
    """Apply a batch in one statement; an older or equal version is a no-op. Returns the rows changed, from the
    command tag (`INSERT 0 n` counts the rows inserted or updated, not those the version check skipped)."""
    batch = newest_per_listing(changes)
    if not batch:
        return 0
    columns: list[list[object]] = [[] for _ in range(12)]
    for c in batch:
        r = c.row
        values = (
            c.listing_id,
            c.version,
            r and r.list,
            r and r.authority,
            r and r.subject_kind,
            r and r.id_hash,
            r and r.id_masked,
            r and ",".join(r.restrictions),
            r and r.scope,
            r and r.case_number,
            r and r.effective_from,
            r and r.expires_at,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    status = await conn.execute(APPLY, *columns)
    return int(status.rsplit(" ", 1)[1])


class Fetcher(Protocol):
    """What the check query runs on: a connection, a pool, or the check API's own connections."""

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]: ...


@dataclass(frozen=True)
class Blocking:
    listing_id: str
    list_id: str
    authority: str
    restrictions: list[str]
    case_number: str
    expires_at: datetime


BLOCKING = """
SELECT listing_id, list, authority, restrictions, case_number, expires_at
  FROM listings
 WHERE id_hash = $1 AND subject_kind = $2 AND restrictions && $3::text[]
   AND effective_from <= $4 AND expires_at > $4
   AND (scope = 'national' OR scope = $5)
 ORDER BY listing_id
"""


async def blocking(
    conn: Fetcher, id_hash: str, kind: str, codes: Sequence[str], at: datetime, region: str | None
) -> list[Blocking]:
    """Listings in force at `at` that forbid any of `codes` to this subject, here."""
    rows = await conn.fetch(BLOCKING, id_hash, kind, list(codes), at, region)
    wanted = set(codes)
    return [
        Blocking(
            r["listing_id"], r["list"], r["authority"], sorted(set(r["restrictions"]) & wanted), r["case_number"], r["expires_at"]
        )
        for r in rows
    ]


async def snapshot(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    """Every row of the copy, markers included, for the demo and for comparisons."""
    return list(
        await conn.fetch(
            "SELECT listing_id, version, list, authority, subject_kind, id_hash, id_masked, restrictions, scope,"
            " case_number, effective_from, expires_at FROM listings ORDER BY listing_id"
        )
    )


SWEEP_EXPIRED = """
UPDATE listings
   SET list = NULL, authority = NULL, subject_kind = NULL, id_hash = NULL, id_masked = NULL, restrictions = NULL,
       scope = NULL, case_number = NULL, effective_from = NULL, expires_at = NULL, applied_at = now()
 WHERE listing_id IN (SELECT listing_id FROM listings WHERE id_hash IS NOT NULL AND expires_at < $1 LIMIT $2)
RETURNING listing_id
"""


async def sweep_expired(conn: asyncpg.Connection | asyncpg.Pool, expired_before: datetime, limit: int = 10_000) -> int:
    """Turn listings that expired before `expired_before` into version markers (personal data removed)."""
    return len(await conn.fetch(SWEEP_EXPIRED, expired_before, limit))
