"""Applies admitted batches one transaction at a time, in order; a batch's offsets are committed only after its own
transaction, and a failed batch rewinds its partitions so nothing is ever committed ahead of the copy.

The fetch loop does not wait for the database: each batch is admitted (verified, projected) as soon as it is fetched
and queued, while one transaction runs. When that transaction commits, every batch queued meanwhile goes into the next
one (group commit): a record waits for at most the transaction running when it was admitted, never for a whole batch
admitted before it as well. The queue holds at most one batch's worth of records, so a slow database stops fetching.

Offset commits run beside the pipeline, not in it: the next transaction starts as soon as the previous one has
committed, while its offsets go to Kafka. Transactions commit in order, so the offsets waiting to be committed always
belong to transactions already committed; those of a commit's spacing are coalesced into one commit (the highest
offset per partition), so a steady trickle of small batches does not cost Kafka a commit each. A commit lost to a
crash or a rebalance only means redelivery, which the version check makes a no-op.

Dead letters are the exception: a redelivered poison record is lettered again, so a group that wrote letters has its
offsets committed before the next transaction starts. A crash from then on does not redeliver them; only one inside
that commit's round trip does, and its duplicate letters carry the same x-dlq-source (dead letters are at least once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from services.consumers.copy import CopyKeeper, Prepared
from services.kit import metrics

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0
COMMIT_SPACING_SECONDS = 0.05  # at most one offset commit (and lag report) per spacing; flush() skips the wait
GROUP_RECORDS = 2000  # records queued for the next transaction at most: as many as one poll hands over
Offsets = dict[TopicPartition, int]


def first_offsets(records: Sequence[ConsumerRecord[bytes, bytes]]) -> Offsets:
    starts: dict[tuple[str, int], int] = {}
    for r in records:  # plain tuples inside the loop: a TopicPartition per record costs more than the lookup
        if starts.get((r.topic, r.partition), r.offset) >= r.offset:
            starts[(r.topic, r.partition)] = r.offset
    return {TopicPartition(*tp): offset for tp, offset in starts.items()}


def next_offsets(records: Sequence[ConsumerRecord[bytes, bytes]]) -> Offsets:
    ends: dict[tuple[str, int], int] = {}
    for r in records:
        if ends.get((r.topic, r.partition), 0) <= r.offset:
            ends[(r.topic, r.partition)] = r.offset + 1
    return {TopicPartition(*tp): offset for tp, offset in ends.items()}


def earliest(offsets: Iterable[Offsets]) -> Offsets:
    out: Offsets = {}
    for each in offsets:
        for tp, offset in each.items():
            out[tp] = min(offset, out.get(tp, offset))
    return out


def latest(offsets: Iterable[Offsets]) -> Offsets:
    out: Offsets = {}
    for each in offsets:
        for tp, offset in each.items():
            out[tp] = max(offset, out.get(tp, offset))
    return out


def rewind(consumer: Any, starts: Offsets) -> None:
    """Seek back so the records are fetched again; partitions no longer assigned are someone else's now."""
    for tp, offset in starts.items():
        with contextlib.suppress(Exception):
            consumer.seek(tp, offset)


@dataclass(frozen=True)
class Admitted:
    """A batch admitted and queued: what its transaction applies, where it started and where the next one starts."""

    prepared: Prepared
    starts: Offsets
    ends: Offsets


def merged(batches: Sequence[Admitted]) -> Prepared:
    """One transaction's worth: the batches in the order they were fetched (newest version per listing wins anyway)."""
    if len(batches) == 1:
        return batches[0].prepared
    parts = [b.prepared for b in batches]
    return Prepared(
        records=sum(p.records for p in parts),
        batch=[r for p in parts for r in p.batch],
        changes=[c for p in parts for c in p.changes],
        occurred=[o for p in parts for o in p.occurred],
        rejected=[r for p in parts for r in p.rejected],
    )


