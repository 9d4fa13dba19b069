"""Publish-to-applied latency at a steady rate: a paced, signed stream from a producer process, applied by the real
pipeline (FastStream batch subscriber + CopyKeeper); baseline: raw aiokafka + JSON reading the same topic at the same
rate, from the same producer.

The two sides read one after the other, each alone: first the raw reader its own stretch of the stream, then the
pipeline the next. Read at once, each reader's process took the machine's two cores from the other at the very
moment each tick arrived; the target is the pipeline's latency on a box running Kafka, PostgreSQL and the services,
which a baseline reader is not part of (alternated on one stack, ours had p50 4.02 ms alone against 4.81 beside the
raw reader, README round 18)."""

from __future__ import annotations

import array
import asyncio
import gc
import json
import multiprocessing
import queue
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

from bench.corpus import AUTHORITY, signed, stamp, unstamped
from bench.harness import Figure, percentile, progress, use_service_event_loop
from bench.workspace import POLICY, Workspace, consumer_broker, raw_consumer, start_group_at_end
from services.consumers.copy import BatchOutcome, CopyKeeper, Prepared
from services.consumers.pipeline import APPLY_CONNECTIONS
from services.kit.db import HeldConnection
from services.kit.heap import settle_heap
from services.kit.kafka import idempotent_producer
from services.kit.settings import Settings
from services.kit.signing import Keyring, SigningKey
from services.publishers.relay import send_in_batches
from services.publishers.store import OutboxRecord

QUANTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0))
NAMES = tuple(f"publish-to-applied latency {q}" for q, _ in QUANTILES)
TARGETS_MS = {"p50": 5.0, "p99": 25.0}
TICK_S = 0.005  # one small signed batch per tick: 10 records at 2,000/s
PROBE = "probe"
PHASES = ("raw", "ours")  # the order the sides read in: each its own stretch of the stream, alone
SPAWN = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class Pace:
    """`seconds` of measured stream at `rate`, after `warm_up_s` at the same rate that neither side's figures count."""

    rate: int
    seconds: float
    warm_up_s: float = 0.0

    @property
    def total(self) -> int:
        return round(self.rate * (self.warm_up_s + self.seconds))


def occurred_at(value: bytes) -> tuple[str, float]:
    """(listing_id, occurred_at as a Unix time) of one record's value."""
    event = json.loads(value)
    return event["listing"]["listing_id"], datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).timestamp()


class Arrivals:
    """When each batch of values was done, kept in three containers however many batches come (one list of bytes,
    two arrays of numbers): a (time, list) pair per batch added two objects a tick for the cyclic garbage collector
    to walk in each reader's process. Objects piling up so made the paced producer's full collections take 93-173 ms
    (it kept a future per send, see `outstanding`), each a stall of the stream counted as latency (README round 19)."""

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.done_at = array.array("d")
        self.ends = array.array("q")  # len(values) after each batch

    def add(self, done_at: float, values: Sequence[bytes]) -> None:
        self.values.extend(values)
        self.done_at.append(done_at)
        self.ends.append(len(self.values))

    def batches(self) -> Iterator[tuple[float, list[bytes]]]:
        start = 0
        for done_at, end in zip(self.done_at, self.ends, strict=True):
            yield done_at, self.values[start:end]
            start = end


def latencies(arrivals: Arrivals) -> list[tuple[float, float]]:
    """(occurred_at, seconds from it to the moment its batch was done) of each record, the probe left out."""
    out = []
    for done_at, values in arrivals.batches():
        for value in values:
            listing_id, stamp = occurred_at(value)
            if f":{PROBE}-" not in listing_id:
                out.append((stamp, done_at - stamp))
    return out


def after_warm_up(stamped: Sequence[tuple[float, float]], warm_up_s: float) -> list[float]:
    """The delays of the records stamped `warm_up_s` or later after the first of this side's stretch of the stream."""
    since = min((stamp for stamp, _ in stamped), default=0.0) + warm_up_s
    return [d for stamp, d in stamped if stamp >= since]


