"""SQL of a consumer's copy: set-based apply (newest version wins, markers never revived) and the check query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import asyncpg
import orjson

from services.consumers.policy import CopyRow


class Change(NamedTuple):
    """What one accepted record asks of the copy: a row to keep, or only a version marker (row None)."""

    listing_id: str
    version: int
    row: CopyRow | None


def newest_per_listing(changes: Sequence[Change]) -> list[Change]:
    """The newest change per listing, as applying the changes one by one would leave it: of equal versions the
    first wins, and a marker of a first version is nothing at all (no older record exists that it would have to
    stop), so it neither takes a place nor keeps a later row of that version out."""
    newest: dict[str, Change] = {}
    for change in changes:
        if change.row is None and change.version <= 1:
            continue
        held = newest.get(change.listing_id)
        if held is None or change.version > held.version:
            newest[change.listing_id] = change
    return list(newest.values())


# The rows changed, and when the server that ran the statement started: a consumer commits its transactions
# asynchronously, and a transaction is durable once a later synchronous commit on the same server has been flushed
# (see settle); a server that started since has lost whatever was not flushed before it stopped.
_UPSERT = """
WITH changed AS (
INSERT INTO listings AS t (listing_id, version, list, authority, subject_kind, id_hash, id_masked, restrictions,
                           scope, case_number, effective_from, expires_at)
SELECT u.listing_id, u.version, u.list, u.authority, u.subject_kind, u.id_hash, u.id_masked,
       string_to_array(u.restrictions, ','), u.scope, u.case_number, u.effective_from, u.expires_at
  FROM {source}
ON CONFLICT (listing_id) DO UPDATE
   SET version = excluded.version, list = excluded.list, authority = excluded.authority,
       subject_kind = excluded.subject_kind, id_hash = excluded.id_hash, id_masked = excluded.id_masked,
       restrictions = excluded.restrictions, scope = excluded.scope, case_number = excluded.case_number,
       effective_from = excluded.effective_from, expires_at = excluded.expires_at, applied_at = now()
 WHERE t.version < excluded.version
RETURNING 1
)
SELECT count(*)::int, pg_postmaster_start_time() FROM changed
"""
COLUMNS = (
    "listing_id",
    "version",
    "list",
    "authority",
    "subject_kind",
    "id_hash",
    "id_masked",
    "restrictions",  # comma-joined: the upsert splits it, so no array is encoded per row
    "scope",
    "case_number",
    "effective_from",
    "expires_at",
)
# A small batch travels as one JSON document that PostgreSQL unpacks: asyncpg's encoding of twelve arrays (an
# isinstance test per element among other things) cost more than the statement itself, 0.83 against 0.59 ms for a
# transaction of 12 new rows here. Field names are the COLUMNS; json_document() writes the rows.
APPLY = _UPSERT.format(
    source="""json_to_recordset($1::json)
       AS u(listing_id text, version int, list text, authority text, subject_kind text, id_hash text, id_masked text,
            restrictions text, scope text, case_number text, effective_from timestamptz, expires_at timestamptz)"""
)
# Large batches go through a session's own staging table, filled by binary COPY: from about 256 rows that costs less
# than APPLY's JSON document (8.1 against 8.2 ms at 256 new rows, 14.0 against 15.6 at 512; 5.1 against 4.1 at 128).
# Emptied by every commit or rollback.
STAGE = """
CREATE TEMP TABLE IF NOT EXISTS apply_stage (
    listing_id text, version int, list text, authority text, subject_kind text, id_hash text, id_masked text,
    restrictions text, scope text, case_number text, effective_from timestamptz, expires_at timestamptz
) ON COMMIT DELETE ROWS
"""
APPLY_STAGED = _UPSERT.format(source="pg_temp.apply_stage AS u")
COPY_FROM_ROWS = 256  # below this, one statement with a JSON document costs less than the three of a COPY


def _values(change: Change) -> tuple[object, ...]:
    """The row as COLUMNS lists them (a marker: only its listing and version), restrictions comma-joined."""
    r = change.row
    if r is None:
        return (change.listing_id, change.version, *_NO_DATA)
    return (change.listing_id, change.version, *r[2:7], ",".join(r.restrictions), *r[8:])


# asyncpg sends the first and the last instant a datetime can hold as -infinity and infinity (the staged COPY and the
# rebuild store them so): the JSON document must say the same, or the two paths would store different values.
_JSON_EDGES: dict[object, str] = {
    datetime.max.replace(tzinfo=UTC): "infinity",
    datetime.min.replace(tzinfo=UTC): "-infinity",
}


def json_document(rows: Sequence[tuple[object, ...]]) -> str:
    """Rows as COLUMNS lists them (see `_values`), as the JSON array of objects APPLY unpacks."""
    edges = _JSON_EDGES
    return orjson.dumps(
        [dict(zip(COLUMNS, (*row[:10], edges.get(row[10], row[10]), edges.get(row[11], row[11])), strict=True)) for row in rows]
    ).decode()


# A copy row's fields are the COLUMNS, in order: rows are built from it by position.
if CopyRow._fields != COLUMNS:  # pragma: no cover - a changed CopyRow must change COLUMNS and the SQL with it
    raise ImportError(f"CopyRow fields {CopyRow._fields} differ from the apply columns {COLUMNS}")
_NO_DATA = (None,) * (len(COLUMNS) - 2)


class Applied(NamedTuple):
    rows: int  # inserted or updated; the version check skips the rest
    server_started: datetime | None  # when the server that ran the statement started; None if none ran


async def apply_batch(conn: asyncpg.Connection, changes: Sequence[Change]) -> int:
    """Apply a batch in one upsert; an older or equal version is a no-op. Returns the rows changed."""
    return (await apply_changes(conn, changes)).rows


async def apply_changes(conn: asyncpg.Connection, changes: Sequence[Change]) -> Applied:
    """apply_batch, also saying which run of the server committed it (see `_UPSERT`).

    Runs inside the caller's transaction: a large batch is staged with COPY first, and its staging rows go
    with the transaction, whichever way it ends."""
    rows = [_values(c) for c in newest_per_listing(changes)]
    if not rows:
        return Applied(0, None)
    if len(rows) < COPY_FROM_ROWS:
        return _applied(await conn.fetchrow(APPLY, json_document(rows)))
    if conn.is_in_transaction():
        return await _apply_staged(conn, rows)
    async with conn.transaction():  # in autocommit, the COPY's own commit would empty the stage before the upsert
        return await _apply_staged(conn, rows)


async def _apply_staged(conn: asyncpg.Connection, rows: list[tuple[object, ...]]) -> Applied:
    await conn.execute(STAGE)
    await conn.copy_records_to_table("apply_stage", schema_name="pg_temp", records=rows, columns=COLUMNS)
    return _applied(await conn.fetchrow(APPLY_STAGED))


def _applied(row: asyncpg.Record | None) -> Applied:
    assert row is not None  # an aggregate always answers one row
    return Applied(row[0], row[1])


# A synchronous commit, whatever the session's setting: once it returns, the WAL holding every transaction committed
# before it on this server is on disk. It writes a row because PostgreSQL flushes at commit only for a transaction
# that wrote WAL (one that only took a transaction id commits asynchronously, whatever synchronous_commit says).
SETTLE = """
INSERT INTO settled (one, at) VALUES (true, clock_timestamp())
ON CONFLICT (one) DO UPDATE SET at = excluded.at
RETURNING pg_postmaster_start_time()
"""


async def settle(conn: asyncpg.Connection) -> datetime:
    """Make every transaction committed on this server so far durable; returns when the server started."""
    async with conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit TO on")
        started: datetime = await conn.fetchval(SETTLE)
    return started


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


@dataclass(frozen=True)
class Ask:
    """One check's question to the copy: which listings in force at `at` forbid any of `codes` to this subject, here."""

    id_hash: str
    kind: str
    codes: tuple[str, ...]
    at: datetime
    region: str | None


