"""`ops replay CONSUMER [--to-earliest | --to-datetime T]`: re-consume the listing topics into the live copy.

A temporary consumer group reads from the chosen start to today's end offsets and applies through
CopyKeeper, beside the running consumer: the version check makes every record already held a no-op,
the live group's offsets are never touched, and the consumer never has to stop."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import ConsumerRecord

from schemas.catalogue import LISTING_TOPICS, schema_name
from schemas.events import rfc3339
from services.consumers.copy import BatchOutcome, CopyKeeper
from services.kit.kafka import idempotent_producer
from services.kit.migrations import migrate
from services.kit.settings import Settings
from services.kit.signing import Keyring
from services.ops.dlq import KnownLetters, read_letters
from services.ops.offsets import BoundedRead, delete_group, partitions_of, start_offsets
from services.ops.progress import ProgressBar
from services.ops.runtime import admin, policy_of, reader, schema_pool


@dataclass
class Tally:
    """What a replay did, summed over its batches."""

    records: int = 0
    accepted: int = 0
    applied: int = 0
    rejected: int = 0

    def add(self, outcome: BatchOutcome) -> None:
        self.records += outcome.records
        self.accepted += outcome.accepted
        self.applied += outcome.applied
        self.rejected += outcome.dead_lettered

    def into(self, keeper: CopyKeeper) -> Callable[[Sequence[ConsumerRecord[bytes, bytes]]], Awaitable[None]]:
        async def handle(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
            self.add(await keeper.process(records))

        return handle

    def summary(self, letters: KnownLetters) -> str:
        return (
            f"{self.records:,} records read, {self.accepted:,} accepted, {self.applied:,} rows written, "
            f"{self.rejected:,} refused ({letters.written:,} newly dead-lettered, {letters.skipped:,} already in the DLQ)"
        )


@dataclass(frozen=True)
class ReplayReport:
    consumer: str
    group: str
    since: datetime | None
    tally: Tally
    letters: KnownLetters
    seconds: float

    def text(self) -> str:
        start = "the earliest offsets" if self.since is None else rfc3339(self.since)
        return (
            f"replayed {self.consumer} from {start} in {self.seconds:.1f}s through group {self.group} (deleted): "
            + self.tally.summary(self.letters)
        )


def temporary_group(consumer: str, purpose: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{consumer}.{purpose}.{stamp}.{uuid.uuid4().hex[:6]}"


async def replay(settings: Settings, consumer: str, since: datetime | None) -> ReplayReport:
    policy = policy_of(consumer)
    keyring = Keyring.load(settings.keyring_path)
    known = {letter.source for letter in await read_letters(settings, consumer)}
    started = time.monotonic()
    pool = await schema_pool(settings, schema_name(consumer))
    producer = idempotent_producer(settings)
    group = temporary_group(consumer, "replay")
    kafka = reader(settings, group_id=group)
    tally, letters = Tally(), KnownLetters(producer, known)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, consumer)
        await producer.start()
        await kafka.start()
        keeper = CopyKeeper(policy, pool, keyring, letters)
        partitions = await partitions_of(kafka, LISTING_TOPICS)
        read = BoundedRead(kafka, await start_offsets(kafka, partitions, since), commit=True)
        await read.begin()
        end = await kafka.end_offsets(partitions)
        bar = ProgressBar(f"replay {consumer}", read.remaining(end))
        await read.read_to(end, tally.into(keeper), bar.update)
        bar.finish()
    finally:
        await kafka.stop()
        await forget_group(settings, group)
        await producer.stop()
        await pool.close()
    return ReplayReport(consumer, group, since, tally, letters, time.monotonic() - started)


async def forget_group(settings: Settings, group: str) -> None:
    """Delete a temporary group; a failure is reported but must not hide the command's own outcome."""
    client = admin(settings)
    try:
        await client.start()
        await delete_group(client, group)
    except Exception as exc:
        print(f"blacklist-sync: warning: temporary group {group} not deleted ({exc or type(exc).__name__})", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            await client.close()
