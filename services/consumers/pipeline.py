"""Overlaps verifying batch N+1 with batch N's transaction; a batch's offsets are committed only after its own
transaction, and a failed batch rewinds its partitions so nothing is ever committed ahead of the copy.

Offset commits run beside the pipeline, not in it: batch N+1's transaction starts as soon as N's has committed,
while N's offsets go to Kafka. Batches commit in order, so the offsets waiting to be committed always belong to
transactions already committed; several waiting batches are coalesced into one commit (the highest offset per
partition). A commit lost to a crash or a rebalance only means redelivery, which the version check makes a no-op."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from services.consumers.copy import CopyKeeper, Prepared
from services.kit import metrics

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0
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


def rewind(consumer: Any, starts: Offsets) -> None:
    """Seek back so the records are fetched again; partitions no longer assigned are someone else's now."""
    for tp, offset in starts.items():
        with contextlib.suppress(Exception):
            consumer.seek(tp, offset)


class Pipeline:
    def __init__(self, name: str, keeper: Callable[[], CopyKeeper | None]) -> None:
        self.name = name
        self.keeper = keeper
        self._inflight: asyncio.Task[None] | None = None
        self._failed: Offsets | None = None
        self._closing = False
        self._uncommitted: Offsets = {}  # offsets after batches whose transactions have committed
        self._committer: asyncio.Task[None] | None = None

    async def handle(self, consumer: Any, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Admit this batch, wait for the previous transaction, then start this batch's transaction."""
        starts = first_offsets(records)
        copy = self.keeper()
        try:
            if copy is None or self._closing:
                raise RuntimeError("consumer is starting or stopping")
            prepared = await copy.prepare(records)
        except Exception as exc:
            log.error("batch of %d records not admitted (%s); rewinding to retry", len(records), exc)
            await self._rewind_after(consumer, await self._settle(), starts)
            return
        previous_ok = await self._settle()
        if not previous_ok or self._closing:  # closing: the batch goes back uncommitted, no new transaction
            await self._rewind_after(consumer, previous_ok, starts)
            return
        self._inflight = asyncio.create_task(self._apply(consumer, copy, prepared, starts, next_offsets(records)))

    async def _apply(
        self,
        consumer: Any,
        copy: CopyKeeper,
        prepared: Prepared,
        starts: Offsets,
        ends: Offsets,
    ) -> None:
        try:
            await copy.apply(prepared)
        except Exception as exc:
            log.error("batch of %d records not applied (%s); rewinding to retry", prepared.records, exc)
            rewind(consumer, starts)
            self._failed = starts
            raise
        self._commit_later(consumer, ends)  # offsets move only after this batch's database commit
        report_lag(self.name, consumer, ends)

    def _commit_later(self, consumer: Any, ends: Offsets) -> None:
        for tp, offset in ends.items():
            self._uncommitted[tp] = max(offset, self._uncommitted.get(tp, 0))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_all(consumer))

    async def _commit_all(self, consumer: Any) -> None:
        """Commit what is waiting, then whatever waited meanwhile, until nothing does."""
        while self._uncommitted:
            offsets, self._uncommitted = self._uncommitted, {}
            try:
                await consumer.commit(offsets)
            except Exception as exc:
                # A rebalance took the partitions, or Kafka is away: the next owner re-applies from the last
                # committed offset, which the version check makes a no-op.
                log.warning("offset commit failed after apply (%s); records will be redelivered harmlessly", exc)

    async def flush(self) -> None:
        """Wait until the offsets of every committed transaction are committed (or their commit has failed)."""
        while self._committer is not None and not self._committer.done():
            await self._committer

    async def _rewind_after(self, consumer: Any, previous_ok: bool, starts: Offsets) -> None:
        """Send this batch back: each partition resumes at the earlier of the failed previous batch's start
        and this batch's start (this batch may already hold records fetched again after that rewind)."""
        resume = dict(starts)
        for tp, offset in ({} if previous_ok else (self._failed or {})).items():
            resume[tp] = min(offset, resume.get(tp, offset))
        rewind(consumer, resume)
        self._failed = None
        if not self._closing:
            await asyncio.sleep(RETRY_SECONDS)

    async def _settle(self) -> bool:
        """Wait for the in-flight transaction and its commit; False when it failed."""
        task = self._inflight
        if task is None:
            return True
        try:
            await task  # close() and the next batch may both wait here: the reference stays until it is done
        except Exception:
            return False
        finally:
            if self._inflight is task:
                self._inflight = None
        return True

    async def close(self) -> None:
        """Stop taking batches (a late one is rewound, not committed) and finish the one in flight."""
        self._closing = True
        await self._settle()
        await self.flush()


def report_lag(consumer_name: str, consumer: Any, ends: Offsets) -> None:
    """Lag per partition seen in the batch: high watermark minus the offset after the batch's last record."""
    for tp, next_offset in ends.items():
        highwater = consumer.highwater(tp) if hasattr(consumer, "highwater") else None
        if highwater is not None:
            metrics.CONSUMER_LAG.labels(consumer_name, tp.topic, str(tp.partition)).set(max(highwater - next_offset, 0))