class TimingKeeper(CopyKeeper):
    """The real apply path; notes when each transaction has committed, with the values it held.

    It hooks apply, the step the consumer's Pipeline runs for the batches admitted since the previous transaction
    (process() is prepare + apply)."""

    def __init__(self, *args: Any, expected: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected
        self.seen = 0
        self.arrivals = Arrivals()
        self.all_seen = asyncio.Event()

    async def apply(self, prepared: Prepared) -> BatchOutcome:
        # The consumer admits further batches while a transaction runs: time each record when its own has committed.
        outcome = await super().apply(prepared)
        self.arrivals.add(time.time(), [r.value or b"" for r in prepared.batch])
        self.seen += prepared.records
        if self.seen >= self.expected:
            self.all_seen.set()
        return outcome


# --- the producer process -------------------------------------------------------------------------------------------


def produce_paced(
    settings: Settings, topic: str, pace: Pace, run: str, ready: ProcessEvent, go: Sequence[ProcessEvent], out: Any
) -> None:
    """Child process: for each of PHASES, once its `go` is set, sign and send `pace.total` records at `pace.rate`,
    each stamped the moment its batch is sent; puts what it sent after each."""
    use_service_event_loop()
    asyncio.run(_paced(settings, topic, pace, run, ready, go, out))


async def _paced(
    settings: Settings, topic: str, pace: Pace, run: str, ready: ProcessEvent, go: Sequence[ProcessEvent], out: Any
) -> None:
    key = SigningKey.load(settings.keys_dir, "court-dev")
    # The relay's producer and its way of sending: whole per-partition batches, closed when submitted, so they go
    # out at once (a record-by-record send() would linger 2 ms first, which no relayed record ever does).
    producer = idempotent_producer(settings, max_batch_size=1 << 20)
    rng = random.Random(3)
    # Built ahead: at send time only the stamp, the batch signature and the send itself cost anything.
    streams = []
    for phase in PHASES:
        ids = [f"{AUTHORITY}:lat-{run}-{phase}-{n:08d}" for n in range(pace.total)]
        streams.append((ids, [unstamped(listing_id, n, rng, settings.subject_hash_key) for n, listing_id in enumerate(ids)]))
    settle_heap()  # what building them left behind is collected once, not walked by every full collection after
    await producer.start()
    try:
        ready.set()
        for phase, told, (ids, values) in zip(PHASES, go, streams, strict=True):
            if not await asyncio.to_thread(told.wait, 600):
                raise TimeoutError(f"paced producer: never told to start the {phase} stretch")
            with GcPauses() as pauses:
                stretch = await _send_paced(producer, key, topic, pace, ids, values)
            out.put(stretch | {"gc_longest_ms": round(pauses.longest_ms, 1), "gc_full": pauses.full})
    finally:
        await producer.stop()


async def _send_paced(
    producer: Any, key: SigningKey, topic: str, pace: Pace, ids: Sequence[str], values: Sequence[bytes]
) -> dict[str, float]:
    pending: list[asyncio.Future[Any]] = []
    sent, behind = 0, 0
    start = time.monotonic()
    while sent < pace.total:
        due = min(pace.total, int((time.monotonic() - start) * pace.rate) + 1)
        if due - sent > max(1, pace.rate * TICK_S * 2):
            behind += 1  # the clock ran ahead of us: a tick's records went out late
        now = datetime.now(UTC)
        batch = [(ids[n], stamp(values[n], now)) for n in range(sent, due)]
        outbox = [
            (OutboxRecord(n, topic, r.key.decode(), r.value, AUTHORITY, dict(r.headers)["event-type"].decode()), r.headers)
            for n, r in enumerate(signed(batch, key), start=sent)  # signed() orders records its own way
        ]
        pending = outstanding(pending) + await send_in_batches(producer, outbox)
        sent = due
        await asyncio.sleep(max(TICK_S, start + sent / pace.rate - time.monotonic()))
    seconds = time.monotonic() - start
    await asyncio.gather(*pending)
    return {"sent": sent, "seconds": seconds, "late_ticks": behind}


class GcPauses:
    """This process's cyclic garbage collections while installed (gc.callbacks): the longest pause, and how many
    were full ones. A bench's own process that stalls looks like a slow pipeline; the notes say whether one did."""

    def __init__(self) -> None:
        self.longest_ms = 0.0
        self.full = 0
        self._started = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._note)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.longest_ms = max(self.longest_ms, (time.perf_counter() - self._started) * 1000)
        self.full += info["generation"] == 2


def outstanding(futures: Sequence[asyncio.Future[Any]]) -> list[asyncio.Future[Any]]:
    """The sends not acknowledged yet; one that failed raises here. Keeping every future of a stretch (8,000 at
    2,000/s for 40 s) made the producer's full collections long enough to stall the stream."""
    left = []
    for future in futures:
        if future.done():
            future.result()
        else:
            left.append(future)
    return left


# --- the baseline reader process ------------------------------------------------------------------------------------


def read_raw(settings: Settings, topic: str, expected: int, ready: ProcessEvent, out: Any) -> None:
    """Child process: raw aiokafka + JSON over the same stream; puts the publish-to-read latencies."""
    use_service_event_loop()
    out.put(asyncio.run(_read_raw(settings, topic, expected, ready)))