class Pipeline:
    def __init__(self, name: str, keeper: Callable[[], CopyKeeper | None], group_records: int = GROUP_RECORDS) -> None:
        self.name = name
        self.keeper = keeper
        self.group_records = group_records
        self._queued: list[Admitted] = []  # admitted, waiting for the transaction after the running one
        self._room = asyncio.Event()  # set whenever the applier takes the queue or stops
        self._applier: asyncio.Task[None] | None = None
        self._failed: Offsets | None = None  # where a failed transaction rewound to, until a batch has retried
        self._closing = False
        self._uncommitted: Offsets = {}  # offsets after batches whose transactions have committed
        self._committer: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # set by flush(): commit what waits now, without the spacing

    async def handle(self, consumer: Any, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Admit this batch and queue it for the next transaction; back to fetching unless the queue is full."""
        starts = first_offsets(records)
        copy = self.keeper()
        try:
            if copy is None or self._closing:
                raise RuntimeError("consumer is starting or stopping")
            prepared = await copy.prepare(records)
        except Exception as exc:
            log.error("batch of %d records not admitted (%s); rewinding to retry", len(records), exc)
            await self._send_back(consumer, starts)
            return
        await self._wait_for_room(len(records))
        if self._failed is not None or self._closing:  # closing: the batch goes back uncommitted, no new transaction
            await self._send_back(consumer, starts)
            return
        self._queued.append(Admitted(prepared, starts, next_offsets(records)))
        if self._applier is None or self._applier.done():
            self._applier = asyncio.create_task(self._apply_queued(consumer, copy))
            # Let it take the queue and send its statement now: otherwise it waits for the fetch loop's own
            # bookkeeping after this batch (the framework's and the next poll's), some 0.15 ms a transaction.
            await asyncio.sleep(0)

    async def _wait_for_room(self, records: int) -> None:
        while self._queued and sum(b.prepared.records for b in self._queued) + records > self.group_records:
            self._room.clear()
            await self._room.wait()

    async def _apply_queued(self, consumer: Any, copy: CopyKeeper) -> None:
        """One transaction after another, each with every batch queued when it starts, until the queue is empty."""
        while self._queued and not self._closing:
            group, self._queued = self._queued, []
            self._room.set()
            try:
                outcome = await copy.apply(merged(group))
            except Exception as exc:
                # The queued batches were fetched after this group: they go back with it, and are fetched again.
                self._failed = earliest(b.starts for b in group + self._queued)
                self._queued = []
                rewind(consumer, self._failed)
                log.error("%d records not applied (%s); rewinding to retry", sum(b.prepared.records for b in group), exc)
                break
            self._commit_later(consumer, latest(b.ends for b in group))  # only after this group's database commit
            if outcome.dead_lettered:
                await self.flush()  # its letters are in Kafka: their records must not come back and be lettered again
        self._room.set()

    async def _send_back(self, consumer: Any, starts: Offsets) -> None:
        """Send this batch back: each partition resumes at the earlier of a failed transaction's start and this
        batch's start (this batch may already hold records fetched again after that rewind); then pause."""
        rewind(consumer, earliest([starts, self._failed or {}]))
        self._failed = None
        if not self._closing:
            await asyncio.sleep(RETRY_SECONDS)

    def _commit_later(self, consumer: Any, ends: Offsets) -> None:
        for tp, offset in ends.items():
            self._uncommitted[tp] = max(offset, self._uncommitted.get(tp, 0))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_all(consumer))

    async def _commit_all(self, consumer: Any) -> None:
        """Commit what is waiting, then, a spacing later, whatever waited meanwhile, until nothing does."""
        while self._uncommitted:
            offsets, self._uncommitted = self._uncommitted, {}
            try:
                await consumer.commit(offsets)
            except Exception as exc:
                # A rebalance took the partitions, or Kafka is away: the next owner re-applies from the last
                # committed offset, which the version check makes a no-op.
                log.warning("offset commit failed after apply (%s); records will be redelivered harmlessly", exc)
            try:
                report_lag(self.name, consumer, offsets)
            except Exception:  # a metric must never end the committer (or, through flush(), the pipeline)
                log.exception("consumer lag not reported")
            # The task stays through the spacing, so offsets arriving meanwhile wait for it rather than commit at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), COMMIT_SPACING_SECONDS)

    async def flush(self) -> None:
        """Wait until the offsets of every committed transaction are committed (or their commit has failed)."""
        self._hurry.set()
        try:
            while self._committer is not None and not self._committer.done():
                await self._committer
        finally:
            self._hurry.clear()

    async def close(self) -> None:
        """Stop taking batches (a late one is rewound, not committed), finish the transaction running, commit."""
        self._closing = True
        if self._applier is not None:
            await asyncio.gather(self._applier, return_exceptions=True)
        self._queued = []  # never applied, so never committed: the next owner of the partitions fetches them again
        self._room.set()
        await self.flush()


def report_lag(consumer_name: str, consumer: Any, ends: Offsets) -> None:
    """Lag per partition seen in the batch: high watermark minus the offset after the batch's last record.

    Partitions a rebalance has taken meanwhile are skipped (their new owner reports them): aiokafka's highwater()
    asserts that the partition is assigned, and an error here would end the committer task with it."""
    assigned = consumer.assignment() if hasattr(consumer, "assignment") else None
    for tp, next_offset in ends.items():
        if assigned is not None and tp not in assigned:
            continue
        highwater = consumer.highwater(tp) if hasattr(consumer, "highwater") else None
        if highwater is not None:
            metrics.CONSUMER_LAG.labels(consumer_name, tp.topic, str(tp.partition)).set(max(highwater - next_offset, 0))
