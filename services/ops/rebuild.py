"""`ops replay CONSUMER --rebuild`: build the copy anew in a shadow schema, then swap it in atomically.

The check API keeps answering from the live table the whole time. The bulk of the topics is loaded set-based:
the shadow table's indexes are dropped, loaders (one per core, at most two, each on partitions of its own, in a
process of its own when there are two; REBUILD_WORKERS overrides the count) admit every record through
CopyKeeper's prepare and binary-COPY every change into it, then one DELETE keeps the newest version per listing
(skipped when the primary key builds without it) and the indexes are built again, sorted, two at a time. The table
stays logged: COPY writes WAL a page at a time, and SET LOGGED after an unlogged load would rewrite it all.
What arrives after that goes through CopyKeeper's ordinary apply, as before.

The swap: lock the live table against writes (reads go on), catch the shadow up to the end offsets read after
taking the lock (so it holds everything the live table can hold, perhaps more), then drop the live table and move
the shadow into its place, in one transaction. A check or an apply waiting on the lock then runs on the new table:
PostgreSQL re-resolves the name of a cached statement's table once it has been replaced."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.catalogue import LISTING_TOPICS, schema_name
from services.consumers.copy import CopyKeeper
from services.consumers.retention import retention_from_env, sweep_once
from services.kit.kafka import idempotent_producer
from services.kit.migrations import migrate
from services.kit.settings import Settings
from services.kit.signing import Keyring
from services.ops.dlq import KnownLetters, read_letters
from services.ops.offsets import BoundedRead, Handle, partitions_of
from services.ops.rebuild_load import Bulk, Spares, spares_wanted
from services.ops.replay import Tally, forget_group, temporary_group
from services.ops.runtime import OpsError, policy_of, reader, schema_pool

# Records still to read before the swap: small enough that the live copy's writes pause only briefly.
SWAP_GAP = 5000
CATCH_UP_ROUNDS = 20
LOCK_TIMEOUT = "15s"
AUTOVACUUM = ("autovacuum_enabled", "toast.autovacuum_enabled")  # held off on the shadow table while loaders fill it
BULK_MEMORY = "256MB"  # the dedupe sorts every loaded row, and so do the index builds: keep both in memory
# The shadow table's indexes (the primary key's included), dropped for the bulk load and built after it.
INDEXES = """
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition, k.conname AS constraint_name,
       pg_get_constraintdef(k.oid) AS constraint_definition
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid
 WHERE i.indrelid = $1::regclass
"""
# A first version this consumer does not apply leaves nothing: no older record exists that a marker would have to stop.
UNUSED = "DELETE FROM listings WHERE id_hash IS NULL AND version = 1"
# Newest version per listing; on equal versions the first read wins, as in CopyKeeper's apply.
DEDUPE = """
DELETE FROM listings t
 USING (SELECT ctid AS at, row_number() OVER (PARTITION BY listing_id ORDER BY version DESC, arrival) AS rank
          FROM listings) r
 WHERE t.ctid = r.at AND r.rank > 1
"""


@dataclass(frozen=True)
class RebuildReport:
    consumer: str
    group: str
    tally: Tally
    letters: KnownLetters
    rows: int
    markers: int
    seconds: float
    writes_paused_ms: float
    laps: Laps

    def text(self) -> str:
        return (
            f"rebuilt {self.consumer} in {self.seconds:.1f}s through group {self.group} (deleted): "
            f"{self.tally.summary(self.letters)};"
            f" the copy now holds {self.rows:,} listings and {self.markers:,} version markers;"
            f" live writes paused {self.writes_paused_ms:.0f} ms for the swap; {self.laps}"
        )


@dataclass
class Laps:
    """Where a rebuild's time went, phase by phase, for the operator and the benchmark."""

    started: float = field(default_factory=time.monotonic)
    seconds: dict[str, float] = field(default_factory=dict)

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = now - self.started - sum(self.seconds.values())

    def __str__(self) -> str:
        return "phases: " + ", ".join(f"{phase} {s:.1f}s" for phase, s in self.seconds.items())


def advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"blacklist-sync-ops:{name}".encode()).digest()[:8], "big", signed=True)


COUNT = "SELECT count(*) FILTER (WHERE id_hash IS NOT NULL), count(*) FILTER (WHERE id_hash IS NULL) FROM listings"