async def _read_raw(
    settings: Settings, topic: str, expected: int, ready: ProcessEvent, timeout: float = 300
) -> list[tuple[float, float]]:
    consumer = raw_consumer(settings, [topic])
    await consumer.start()
    arrivals = Arrivals()
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < expected and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=100, max_records=2000)
            values = [r.value or b"" for records in fetched.values() for r in records]
            for value in values:
                json.loads(value)
            if values:
                arrivals.add(time.time(), values)
                seen += len(values)
                ready.set()  # the probe arrived: partitions are assigned and fetching
    finally:
        await consumer.stop()
    return latencies(arrivals)


# --- the bench ------------------------------------------------------------------------------------------------------


@dataclass
class Children:
    producer_ready: ProcessEvent = field(default_factory=SPAWN.Event)
    go: tuple[ProcessEvent, ...] = field(default_factory=lambda: tuple(SPAWN.Event() for _ in PHASES))  # by PHASES
    reader_ready: ProcessEvent = field(default_factory=SPAWN.Event)
    produced: Any = field(default_factory=SPAWN.Queue)
    read: Any = field(default_factory=SPAWN.Queue)
    processes: list[Any] = field(default_factory=list)

    def start(self, settings: Settings, workspace: Workspace, pace: Pace) -> None:
        args = (settings, workspace.topic, pace, workspace.run, self.producer_ready, self.go, self.produced)
        self.processes = [
            SPAWN.Process(target=produce_paced, args=args, name="bench-paced-producer"),
            # It reads the probe and the first stretch from the topic's start, then ends: it is gone when ours begins.
            SPAWN.Process(target=read_raw, args=(settings, workspace.topic, pace.total + 1, self.reader_ready, self.read)),
        ]
        for process in self.processes:
            process.start()

    def stop(self) -> None:
        for go in self.go:
            go.set()  # a producer still waiting must not hang the join
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join()


async def _wait(event: ProcessEvent, what: str, timeout: float = 120) -> None:
    if not await asyncio.to_thread(event.wait, timeout):
        raise TimeoutError(f"latency bench: {what} not ready within {timeout:.0f}s")


async def _get(results: Any, what: str, timeout: float) -> Any:
    try:
        return await asyncio.to_thread(results.get, True, timeout)
    except queue.Empty:
        raise TimeoutError(f"latency bench: no result from the {what} within {timeout:.0f}s") from None


async def _applied(keeper: TimingKeeper, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while keeper.seen < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"latency bench: the pipeline applied {keeper.seen} of {count} records in {timeout:.0f}s")
        await asyncio.sleep(0.05)


async def _send_probe(settings: Settings, workspace: Workspace, phase: str) -> None:
    """One record ahead of a stretch: once its reader has it, partitions are assigned and the reader is warm."""
    key = SigningKey.load(settings.keys_dir, "court-dev")
    listing_id = f"{AUTHORITY}:{PROBE}-{workspace.run}-{phase}"
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        value = stamp(unstamped(listing_id, 0, random.Random(1), settings.subject_hash_key), datetime.now(UTC))
        for r in signed([(listing_id, value)], key):
            await (await producer.send(workspace.topic, r.value, key=r.key, headers=r.headers))
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Streamed:
    """What each side saw of its own stretch, and what the producer sent in each."""

    ours: list[tuple[float, float]]
    raw: list[tuple[float, float]]
    produced: dict[str, float]
    produced_raw: dict[str, float]


async def _stream(settings: Settings, workspace: Workspace, pace: Pace) -> Streamed:
    children = Children()
    try:
        children.start(settings, workspace, pace)
        raw, produced_raw = await _raw_alone(settings, workspace, pace, children)
        ours, produced = await _ours_alone(settings, workspace, pace, children)
    finally:
        children.stop()
    return Streamed(ours, raw, produced, produced_raw)


def _stretch_timeout(pace: Pace) -> float:
    return pace.warm_up_s + pace.seconds + 120


async def _raw_alone(
    settings: Settings, workspace: Workspace, pace: Pace, children: Children
) -> tuple[list[tuple[float, float]], dict[str, float]]:
    """The first stretch, read by the raw reader alone (the pipeline has not subscribed yet)."""
    await _send_probe(settings, workspace, PHASES[0])
    await _wait(children.reader_ready, "raw reader")
    await _wait(children.producer_ready, "paced producer")
    progress(f"  paced stream: {pace.total:,} records at {pace.rate:,}/s, read raw, alone")
    children.go[0].set()
    produced = await _get(children.produced, "paced producer", _stretch_timeout(pace))
    raw = await _get(children.read, "raw reader", 120)
    return raw, produced


