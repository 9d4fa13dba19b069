"""Outbox relay: sends committed outbox records to Kafka, signed per partition and authority, and marks them sent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder

from schemas.catalogue import authority_matches
from services.kit import metrics
from services.kit.kafka import idempotent_producer
from services.kit.settings import Settings
from services.kit.signing import SigningKey, record_headers, signed_batches
from services.publishers import store
from services.publishers.partitioner import partition_of

log = logging.getLogger(__name__)
T = TypeVar("T")
# Retrying a local broker is cheap; waiting longer only keeps accepted listings off the copies after Kafka is back.
MAX_BACKOFF_SECONDS = 2.0
# Records per relay turn (one signature, one UPDATE, one commit): a turn's fixed round trips to PostgreSQL and
# Kafka are spread over more records; a backlog still drains in turns of a few MB at most.
RELAY_BATCH = 5000


class Signer:
    """The private keys a publisher holds, chosen per authority by the patterns the keyring gives them."""

    def __init__(self, keys: Mapping[str, tuple[SigningKey, tuple[str, ...]]]) -> None:
        self._keys = keys

    def key_for(self, authority: str) -> SigningKey:
        for key, patterns in self._keys.values():
            if any(authority_matches(p, authority) for p in patterns):
                return key
        raise LookupError(f"no signing key covers {authority}: add one to the keys directory and keyring")


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        signer: Signer,
        settings: Settings,
        service: str,
        batch_size: int = RELAY_BATCH,
        idle_wait: float = 1.0,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.settings = settings
        self.service = service
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.connected = False
        self._wake = asyncio.Event()

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def relay_once(self, kafka: AIOKafkaProducer) -> int | None:
        """Send one batch of pending records; they are marked sent only once Kafka acknowledged every one.
        None when another instance of this service holds the turn."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await store.take_relay_turn(conn):
                return None  # one at a time keeps each listing's versions in order
            pending = await store.claim_pending(conn, self.batch_size)
            if not pending:
                return 0
            groups = await partition_groups(kafka, pending, lambda r: r)
            await asyncio.gather(*await send_groups(kafka, sign_groups(groups, self.signer.key_for)))
            await store.mark_sent(conn, [r.id for r in pending])
        metrics.OUTBOX_SENT.labels(self.service).inc(len(pending))
        return len(pending)

    async def run(self) -> None:
        """Relay forever: woken by NOTIFY, polling as a fallback, retrying Kafka with backoff."""
        listener = await self.pool.acquire()
        await listener.add_listener(store.OUTBOX_CHANNEL, self.wake)
        backoff = 0.5
        try:
            while True:
                kafka = idempotent_producer(self.settings, max_batch_size=1 << 20)
                try:
                    await kafka.start()
                    self.connected, backoff = True, 0.5
                    while True:
                        self._wake.clear()
                        sent = await self.relay_once(kafka)
                        if sent == 0:
                            await self._report_backlog()
                        if not sent:
                            # Idle, or another worker's turn: that worker sends whatever the NOTIFYs announce
                            # meanwhile, so they need not cost this one a backlog count each; it wakes to take
                            # over when the holder stops (by NOTIFY or at idle_wait).
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._wake.wait(), self.idle_wait)
                except (KafkaError, OSError, asyncpg.PostgresError) as exc:
                    self.connected = False
                    log.warning("outbox relay paused: %s; retrying in %.1fs", exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                finally:
                    await kafka.stop()
        finally:
            await listener.remove_listener(store.OUTBOX_CHANNEL, self.wake)
            await self.pool.release(listener)

    async def _report_backlog(self) -> None:
        async with self.pool.acquire() as conn:
            metrics.OUTBOX_BACKLOG.labels(self.service).set(await store.backlog(conn))


Signed = tuple[store.OutboxRecord, list[tuple[str, bytes]]]
Partition = tuple[str, int]


async def partition_groups(
    kafka: AIOKafkaProducer, items: Sequence[T], record_of: Callable[[T], store.OutboxRecord]
) -> dict[Partition, list[T]]:
    """Items by the partition their record's key goes to (Kafka's default partitioner), in order within each."""
    groups: dict[Partition, list[T]] = defaultdict(list)
    partitions: dict[str, list[int]] = {}
    for item in items:
        record = record_of(item)
        if record.topic not in partitions:
            partitions[record.topic] = sorted(await kafka.partitions_for(record.topic))
        groups[(record.topic, partition_of(record.key.encode(), partitions[record.topic]))].append(item)
    return groups


def sign_groups(
    groups: Mapping[Partition, Sequence[store.OutboxRecord]], key_for: Callable[[str], SigningKey]
) -> dict[Partition, list[Signed]]:
    """Sign a turn's records, per authority, in the batches `signed_batches` gives: a partition's share of a large
    turn alone, so that its consumer meets the batch side by side in index order and judges it as one tree
    (Keyring.verify_batch) rather than walking an audit path per record. Returned in outbox order per partition."""
    where = {record.id: partition for partition, records in groups.items() for record in records}
    by_authority: dict[str, list[store.OutboxRecord]] = defaultdict(list)
    for record in sorted((r for records in groups.values() for r in records), key=lambda r: r.id):
        by_authority[record.authority].append(record)
    headers: dict[int, list[tuple[str, bytes]]] = {}  # by outbox id
    for authority, records in by_authority.items():
        key = key_for(authority)
        for batch in signed_batches(records, lambda r: where[r.id]):
            signed = record_headers(key, authority, [r.value for r in batch], [r.event_type for r in batch])
            headers.update(zip((r.id for r in batch), signed, strict=True))
    return {partition: [(record, headers[record.id]) for record in records] for partition, records in groups.items()}


async def send_in_batches(kafka: AIOKafkaProducer, signed: Sequence[Signed]) -> list[asyncio.Future[Any]]:
    """Queue signed records as whole per-partition batches, in order within each partition; one future per batch."""
    return await send_groups(kafka, await partition_groups(kafka, signed, lambda pair: pair[0]))


async def send_groups(kafka: AIOKafkaProducer, groups: Mapping[Partition, Sequence[Signed]]) -> list[asyncio.Future[Any]]:
    """Queue each partition's records as whole Kafka batches, in order; one future per batch.

    `send()` per record costs more than the signing and the database together; appending to a batch builder
    skips its per-record metadata wait, partitioner call and accumulator lookup. The idempotent producer still
    numbers the batches, so a retry is never written twice."""
    futures = []
    for (topic, partition), records in groups.items():
        batch = kafka.create_batch()
        for record, headers in records:
            while batch.append(key=record.key.encode(), value=record.value, timestamp=None, headers=headers) is None:
                if batch.record_count() == 0:
                    raise ValueError(f"outbox record {record.id} is larger than a Kafka batch")
                futures.append(await _submit(kafka, batch, topic, partition))
                batch = kafka.create_batch()
        futures.append(await _submit(kafka, batch, topic, partition))
    return futures


async def _submit(kafka: AIOKafkaProducer, batch: BatchBuilder, topic: str, partition: int) -> asyncio.Future[Any]:
    batch.close()  # closed: a concurrent send() must not add records of its own to it
    future: asyncio.Future[Any] = await kafka.send_batch(batch, topic, partition=partition)
    return future