async def rebuild(settings: Settings, consumer: str) -> RebuildReport:
    policy_of(consumer)
    shadow = f"{schema_name(consumer)}_rebuild"
    started = time.monotonic()
    # The loader processes start now: their imports overlap the preparations below.
    spares = await Spares.start(settings, spares_wanted())
    try:
        # One connection holds the "one rebuild per consumer" lock, prepares the shadow and performs the swap.
        control = await asyncpg.connect(settings.database_url, server_settings={"application_name": "blacklist-sync-ops"})
        try:
            if not await control.fetchval("SELECT pg_try_advisory_lock($1)", advisory_key(shadow)):
                raise OpsError(f"another rebuild of {consumer} is running")
            await migrate(control, consumer)
            await control.execute(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE')  # left by an interrupted rebuild
            await migrate(control, consumer, schema=shadow)
            deferred = await Deferred.take(control, shadow)
            try:
                report = await _build_and_swap(settings, consumer, control, deferred, started, spares)
            finally:
                await control.execute(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE')
        finally:
            await control.close()  # also releases the advisory lock
    finally:
        await spares.close()
    return report


async def _build_and_swap(
    settings: Settings, consumer: str, control: asyncpg.Connection, deferred: Deferred, started: float, spares: Spares
) -> RebuildReport:
    keyring = Keyring.load(settings.keyring_path)
    pool = await schema_pool(settings, f"{schema_name(consumer)}_rebuild")
    producer = idempotent_producer(settings)
    group = temporary_group(consumer, "rebuild")
    kafka = reader(settings, group_id=group)
    # End offsets come from a client of their own: on the reading client they would queue behind a long-poll fetch.
    probe = reader(settings)
    tally = Tally()
    laps = Laps(started)
    try:
        # The clients start and the dead letters are read at once: each waits mostly on Kafka's answers.
        dead, *_ = await asyncio.gather(read_letters(settings, consumer), producer.start(), kafka.start(), probe.start())
        known = {letter.source for letter in dead}
        letters = KnownLetters(producer, known)
        handle = tally.into(CopyKeeper(policy_of(consumer), pool, keyring, letters))
        partitions = await partitions_of(kafka, LISTING_TOPICS)
        read = BoundedRead(kafka, dict(await kafka.beginning_offsets(partitions)), commit=True)
        ends = EndOffsets(probe, partitions)
        bulk = Bulk(settings, consumer, sorted(known), spares)
        laps.lap("start")
        await _fill(bulk, control, pool, deferred, read, ends, handle, tally, letters, laps)
        # The consumer's own retention, so that the new copy holds no more personal data than the live one.
        await sweep_once(pool, retention_from_env())
        paused_ms = await _swap(consumer, control, read, ends, handle)
        laps.lap("sweep and swap")
        rows, markers = await control.fetchrow(COUNT.replace("FROM listings", f'FROM "{schema_name(consumer)}".listings'))
    finally:
        await probe.stop()
        await kafka.stop()
        await forget_group(settings, group)
        await producer.stop()
        await pool.close()
    return RebuildReport(consumer, group, tally, letters, rows, markers, time.monotonic() - started, paused_ms, laps)


@dataclass(frozen=True)
class EndOffsets:
    probe: AIOKafkaConsumer
    partitions: list[TopicPartition]

    async def now(self) -> dict[TopicPartition, int]:
        return dict(await self.probe.end_offsets(self.partitions))


async def _fill(
    bulk: Bulk,
    control: asyncpg.Connection,
    pool: asyncpg.Pool,
    deferred: Deferred,
    read: BoundedRead,
    ends: EndOffsets,
    handle: Handle,
    tally: Tally,
    letters: KnownLetters,
    laps: Laps,
) -> None:
    """Everything up to today's end offsets in bulk, then catch up with what arrived meanwhile until little is left."""
    end = await ends.now()
    loaded = await bulk.load(read.start, end)
    # Assigned only now: an assigned consumer starts fetching at once, and these records are the loaders'.
    await read.begin()
    read.advance(loaded.positions)
    tally.records += loaded.records
    tally.accepted += loaded.accepted
    tally.rejected += loaded.rejected
    letters.written += loaded.letters_written
    letters.skipped += loaded.letters_skipped
    laps.lap("load")
    async with pool.acquire() as helper:
        tally.applied += loaded.accepted - await deferred.finish(control, helper)
    laps.lap("dedupe and index")
    for _ in range(CATCH_UP_ROUNDS):
        end = await ends.now()
        if read.remaining(end) <= SWAP_GAP:
            break
        await read.read_to(end, handle)
    laps.lap("catch-up")


@dataclass(frozen=True)
class Deferred:
    """The shadow table's indexes, dropped while loaders fill it, and how to build them again."""

    table: str
    indexes: list[asyncpg.Record]

    @classmethod
    async def take(cls, control: asyncpg.Connection, shadow: str) -> Deferred:
        """Drop the shadow table's indexes, add the column that orders loaded rows, hold autovacuum off; all undone by
        `finish`."""
        table = f'"{shadow}".listings'
        indexes = list(await control.fetch(INDEXES, table))
        async with control.transaction():
            for index in indexes:
                if index["constraint_name"]:
                    await control.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{index["constraint_name"]}"')
                else:
                    await control.execute(f'DROP INDEX "{shadow}"."{index["name"]}"')
            await control.execute(f"ALTER TABLE {table} ADD COLUMN arrival bigint")
            # No autovacuum pass over a half-loaded table (a million rows arrive in well under its one-minute round,
            # and the index builds read the table again anyway); `finish` turns it back on.
            await control.execute(f"ALTER TABLE {table} SET ({', '.join(f'{option} = false' for option in AUTOVACUUM)})")
        return cls(table, indexes)

    async def finish(self, control: asyncpg.Connection, helper: asyncpg.Connection) -> int:
        """Keep the newest version per listing, build the indexes again; returns the rows removed.

        The unique keys are built on `control` while the other indexes are built on `helper`, each sort on a core of
        its own: a CREATE INDEX takes a SHARE lock, which lets the other build go on. A dedupe, when one is needed,
        waits for them (its DELETE conflicts with that lock). Nothing here needs one transaction: until the swap
        nobody reads the shadow table, and an interrupted rebuild drops it."""
        for conn in (control, helper):  # reset below; after a failure both connections are closed unused
            await conn.execute(f"SET work_mem = '{BULK_MEMORY}'; SET maintenance_work_mem = '{BULK_MEMORY}'")
        removed = _count(await control.execute(UNUSED.replace("FROM listings", f"FROM {self.table}")))
        others = [i["definition"] for i in self.indexes if not i["constraint_name"]]
        async with asyncio.TaskGroup() as builds:  # a failed build cancels the other before the error goes on
            keys = builds.create_task(self._unique_keys(control))
            builds.create_task(_run_each(helper, others))
        async with control.transaction():
            for key in self._keys():  # the copy's keys are PRIMARY KEY or UNIQUE constraints (the bulk-load test
                # compares every constraint with a copy applied record by record)
                kind = "PRIMARY KEY" if key["constraint_definition"].startswith("PRIMARY KEY") else "UNIQUE"
                await control.execute(
                    f'ALTER TABLE {self.table} ADD CONSTRAINT "{key["constraint_name"]}" {kind} USING INDEX "{key["name"]}"'
                )
            await control.execute(f"ALTER TABLE {self.table} DROP COLUMN arrival")
            await control.execute(f"ALTER TABLE {self.table} RESET ({', '.join(AUTOVACUUM)})")
        for conn in (control, helper):
            await conn.execute("RESET work_mem; RESET maintenance_work_mem")
        return removed + keys.result()

    def _keys(self) -> list[asyncpg.Record]:
        return [i for i in self.indexes if i["constraint_name"]]

    async def _unique_keys(self, control: asyncpg.Connection) -> int:
        """Build the unique keys' indexes; only where two versions of a listing were loaded (the build fails) are the
        older ones removed first, which sorts every row: a compacted topic usually gives one row per listing."""
        removed, deduped = 0, False
        for key in self._keys():
            try:
                await control.execute(key["definition"])
            except asyncpg.UniqueViolationError:  # the failed build leaves no index behind
                if deduped:
                    raise
                removed, deduped = _count(await control.execute(DEDUPE.replace("FROM listings", f"FROM {self.table}"))), True
                await control.execute(key["definition"])
        return removed


async def _run_each(conn: asyncpg.Connection, statements: Sequence[str]) -> None:
    for statement in statements:
        await conn.execute(statement)


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[1])


async def _swap(consumer: str, control: asyncpg.Connection, read: BoundedRead, ends: EndOffsets, handle: Handle) -> float:
    """Replace the live table by the shadow in one transaction; returns how long live writes waited, in ms."""
    schema = schema_name(consumer)
    shadow = f"{schema}_rebuild"
    await control.execute(f'ANALYZE "{shadow}".listings')  # the check query gets good plans from its first use
    paused = time.monotonic()
    try:
        async with control.transaction():
            await control.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            await control.execute(f'LOCK TABLE "{schema}".listings IN EXCLUSIVE MODE')  # writes wait, reads go on
            # End offsets read under the lock bound everything the live table can hold now.
            await read.read_to(await ends.now(), handle)
            await control.execute(f'DROP TABLE "{schema}".listings')
            await control.execute(f'ALTER TABLE "{shadow}".listings SET SCHEMA "{schema}"')
    except asyncpg.LockNotAvailableError as exc:
        raise OpsError(f"could not lock {schema}.listings within {LOCK_TIMEOUT}; the live copy is unchanged, try again") from exc
    return (time.monotonic() - paused) * 1000
