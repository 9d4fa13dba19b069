"""What a benchmark makes for itself and removes afterwards: a topic, scratch copies of a consumer schema, Kafka clients."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker

from bench.corpus import Record
from schemas.catalogue import LISTING_TOPIC_PARTITIONS
from services.consumers.app import BATCH_RECORDS, build_broker
from services.consumers.copy import CopyKeeper
from services.consumers.pipeline import Pipeline
from services.consumers.registry import POLICIES
from services.kit.db import keep_session
from services.kit.kafka import client_options, idempotent_producer
from services.kit.migrations import migrate
from services.kit.settings import Settings

POLICY = POLICIES["airline"]


@contextlib.asynccontextmanager
async def consumer_broker(settings: Settings, keeper: CopyKeeper, topic: str, group: str) -> AsyncIterator[KafkaBroker]:
    """The consumer's own subscriber and pipeline on `topic` as `group`, applying into `keeper`; the caller starts
    the broker. On the way out the pipeline is closed before the broker stops, as the service's lifespan does, so
    its last offsets are committed while the consumer is still in the group (a commit racing the broker's stop was
    logged as a connection error)."""
    batches = Pipeline(POLICY.name, lambda: keeper, group_records=BATCH_RECORDS)
    broker = build_broker(POLICY, settings, lambda: keeper, topics=(topic,), group_id=group, pipeline=batches)
    try:
        yield broker
    finally:
        await batches.close()
        await broker.stop()


@dataclass
class Workspace:
    """A topic and scratch copies of the airline schema made for one run, dropped afterwards."""

    settings: Settings
    run: str
    topic: str
    schema: str
    extra_schemas: list[str] = field(default_factory=list)

    @classmethod
    def new(cls, settings: Settings, purpose: str = "listings") -> Workspace:
        run = uuid.uuid4().hex[:8]
        return cls(settings, run, f"bench.{purpose}.{run}", f"bench_{run}")

    @property
    def naive_schema(self) -> str:
        return f"{self.schema}_naive"

    @property
    def schemas(self) -> list[str]:
        return [self.schema, *self.extra_schemas]

    async def create(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(**client_options(self.settings))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic, LISTING_TOPIC_PARTITIONS, 1)])
        finally:
            await admin.close()
        conn = await asyncpg.connect(self.settings.database_url)
        try:
            for schema in self.schemas:
                await migrate(conn, POLICY.name, schema=schema)
        finally:
            await conn.close()

    async def pool(self, schema: str | None = None, max_size: int = 4, synchronous_commit: bool = True) -> asyncpg.Pool:
        settings = {"search_path": schema or self.schema}
        if not synchronous_commit:  # as the consumer service's apply connections (services/consumers/app.py)
            settings["synchronous_commit"] = "off"
        # As the consumer service's own pool: no reset query on release (services/kit/db.py create_pool).
        pool = await asyncpg.create_pool(
            self.settings.database_url, min_size=1, max_size=max_size, server_settings=settings, reset=keep_session
        )
        assert pool is not None
        return pool

    async def drop(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        conn = await asyncpg.connect(self.settings.database_url)
        try:
            for schema in self.schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        admin = AIOKafkaAdminClient(**client_options(self.settings))
        await admin.start()
        try:
            await admin.delete_topics([self.topic])
        finally:
            await admin.close()


async def produce(settings: Settings, topic: str, records: Iterable[Sequence[Record]]) -> int:
    """Send every chunk of records and wait until Kafka has acknowledged them all; returns how many were sent."""
    producer = idempotent_producer(settings, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    sent = 0
    try:
        for chunk in records:
            futures = [await producer.send(topic, r.value, key=r.key, headers=r.headers) for r in chunk]
            await asyncio.gather(*futures)
            sent += len(chunk)
    finally:
        await producer.stop()
    return sent


def raw_consumer(settings: Settings, topics: Sequence[str], group: str | None = None) -> AIOKafkaConsumer:
    """A plain aiokafka consumer from the earliest offsets, large fetches, no auto-commit: the baselines' reader."""
    return AIOKafkaConsumer(
        *topics,
        **client_options(settings),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )


async def start_group_at_end(settings: Settings, topic: str, group: str) -> None:
    """Commit the end of every partition of `topic` for `group`, so its first member starts after what is there."""
    consumer = raw_consumer(settings, [], group=group)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, [topic])
        consumer.assign(partitions)  # a manual assignment commits without joining the group
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def raw_json_read(settings: Settings, topics: Sequence[str], total: int, timeout: float = 600.0) -> tuple[int, float]:
    """Baseline: raw aiokafka reading `total` records and parsing each as JSON, nothing else; (records, seconds)."""
    import json

    consumer = raw_consumer(settings, topics)
    await consumer.start()
    seen, started = 0, 0.0
    deadline = time.monotonic() + timeout
    try:
        while seen < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw read saw {seen:,} of {total:,} records in {timeout:.0f}s")
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if batch and not started:
                started = time.perf_counter()
            for records in batch.values():
                for r in records:
                    json.loads(r.value)
                seen += len(records)
        return seen, time.perf_counter() - started
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    found: list[TopicPartition] = []
    for topic in topics:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            await consumer._client.force_metadata_update()  # aiokafka learns topics lazily
            numbers = consumer.partitions_for_topic(topic) or set()
        found += [TopicPartition(topic, p) for p in sorted(numbers)]
    return found


async def records_in(settings: Settings, topics: Sequence[str]) -> int:
    """Records the topics hold now: end minus beginning offsets, summed over their partitions."""
    consumer = raw_consumer(settings, [])
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topics)
        ends = await consumer.end_offsets(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
    return sum(ends[p] - beginnings[p] for p in partitions)


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The end offset of each partition of `topic` that holds records."""
    consumer = raw_consumer(settings, [])
    await consumer.start()
    try:
        ends = await consumer.end_offsets(await _partitions(consumer, [topic]))
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items() if offset > 0}


async def group_lag(settings: Settings, group: str, topics: Sequence[str]) -> int:
    """Records in the topics that `group` has not committed yet (a partition it never committed counts whole)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_options(settings))
    consumer = raw_consumer(settings, [])
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = await _partitions(consumer, topics)
        ends = await consumer.end_offsets(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    done = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
    return sum(max(ends[p] - done.get(p, beginnings[p]), 0) for p in partitions)