# Any number of checks in one statement, each row tagged with the position of the ask it answers. The lateral
# subquery is the one-check query verbatim, so each ask gets exactly the rows it would get alone, in the same order.
# Codes travel comma-joined (a text[][] must be rectangular); restriction codes are catalogue names without commas.
BLOCKING = """
SELECT a.n, l.listing_id, l.list, l.authority, l.restrictions, l.case_number, l.expires_at
  FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
       WITH ORDINALITY AS a(id_hash, kind, codes, at, region, n)
 CROSS JOIN LATERAL (
       SELECT listing_id, list, authority, restrictions, case_number, expires_at
         FROM listings
        WHERE id_hash = a.id_hash AND subject_kind = a.kind AND restrictions && string_to_array(a.codes, ',')
          AND effective_from <= a.at AND expires_at > a.at
          AND (scope = 'national' OR scope = a.region)
   ) AS l
 ORDER BY a.n, l.listing_id
"""


async def blocking_many(conn: Fetcher, asks: Sequence[Ask]) -> list[list[Blocking]]:
    """The blocking listings of each ask, in the order asked, from one query."""
    rows = await conn.fetch(
        BLOCKING,
        [a.id_hash for a in asks],
        [a.kind for a in asks],
        [",".join(a.codes) for a in asks],
        [a.at for a in asks],
        [a.region for a in asks],
    )
    answers: list[list[Blocking]] = [[] for _ in asks]
    wanted = [frozenset(a.codes) for a in asks]
    for r in rows:
        n = r[0] - 1  # ordinality counts from 1
        restrictions = sorted(wanted[n].intersection(r[4]))
        answers[n].append(Blocking(r[1], r[2], r[3], restrictions, r[5], r[6]))
    return answers


async def blocking(
    conn: Fetcher, id_hash: str, kind: str, codes: Sequence[str], at: datetime, region: str | None
) -> list[Blocking]:
    """Listings in force at `at` that forbid any of `codes` to this subject, here."""
    return (await blocking_many(conn, [Ask(id_hash, kind, tuple(codes), at, region)]))[0]


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
