"""Events applied per second into one consumer's copy, against a raw aiokafka+JSON loop and a naive
verify-and-apply-one-record-per-transaction loop, all on the same topic and database in the same run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

from aiokafka import ConsumerRecord

from bench.corpus import events, signed
from bench.harness import Figure, progress
from bench.workspace import POLICY, Workspace, produce, raw_consumer, raw_json_read
from services.consumers import store
from services.consumers.app import build_broker
from services.consumers.copy import BatchOutcome, CopyKeeper, Prepared
from services.kit.intake import Rejection, admit, headers_of
from services.kit.kafka import idempotent_producer
from services.kit.settings import Settings
from services.kit.signing import Keyring, SigningKey

__all__ = ["POLICY", "CountingKeeper", "Workspace", "run"]

NAMES = ("consumer apply rate (verified)", "consumer apply rate vs naive")
TARGET_RATE = 25_000
TARGET_SHARE_OF_RAW = 0.40
TARGET_TIMES_NAIVE = 10


async def raw_json_rate(settings: Settings, topic: str, total: int) -> float:
    """Baseline: raw aiokafka reading every record and parsing it as JSON, nothing else."""
    seen, seconds = await raw_json_read(settings, [topic], total)
    return seen / seconds


class CountingKeeper(CopyKeeper):
    """The real apply path, counting records and timing from the first batch to the last."""

    def __init__(self, *args: object, total: int) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.total = total
        self.seen = 0
        self.started = 0.0
        self.finished = asyncio.Event()

    async def prepare(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> Prepared:
        if not self.started:
            self.started = time.perf_counter()
        return await super().prepare(records)

    async def apply(self, prepared: Prepared) -> BatchOutcome:
        # The consumer admits batch N+1 while N's transaction runs: a batch counts once committed.
        outcome = await super().apply(prepared)
        self.seen += prepared.records
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
        timeout = 60 + total / 1000  # 1,000 records/s at the very least: slower is a broken pipeline, not a slow one
        try:
            await asyncio.wait_for(keeper.finished.wait(), timeout=timeout)
        except TimeoutError:
            raise TimeoutError(f"the pipeline applied {keeper.seen:,} of {total:,} records in {timeout:.0f}s") from None
        elapsed = time.perf_counter() - keeper.started
    finally:
        await broker.stop()
        await dlq.stop()
        await pool.close()
    return total / elapsed, keyring.verifications


async def naive_rate(settings: Settings, workspace: Workspace, keyring_json: dict[str, object], total: int) -> float:
    """Baseline: verify each record on its own (no signature cache) and apply it in its own transaction."""
    pool = await workspace.pool(workspace.naive_schema)
    consumer = raw_consumer(settings, [workspace.topic])
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
    workspace.extra_schemas.append(workspace.naive_schema)
    progress(f"consumer bench: {total:,} signed records into {workspace.topic}")
    records = signed(events(total), key)
    size = sum(len(r.value) for r in records) / len(records)
    await workspace.create()
    try:
        await produce(settings, workspace.topic, [records])
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
        Figure(
            NAMES[0],
            ours,
            "events/s",
            "raw aiokafka + JSON",
            raw,
            ">= 25,000/s and >= 0.40",
            notes,
            met=ours >= TARGET_RATE and ours >= TARGET_SHARE_OF_RAW * raw,
        ),
        Figure(NAMES[1], ours, "events/s", "naive per-record txn", naive, ">= 10x", met=ours >= TARGET_TIMES_NAIVE * naive),
    ]
