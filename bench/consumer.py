"""Events applied per second into one consumer's copy, against a raw aiokafka+JSON loop and a naive
verify-and-apply-one-record-per-transaction loop, all on the same topic and database in the same run.

Ours is measured twice, each into a fresh copy: in this process (the pipeline alone), and as WORKERS processes in one
consumer group, as `faststream run ... --workers 2` deploys a consumer (bench/apply_worker.py). The figure held to
the target is the second, from the first record any worker fetched to the commit that completed the topic, the
group's join and rebalance included."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from asyncio.subprocess import PIPE
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord

from bench.corpus import events, signed
from bench.harness import Figure, progress
from bench.workspace import POLICY, Workspace, consumer_broker, end_offsets, produce, raw_consumer, raw_json_read
from services.consumers import store
from services.consumers.copy import BatchOutcome, CopyKeeper, Prepared
from services.consumers.pipeline import APPLY_CONNECTIONS
from services.kit.db import HeldConnection
from services.kit.intake import Rejection, admit, headers_of
from services.kit.kafka import idempotent_producer
from services.kit.settings import Settings
from services.kit.signing import Keyring, SigningKey

__all__ = ["POLICY", "CountingKeeper", "Workspace", "run"]

NAMES = ("consumer apply rate (verified)", "consumer apply rate vs naive", "consumer apply rate, one process")
WORKERS = 2  # one per core: the processes `faststream run --workers 2` would start
TARGET_RATE = 25_000
TARGET_SHARE_OF_RAW = 0.40
TARGET_TIMES_NAIVE = 10


async def raw_json_rate(settings: Settings, topic: str, total: int) -> float:
    """Baseline: raw aiokafka reading every record and parsing it as JSON, nothing else."""
    seen, seconds = await raw_json_read(settings, [topic], total)
    return seen / seconds


class CountingKeeper(CopyKeeper):
    """The real apply path, counting records and timing from the first batch to the last."""

    def __init__(self, *args: object, total: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
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
    # As the consumer service applies: asynchronous commits on connections of their own, settled on the pool.
    apply_pool = await workspace.pool(synchronous_commit=False)
    applying = HeldConnection(apply_pool, keep=APPLY_CONNECTIONS)
    keeper = CountingKeeper(POLICY, applying, keyring, dlq, settling=pool, total=total)
    try:
        async with consumer_broker(settings, keeper, workspace.topic, f"bench-{workspace.run}") as broker:
            await broker.start()
            timeout = 60 + total / 1000  # 1,000 records/s at the very least: slower is a broken pipeline, not a slow one
            try:
                await asyncio.wait_for(keeper.finished.wait(), timeout=timeout)
            except TimeoutError:
                raise TimeoutError(f"the pipeline applied {keeper.seen:,} of {total:,} records in {timeout:.0f}s") from None
            elapsed = time.perf_counter() - keeper.started
    finally:
        await dlq.stop()
        await applying.close()
        await apply_pool.close()
        await pool.close()
    return total / elapsed, keyring.verifications


@dataclass
class WorkerReports:
    """What the worker processes said: when the first fetched, and how far their commits have taken each partition."""

    ends: dict[int, int]  # the topic's end offset per partition: the run is over when commits reach every one
    first: list[float] = field(default_factory=list)
    reached: dict[int, int] = field(default_factory=dict)
    finished_at: float | None = None
    verifications: int = 0

    def read(self, line: str) -> None:
        verb, _, rest = line.strip().partition(" ")
        if verb == "first":
            self.first.append(float(rest))
        elif verb == "applied":
            moment, _, ends = rest.partition(" ")
            for partition, offset in json.loads(ends).items():
                self.reached[int(partition)] = max(offset, self.reached.get(int(partition), 0))
            if self.finished_at is None and all(self.reached.get(p, 0) >= end for p, end in self.ends.items()):
                self.finished_at = float(moment)
        elif verb == "verifications":
            self.verifications += int(rest)

    @property
    def seconds(self) -> float:
        assert self.finished_at is not None and self.first
        return self.finished_at - min(self.first)


async def workers_rate(settings: Settings, topic: str, schema: str, total: int, workers: int) -> tuple[float, int]:
    """Ours as deployed with several workers: that many consumer processes in one group, applying into one copy.
    Duplicates after a rebalance (version-guarded no-ops) do not end the run early: it ends when commits reach the
    end of every partition."""
    reports = WorkerReports(await end_offsets(settings, topic))
    job = json.dumps({"topic": topic, "schema": schema, "group": f"bench-workers-{schema}"}) + "\n"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.apply_worker", stdin=PIPE, stdout=PIPE, env=dict(os.environ)
        )
        for _ in range(workers)
    ]
    try:
        for process in processes:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(job.encode())
            await process.stdin.drain()
        for process in processes:  # every worker connected before any joins the group: they join together
            assert process.stdout is not None
            ready = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            if ready.strip() != b"ready":
                raise RuntimeError(f"a consumer worker did not start (said {ready[:200]!r}); see its stderr above")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
        timeout = 60 + total / 1000  # as pipeline_rate: slower than 1,000 records/s is a broken pipeline
        follow = [asyncio.create_task(_follow(p, reports)) for p in processes]
        deadline = time.monotonic() + timeout
        while reports.finished_at is None:
            if time.monotonic() > deadline or all(task.done() for task in follow):
                reached = sum(min(reports.reached.get(p, 0), end) for p, end in reports.ends.items())
                raise TimeoutError(f"{workers} consumer workers applied up to {reached:,} of {total:,} records in {timeout:.0f}s")
            await asyncio.sleep(0.05)
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
        await asyncio.wait_for(asyncio.gather(*follow), timeout=30)
    finally:
        for process in processes:
            if process.returncode is None:
                try:
                    await asyncio.wait_for(process.wait(), timeout=5)
                except TimeoutError:
                    process.kill()
                    await process.wait()
    return total / reports.seconds, reports.verifications


async def _follow(process: asyncio.subprocess.Process, reports: WorkerReports) -> None:
    assert process.stdout is not None
    async for line in process.stdout:
        reports.read(line.decode())


async def naive_rate(settings: Settings, workspace: Workspace, keyring_json: dict[str, object], total: int) -> float:
    """Baseline: verify each record on its own (no signature cache) and apply it in its own transaction, committed
    asynchronously as the pipeline's are (a synchronous commit per record would make the baseline slower)."""
    pool = await workspace.pool(workspace.naive_schema, synchronous_commit=False)
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
    workers_schema = f"{workspace.schema}_workers"
    workspace.extra_schemas += [workspace.naive_schema, workers_schema]
    progress(f"consumer bench: {total:,} signed records into {workspace.topic}")
    records = signed(events(total), key)
    size = sum(len(r.value) for r in records) / len(records)
    await workspace.create()
    try:
        await produce(settings, workspace.topic, [records])
        progress("  baseline: raw aiokafka + json.loads")
        raw = await raw_json_rate(settings, workspace.topic, total)
        progress("  ours, one process: FastStream batch subscriber + verify + set-based apply")
        alone, verifications = await pipeline_rate(settings, workspace, Keyring.from_json(keyring_json), total)
        progress(f"  ours, {WORKERS} worker processes in one group, into a fresh copy")
        ours, workers_verifications = await workers_rate(settings, workspace.topic, workers_schema, total, WORKERS)
        naive_total = max(total // 20, 200)
        progress(f"  baseline: naive verify + one transaction per record ({naive_total:,} records)")
        naive = await naive_rate(settings, workspace, keyring_json, naive_total)
    finally:
        await workspace.drop()
    notes = {
        "records": total,
        "mean_value_bytes": round(size),
        "worker_processes": WORKERS,
        "ed25519_verifications": workers_verifications,
    }
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
        Figure(
            NAMES[2],
            alone,
            "events/s",
            "raw aiokafka + JSON",
            raw,
            notes={"records": total, "ed25519_verifications": verifications},
        ),
    ]
