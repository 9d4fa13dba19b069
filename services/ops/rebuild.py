"""`ops replay CONSUMER --rebuild`: build the copy anew in a shadow schema, then swap it in atomically.

The check API keeps answering from the live table the whole time. The swap: lock the live table
against writes (reads go on), catch the shadow up to the end offsets read after taking the lock (so it
holds everything the live table can hold, perhaps more), then drop the live table and move the shadow
into its place, in one transaction. A check or an apply waiting on the lock then runs on the new table:
PostgreSQL re-resolves the name of a cached statement's table once it has been replaced."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

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
from services.ops.progress import ProgressBar
from services.ops.replay import Tally, forget_group, temporary_group
from services.ops.runtime import OpsError, policy_of, reader, schema_pool

# Records still to read before the swap: small enough that the live copy's writes pause only briefly.
SWAP_GAP = 5000
CATCH_UP_ROUNDS = 20
LOCK_TIMEOUT = "15s"


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

    def text(self) -> str:
        return (
            f"rebuilt {self.consumer} in {self.seconds:.1f}s through group {self.group} (deleted): "
            f"{self.tally.summary(self.letters)};"
            f" the copy now holds {self.rows:,} listings and {self.markers:,} version markers;"
            f" live writes paused {self.writes_paused_ms:.0f} ms for the swap"
        )


def advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"blacklist-sync-ops:{name}".encode()).digest()[:8], "big", signed=True)


COUNT = "SELECT count(*) FILTER (WHERE id_hash IS NOT NULL), count(*) FILTER (WHERE id_hash IS NULL) FROM listings"


async def rebuild(settings: Settings, consumer: str) -> RebuildReport:
    policy_of(consumer)
    shadow = f"{schema_name(consumer)}_rebuild"
    started = time.monotonic()
    # One connection holds the "one rebuild per consumer" lock, prepares the shadow and performs the swap.
    control = await asyncpg.connect(settings.database_url, server_settings={"application_name": "blacklist-sync-ops"})
    try:
        if not await control.fetchval("SELECT pg_try_advisory_lock($1)", advisory_key(shadow)):
            raise OpsError(f"another rebuild of {consumer} is running")
        await migrate(control, consumer)
        await control.execute(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE')  # left by an interrupted rebuild
        await migrate(control, consumer, schema=shadow)
        try:
            report = await _build_and_swap(settings, consumer, control, started)
        finally:
            await control.execute(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE')
    finally:
        await control.close()  # also releases the advisory lock
    return report


async def _build_and_swap(settings: Settings, consumer: str, control: asyncpg.Connection, started: float) -> RebuildReport:
    keyring = Keyring.load(settings.keyring_path)
    known = {letter.source for letter in await read_letters(settings, consumer)}
    pool = await schema_pool(settings, f"{schema_name(consumer)}_rebuild")
    producer = idempotent_producer(settings)
    group = temporary_group(consumer, "rebuild")
    kafka = reader(settings, group_id=group)
    # End offsets come from a client of their own: on the reading client they would queue behind a long-poll fetch.
    probe = reader(settings)
    tally, letters = Tally(), KnownLetters(producer, known)
    try:
        await producer.start()
        await kafka.start()
        await probe.start()
        handle = tally.into(CopyKeeper(policy_of(consumer), pool, keyring, letters))
        partitions = await partitions_of(kafka, LISTING_TOPICS)
        read = BoundedRead(kafka, dict(await kafka.beginning_offsets(partitions)), commit=True)
        await read.begin()
        ends = EndOffsets(probe, partitions)
        await _fill(consumer, read, ends, handle)
        # The consumer's own retention, so that the new copy holds no more personal data than the live one.
        await sweep_once(pool, retention_from_env())
        paused_ms = await _swap(consumer, control, read, ends, handle)
        rows, markers = await control.fetchrow(COUNT.replace("FROM listings", f'FROM "{schema_name(consumer)}".listings'))
    finally:
        await probe.stop()
        await kafka.stop()
        await forget_group(settings, group)
        await producer.stop()
        await pool.close()
    return RebuildReport(consumer, group, tally, letters, rows, markers, time.monotonic() - started, paused_ms)


@dataclass(frozen=True)
class EndOffsets:
    probe: AIOKafkaConsumer
    partitions: list[TopicPartition]

    async def now(self) -> dict[TopicPartition, int]:
        return dict(await self.probe.end_offsets(self.partitions))


async def _fill(consumer: str, read: BoundedRead, ends: EndOffsets, handle: Handle) -> None:
    """Everything up to today's end offsets, then catch up with what arrived meanwhile until little is left."""
    end = await ends.now()
    bar = ProgressBar(f"rebuild {consumer}", read.remaining(end))
    await read.read_to(end, handle, bar.update)
    bar.finish()
    for _ in range(CATCH_UP_ROUNDS):
        end = await ends.now()
        if read.remaining(end) <= SWAP_GAP:
            return
        await read.read_to(end, handle)


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
