"""Events applied per second into one consumer's copy, against a raw aiokafka+JSON loop and a naive
verify-and-apply-one-record-per-transaction loop, all on the same topic and database in the same run."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import ConsumerRecord

from bench.corpus import Record, events, signed
from bench.harness import Figure, progress
from schemas.catalogue import LISTING_TOPIC_PARTITIONS
from services.consumers import store
from services.consumers.app import build_broker
from services.consumers.copy import BatchOutcome, CopyKeeper
from services.consumers.registry import POLICIES
from services.kit.intake import Rejection, admit, headers_of
from services.kit.kafka import client_options, idempotent_producer
from services.kit.migrations import migrate
from services.kit.settings import Settings
from services.kit.signing import Keyring, SigningKey

POLICY = POLICIES["airline"]


@dataclass
class Workspace:
    """A topic and a scratch copy of the airline schema made for one run, dropped afterwards."""

    settings: Settings
    run: str
    topic: str
    schema: str

    @classmethod
    def new(cls, settings: Settings) -> Workspace:
        run = uuid.uuid4().hex[:8]
        return cls(settings, run, f"bench.listings.{run}", f"bench_{run}")

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
            await migrate(conn, POLICY.name, schema=self.schema)
            await migrate(conn, POLICY.name, schema=self.naive_schema)
        finally:
            await conn.close()

    @property
    def naive_schema(self) -> str:
        return f"{self.schema}_naive"

    async def pool(self, schema: str | None = None) -> asyncpg.Pool:
        settings = {"search_path": schema or self.schema}
        pool = await asyncpg.create_pool(self.settings.database_url, min_size=1, max_size=4, server_settings=settings)
        assert pool is not None
        return pool

    async def drop(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        conn = await asyncpg.connect(self.settings.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.naive_schema}" CASCADE')
        finally:
            await conn.close()
        admin = AIOKafkaAdminClient(**client_options(self.settings))
        await admin.start()
        try:
            await admin.delete_topics([self.topic])
        finally:
            await admin.close()


async def produce(settings: Settings, topic: str, records: Sequence[Record]) -> None:
    producer = idempotent_producer(settings, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        futures = [await producer.send(topic, r.value, key=r.key, headers=r.headers) for r in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _consumer(settings: Settings, topic: str, group: str | None) -> object:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        topic,
        **client_options(settings),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )


async def raw_json_rate(settings: Settings, topic: str, total: int) -> float:
    """Baseline: raw aiokafka reading every record and parsing it as JSON, nothing else."""
    from aiokafka import AIOKafkaConsumer

    consumer = _consumer(settings, topic, None)
    assert isinstance(consumer, AIOKafkaConsumer)
    await consumer.start()
    seen, started = 0, 0.0
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if batch and not started:
                started = time.perf_counter()
            for records in batch.values():
                for r in records:
                    json.loads(r.value)
                seen += len(records)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


class CountingKeeper(CopyKeeper):
    """The real apply path, counting records and timing from the first batch to the last."""

    def __init__(self, *args: object, total: int) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.total = total
        self.seen = 0
        self.started = 0.0
        self.finished = asyncio.Event()

    async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> BatchOutcome:
        if not self.started:
            self.started = time.perf_counter()
        outcome = await super().process(records)
        self.seen += len(records)
        if self.seen >= self.total:
            self.finished.set()
        return outcome


async def pipeline_rate(settings: Settings, workspace: Workspace, keyring: Keyring, total: int) -> tuple[float, int]:
    """Ours: the consumer's FastStream batch subscriber and CopyKeeper, verifying every record."""
    pool = await workspace.pool()
    dlq = idempotent_producer(settings)
    await dlq.start()
    keeper = CountingKeeper(POLICY, pool, keyring, dlq, total=total)
    broker = build_broker(POLICY, settings, lambda: keeper, topics=(workspace.topic,), group_id=f"bench-{workspace.run}")
    await broker.start()
    try:
        await asyncio.wait_for(keeper.finished.wait(), timeout=600)
        elapsed = time.perf_counter() - keeper.started
    finally:
        await broker.stop()
        await dlq.stop()
        await pool.close()
    return total / elapsed, keyring.verifications


async def naive_rate(settings: Settings, workspace: Workspace, keyring_json: dict[str, object], total: int) -> float:
    """Baseline: verify each record on its own (no signature cache) and apply it in its own transaction."""
    from aiokafka import AIOKafkaConsumer

    pool = await workspace.pool(workspace.naive_schema)
    consumer = _consumer(settings, workspace.topic, None)
    assert isinstance(consumer, AIOKafkaConsumer)
    await consumer.start()
    seen, started = 0, 0.0
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            if batch and not started:
                started = time.perf_counter()
            for records in batch.values():
                for r in records:
                    if seen >= total:
                        break
                    try:
                        event = admit(r.key, r.value, headers_of(r.headers), Keyring.from_json(keyring_json))
                    except Rejection:
                        continue
                    finally:
                        seen += 1
                    change = store.Change(event.listing.listing_id, event.listing.version, POLICY.project(event.listing))
                    async with pool.acquire() as conn, conn.transaction():
                        await store.apply_batch(conn, [change])
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await pool.close()


async def run(settings: Settings, total: int) -> list[Figure]:
    key = SigningKey.load(settings.keys_dir, "court-dev")
    keyring_json = json.loads(settings.keyring_path.read_text())
    workspace = Workspace.new(settings)
    progress(f"consumer bench: {total:,} signed records into {workspace.topic}")
    records = signed(events(total), key)
    size = sum(len(r.value) for r in records) / len(records)
    await workspace.create()
    try:
        await produce(settings, workspace.topic, records)
        progress("  baseline: raw aiokafka + json.loads")
        raw = await raw_json_rate(settings, workspace.topic, total)
        progress("  ours: FastStream batch subscriber + verify + set-based apply")
        ours, verifications = await pipeline_rate(settings, workspace, Keyring.from_json(keyring_json), total)
        naive_total = max(total // 20, 200)
        progress(f"  baseline: naive verify + one transaction per record ({naive_total:,} records)")
        naive = await naive_rate(settings, workspace, keyring_json, naive_total)
    finally:
        await workspace.drop()
    notes = {"records": total, "mean_value_bytes": round(size), "ed25519_verifications": verifications}
    return [
        Figure("consumer apply rate (verified)", ours, "events/s", "raw aiokafka + JSON", raw, ">= 25,000/s and >= 0.40", notes),
        Figure("consumer apply rate vs naive", ours, "events/s", "naive per-record txn", naive, ">= 10x"),
    ]
