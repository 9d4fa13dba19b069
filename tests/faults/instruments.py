"""Test-only instruments in the real database: an audit of every committed write to a copy, and gates that hold a
transaction open on an advisory lock, so a kill lands exactly between two steps of the code under test."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from schemas.catalogue import schema_name

SETUP = """
CREATE SCHEMA IF NOT EXISTS faults;
CREATE TABLE IF NOT EXISTS faults.applied (
    id          bigserial PRIMARY KEY,
    consumer    text NOT NULL,
    listing_id  text NOT NULL,
    version     int  NOT NULL,
    backend_pid int  NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS faults.gates (target text PRIMARY KEY, lock_key bigint NOT NULL);
-- Written in the same transaction as the copy's own write: a rolled-back batch leaves no audit row either.
CREATE OR REPLACE FUNCTION faults.record_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO faults.applied (consumer, listing_id, version, backend_pid)
    VALUES (TG_TABLE_SCHEMA, NEW.listing_id, NEW.version, pg_backend_pid());
    RETURN NULL;
END $$;
-- Waits, inside the writer's transaction, while the test holds the gate's advisory lock.
CREATE OR REPLACE FUNCTION faults.gate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
BEGIN
    SELECT lock_key INTO k FROM faults.gates WHERE target = to_jsonb(NEW) ->> TG_ARGV[0];
    IF FOUND THEN
        PERFORM pg_advisory_xact_lock_shared(k);
    END IF;
    RETURN NEW;
END $$;
"""


async def install(conn: asyncpg.Connection, consumers: Iterable[str], outbox_of: Iterable[str] = ()) -> None:
    """Audit the copies of `consumers`; let gates hold their applies and the relays' marking of outbox rows sent."""
    await conn.execute(SETUP)
    for consumer in consumers:
        table = f'"{schema_name(consumer)}".listings'
        await conn.execute(f"DROP TRIGGER IF EXISTS faults_audit ON {table}")
        await conn.execute(f"DROP TRIGGER IF EXISTS faults_gate ON {table}")
        await conn.execute(
            f"CREATE TRIGGER faults_audit AFTER INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION faults.record_apply()"
        )
        await conn.execute(
            f"CREATE TRIGGER faults_gate BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW"
            " EXECUTE FUNCTION faults.gate('listing_id')"
        )
    for publisher in outbox_of:
        table = f'"{schema_name(publisher)}".outbox'
        await conn.execute(f"DROP TRIGGER IF EXISTS faults_gate ON {table}")
        await conn.execute(
            f"CREATE TRIGGER faults_gate BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION faults.gate('authority')"
        )


async def uninstall(conn: asyncpg.Connection, consumers: Iterable[str], outbox_of: Iterable[str] = ()) -> None:
    for consumer in consumers:
        table = f'"{schema_name(consumer)}".listings'
        await conn.execute(f"DROP TRIGGER IF EXISTS faults_audit ON {table}")
        await conn.execute(f"DROP TRIGGER IF EXISTS faults_gate ON {table}")
    for publisher in outbox_of:
        await conn.execute(f'DROP TRIGGER IF EXISTS faults_gate ON "{schema_name(publisher)}".outbox')
    await conn.execute("DROP SCHEMA IF EXISTS faults CASCADE")


@dataclass(frozen=True)
class Write:
    id: int
    listing_id: str
    version: int
    backend_pid: int


async def writes(conn: asyncpg.Connection, consumer: str, authority: str | None, after_id: int = 0) -> list[Write]:
    """Committed writes to a consumer's copy (for one authority's listings, or all), oldest first."""
    rows = await conn.fetch(
        "SELECT id, listing_id, version, backend_pid FROM faults.applied"
        " WHERE consumer = $1 AND listing_id LIKE $2 AND id > $3 ORDER BY id",
        schema_name(consumer),
        f"{authority}:%" if authority else "%",
        after_id,
    )
    return [Write(r["id"], r["listing_id"], r["version"], r["backend_pid"]) for r in rows]


def applied_twice(found: Iterable[Write]) -> list[tuple[str, int]]:
    """(listing, version) pairs written more than once: an effect applied twice."""
    return sorted(k for k, n in Counter((w.listing_id, w.version) for w in found).items() if n > 1)


async def backend_pids(conn: asyncpg.Connection, service: str) -> set[int]:
    rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", f"blacklist-sync-{service}")
    return {r["pid"] for r in rows}


async def last_write_id(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM faults.applied"))


async def wait_backend_gone(conn: asyncpg.Connection, pid: int, timeout: float) -> None:
    """After its client died: wait until PostgreSQL has ended (and so rolled back) that backend."""
    deadline = time.monotonic() + timeout
    while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"backend {pid} still alive {timeout}s after its client was killed")
        await asyncio.sleep(0.05)


class Gate:
    """Holds writes of one target (a listing id on a copy, an authority on an outbox) until opened."""

    def __init__(self, conn: asyncpg.Connection, target: str, lock_key: int) -> None:
        self.conn = conn
        self.target = target
        self.lock_key = lock_key
        self.closed = False

    @classmethod
    async def close(cls, database_url: str, target: str, lock_key: int) -> Gate:
        conn = await asyncpg.connect(database_url)
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        await conn.execute(
            "INSERT INTO faults.gates (target, lock_key) VALUES ($1, $2) ON CONFLICT (target) DO UPDATE SET lock_key = $2",
            target,
            lock_key,
        )
        gate = cls(conn, target, lock_key)
        gate.closed = True
        return gate

    async def wait_held(self, service: str, timeout: float) -> int:
        """Wait until a backend of `service` waits at this gate; its pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = await self.conn.fetchval(
                "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = $1 LIMIT 1",
                f"blacklist-sync-{service}",
            )
            if pid is not None:
                return int(pid)
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {service} transaction reached the gate on {self.target} within {timeout}s")

    async def open(self) -> None:
        if self.closed:
            await self.conn.execute("DELETE FROM faults.gates WHERE target = $1", self.target)
            await self.conn.execute("SELECT pg_advisory_unlock($1)", self.lock_key)
            self.closed = False

    async def release(self) -> None:
        await self.open()
        await self.conn.close()