async def _ours_alone(
    settings: Settings, workspace: Workspace, pace: Pace, children: Children
) -> tuple[list[tuple[float, float]], dict[str, float]]:
    """The next stretch, applied by the pipeline alone (the raw reader has ended), from where the first one ended."""
    group = f"bench-{workspace.run}"
    await start_group_at_end(settings, workspace.topic, group)
    pool = await workspace.pool()
    dlq = idempotent_producer(settings)
    await dlq.start()
    # As the consumer service applies: asynchronous commits on connections of their own, settled on the pool.
    apply_pool = await workspace.pool(synchronous_commit=False)
    applying = HeldConnection(apply_pool, keep=APPLY_CONNECTIONS)
    keeper = TimingKeeper(POLICY, applying, Keyring.load(settings.keyring_path), dlq, settling=pool, expected=pace.total + 1)
    try:
        async with consumer_broker(settings, keeper, workspace.topic, group) as broker:
            await broker.start()
            settle_heap()  # as the consumer service does once started (create_app's lifespan)
            await _send_probe(settings, workspace, PHASES[1])
            await _applied(keeper, 1, timeout=120)  # the pipeline has applied the probe
            progress(f"  paced stream: {pace.total:,} records at {pace.rate:,}/s, applied by the pipeline, alone")
            with GcPauses() as pauses:
                children.go[1].set()
                produced = await _get(children.produced, "paced producer", _stretch_timeout(pace))
                await asyncio.wait_for(keeper.all_seen.wait(), timeout=120)
            produced = produced | {"pipeline_gc_longest_ms": round(pauses.longest_ms, 1), "pipeline_gc_full": pauses.full}
    finally:
        await dlq.stop()
        await applying.close()
        await apply_pool.close()
        await pool.close()
    return latencies(keeper.arrivals), produced


async def run(settings: Settings, pace: Pace) -> list[Figure]:
    workspace = Workspace.new(settings, "latency")
    progress(
        f"latency bench: {pace.rate:,}/s, {pace.warm_up_s:g}s of warm-up then {pace.seconds:g}s measured, on {workspace.topic};"
        " the raw reader's stretch first, then the pipeline's"
    )
    await workspace.create()
    try:
        streamed = await _stream(settings, workspace, pace)
    finally:
        await workspace.drop()
    return figures(streamed, pace)


def drift_ms(samples: Sequence[float]) -> dict[str, float]:
    """Median of the first and of the last tenth of the stream: a reader that cannot keep up shows a growing delay."""
    tenth = max(1, len(samples) // 10)
    return {
        "first_tenth_p50_ms": percentile(samples[:tenth], 50) * 1000,
        "last_tenth_p50_ms": percentile(samples[-tenth:], 50) * 1000,
    }


def figures(streamed: Streamed, pace: Pace) -> list[Figure]:
    ours, raw = after_warm_up(streamed.ours, pace.warm_up_s), after_warm_up(streamed.raw, pace.warm_up_s)
    every_ours, every_raw = [d for _, d in streamed.ours], [d for _, d in streamed.raw]
    produced, produced_raw = streamed.produced, streamed.produced_raw
    notes: dict[str, object] = {
        "ours": drift_ms(ours),
        "raw": drift_ms(raw),
        "records": len(ours),
        "raw_records": len(raw),
        "warm_up_s": pace.warm_up_s,
        "with_warm_up_ms": {
            "records": len(every_ours),
            "p50": percentile(every_ours, 50) * 1000,
            "p99": percentile(every_ours, 99) * 1000,
            "raw_p50": percentile(every_raw, 50) * 1000,
            "raw_p99": percentile(every_raw, 99) * 1000,
        },
        "target_rate": pace.rate,
        "achieved_rate": round(produced["sent"] / produced["seconds"], 1),
        "late_ticks": produced["late_ticks"],
        "raw_achieved_rate": round(produced_raw["sent"] / produced_raw["seconds"], 1),
        "raw_late_ticks": produced_raw["late_ticks"],
        # Longest garbage collection pause (ms) and full collections during each stretch, per process.
        "gc": {
            "pipeline": [produced["pipeline_gc_longest_ms"], produced["pipeline_gc_full"]],
            "producer": [produced["gc_longest_ms"], produced["gc_full"]],
            "producer_raw_stretch": [produced_raw["gc_longest_ms"], produced_raw["gc_full"]],
        },
        "sides": "one after the other, each alone: the raw reader, then the pipeline",
        "signed_batch": max(1, round(pace.rate * TICK_S)),
    }
    out = []
    for (label, q), name in zip(QUANTILES, NAMES, strict=True):
        value, base = percentile(ours, q) * 1000, percentile(raw, q) * 1000
        target = TARGETS_MS.get(label)
        out.append(
            Figure(
                name,
                value,
                "ms",
                "raw aiokafka + JSON, same topic and rate, read alone before ours",
                base,
                f"<= {target:g} ms at 2,000/s" if target else None,
                notes if label == "p50" else {},
                met=None if target is None else value <= target,
            )
        )
    return out
