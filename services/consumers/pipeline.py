"""Applies admitted batches in transactions (by default one at a time; more at once only on listings apart); a
batch's offsets are committed only after its own transaction and every one fetched before it are durable, and a
failed transaction rewinds its partitions so nothing is ever committed ahead of the copy.

The fetch loop does not wait for the database: each batch is admitted (verified, projected) as soon as it is fetched
and queued. If a connection is free, every batch queued goes into a transaction at once; otherwise they wait
together for the next one (group commit). A record waits for at most the transactions running when it was admitted.
The queue holds at most one batch's worth of records, so a slow database stops fetching.

With `connections` above one, two transactions run side by side only if no listing is in both: each listing's
versions are applied by one transaction at a time, in fetch order, as on one connection (the version check would
keep the newest anyway, but the second would wait on the first's row locks, and two such could deadlock). Listings
apart are independent facts, so which of the two commits first changes no answer a check could give about either.

Offset commits run beside the pipeline, not in it. A transaction's offsets are handed on once it and every
transaction fetched before it have committed and are settled (below), so the offsets waiting to be committed always
belong to transactions already durable; those of a commit's spacing are coalesced into one commit (the highest
offset per partition), so a steady trickle of small batches does not cost Kafka a commit each. Before a rebalance
takes partitions, the transactions in flight end and what they applied is committed (hand_over), so the partitions'
next owner starts after it; a commit names only partitions the consumer still holds. A commit lost to a crash, or
to a rebalance that could not wait, only means redelivery, which the version check makes a no-op. A failed
transaction rewinds to its own records and to those of every transaction after it (whether they committed or not),
whose offsets are then never committed.

Transactions commit asynchronously (the service's apply connections run with synchronous_commit off): a commit
returns, and its rows answer checks, before its WAL is on disk, so no record waits for a disk flush on its way into
the copy. Durability is settled beside the pipeline instead: before committing offsets, the committer runs one
synchronous commit on another connection (store.settle), which flushes the WAL of every transaction committed before
it, and learns when the server started. A transaction is settled if it committed on that same run of the server.
One that committed on an earlier run may have been lost with it: the pipeline rewinds to it as to a failed one, and
applies it again. So Kafka never holds an offset past a transaction the copy could lose, and a crash of PostgreSQL
costs at most a replay of what had not been flushed.

Dead letters are the exception: a redelivered poison record is lettered again, so a transaction that writes letters
runs alone and has its offsets committed before the next transaction starts. A crash from then on does not
redeliver them; only one inside that commit's round trip does, and its duplicate letters carry the same
x-dlq-source (dead letters are at least once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import takewhile
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from services.consumers.copy import CopyKeeper, Prepared
from services.kit import metrics

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0
COMMIT_SPACING_SECONDS = 0.05  # at most one offset commit (and lag report) per spacing; flush() skips the wait
GROUP_RECORDS = 2000  # records queued for the next transaction at most: as many as one poll hands over
APPLY_CONNECTIONS = 1  # transactions in flight at once, each on a connection of its own
# At most this long of a rebalance is spent committing what was applied before the partitions go (hand_over); the
# group waits for every member's, up to its rebalance timeout (REBALANCE_TIMEOUT_MS in consumers/app.py).
HAND_OVER_SECONDS = 10.0
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


@dataclass(eq=False)
class Flight:
    """One transaction: where its records start and end, and the listings they touch. It may wait long after its
    commit for a settle, so it keeps no records: its batches go to the transaction only (`_apply`)."""

    starts: Offsets
    ends: Offsets
    records: int
    listings: frozenset[str]
    exclusive: bool  # it writes dead letters: it runs alone, and its offsets are committed before anything else starts
    done: bool = False  # committed (asynchronously: visible to checks, maybe not on disk yet)
    server_started: datetime | None = None  # the run of the server that committed it
    durable: bool = False  # settled: a synchronous commit on that same run of the server came after it
    abandoned: bool = False  # it, or a transaction before it, failed: its records come again, its offsets never go


class Pipeline:
    def __init__(
        self,
        name: str,
        keeper: Callable[[], CopyKeeper | None],
        group_records: int = GROUP_RECORDS,
        connections: int | None = None,
    ) -> None:
        self.name = name
        self.keeper = keeper
        self.group_records = group_records
        self.connections = connections or APPLY_CONNECTIONS
        self._queued: list[Admitted] = []  # admitted, waiting for a transaction to start
        self._room = asyncio.Event()  # set whenever a transaction takes the queue, or one ends
        self._running: dict[Flight, asyncio.Task[None]] = {}  # transactions in flight, abandoned ones included
        self._order: deque[Flight] = deque()  # transactions whose offsets wait, in fetch order
        self._failed: Offsets | None = None  # where a failed transaction rewound to, until a batch has retried
        self._closing = False
        self._uncommitted: Offsets = {}  # offsets after batches whose transactions have committed
        self._committer: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # set by flush(): commit what waits now, without the spacing
        self._last: tuple[Any, CopyKeeper] | None = None  # the consumer and copy of the latest transaction
        self._draining: asyncio.Future[None] | None = None  # the latest hand-over's wait (hand_over)

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
        if self._start_next(consumer, copy):
            # Let it take the queue and send its statement now: otherwise it waits for the fetch loop's own
            # bookkeeping after this batch (the framework's and the next poll's), some 0.15 ms a transaction.
            await asyncio.sleep(0)

    async def _wait_for_room(self, records: int) -> None:
        while self._queued and sum(b.prepared.records for b in self._queued) + records > self.group_records:
            self._room.clear()
            await self._room.wait()

    def _start_next(self, consumer: Any, copy: CopyKeeper) -> bool:
        """Start a transaction with every batch queued, if a connection is free and nothing in flight forbids it: a
        transaction touching a listing that one in flight touches waits for it (the second would wait on its row
        locks anyway, and two such could deadlock), and one that writes dead letters runs alone."""
        if not self._queued or self._closing or self._failed is not None or len(self._running) >= self.connections:
            return False
        group = self._queued
        exclusive = any(b.prepared.rejected for b in group)
        if self._running and (exclusive or any(f.exclusive for f in self._running)):
            return False
        listings = frozenset(c.listing_id for b in group for c in b.prepared.changes)
        if any(not listings.isdisjoint(f.listings) for f in self._running):
            return False
        self._queued = []
        self._room.set()
        starts, ends = earliest(b.starts for b in group), latest(b.ends for b in group)
        flight = Flight(starts, ends, sum(b.prepared.records for b in group), listings, exclusive)
        self._last = (consumer, copy)
        self._order.append(flight)
        self._running[flight] = asyncio.create_task(self._apply(consumer, copy, flight, merged(group)))
        return True

    async def _apply(self, consumer: Any, copy: CopyKeeper, flight: Flight, prepared: Prepared) -> None:
        """One transaction; once it has committed, its offsets follow those of every transaction fetched before it."""
        try:
            try:
                outcome = await copy.apply(prepared)
            except Exception as exc:
                self._fail(consumer, flight, exc)
                return
            flight.done, flight.server_started = True, outcome.server_started
            # Abandoned: an earlier transaction failed and rewound past this one, whose records come again as no-ops.
            if not flight.abandoned:
                self._commit_soon(consumer, copy)
                if outcome.dead_lettered:
                    await self.flush()  # its letters are in Kafka: their records must not come back and be lettered again
        finally:
            del self._running[flight]
            flight.listings = frozenset()  # only transactions in flight are compared: it may now wait small
            self._room.set()
            self._start_next(consumer, copy)  # what queued while every connection was busy, or behind this one

    def _fail(self, consumer: Any, flight: Flight, exc: Exception) -> None:
        """Rewind to this transaction's records, with those of every later one, in flight or queued: none of their
        offsets may be committed now, since this one's come first. Earlier transactions go on and commit theirs."""
        if flight.abandoned:
            return  # an earlier failure has rewound past it already
        later = list(self._order)[list(self._order).index(flight) :]
        self._order = deque(f for f in self._order if f not in later)
        for each in later:
            each.abandoned = True
        self._failed = earliest([*(f.starts for f in later), *(b.starts for b in self._queued)])
        self._queued = []
        rewind(consumer, self._failed)
        log.error("%d records not applied (%s); rewinding to retry", flight.records, exc)

    async def _send_back(self, consumer: Any, starts: Offsets) -> None:
        """Send this batch back: each partition resumes at the earlier of a failed transaction's start and this
        batch's start (this batch may already hold records fetched again after that rewind); then pause."""
        rewind(consumer, earliest([starts, self._failed or {}]))
        self._failed = None
        if not self._closing:
            await asyncio.sleep(RETRY_SECONDS)

    def _commit_soon(self, consumer: Any, copy: CopyKeeper) -> None:
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_all(consumer, copy))

    async def _commit_all(self, consumer: Any, copy: CopyKeeper) -> None:
        """Settle the committed transactions and commit the offsets of those settled with none unsettled before them;
        then, a spacing later, whatever committed meanwhile, until nothing does."""
        while True:
            settling = list(takewhile(lambda f: f.done, self._order))
            if settling and not await self._settle(consumer, copy, settling):
                return  # the database is away: the offsets wait, and the next transaction to commit calls us again
            while self._order and self._order[0].durable:
                for tp, offset in self._order.popleft().ends.items():
                    self._uncommitted[tp] = max(offset, self._uncommitted.get(tp, 0))
            if not self._uncommitted and not settling:
                return
            if self._uncommitted:
                offsets, self._uncommitted = still_assigned(consumer, self._uncommitted), {}
                try:
                    if offsets:
                        await consumer.commit(offsets)
                except Exception as exc:
                    # A rebalance took the partitions meanwhile, or Kafka is away: the next owner re-applies from
                    # the last committed offset, which the version check makes a no-op.
                    log.warning("offset commit failed after apply (%s); records will be redelivered harmlessly", exc)
                try:
                    report_lag(self.name, consumer, offsets)
                except Exception:  # a metric must never end the committer (or, through flush(), the pipeline)
                    log.exception("consumer lag not reported")
            # The task stays through the spacing, so transactions committing meanwhile wait for it, and are settled
            # and committed together.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), COMMIT_SPACING_SECONDS)

    async def _settle(self, consumer: Any, copy: CopyKeeper, flights: list[Flight]) -> bool:
        """Mark these committed transactions durable, or rewind to the first of them the server has lost since."""
        try:
            server_started = await copy.settle()
        except Exception as exc:
            log.warning("could not make the latest transactions durable (%s); their offsets wait", exc)
            return False
        for flight in flights:
            if flight.abandoned:
                continue
            if flight.server_started not in (None, server_started):
                # It committed asynchronously on a run of the server that has stopped since: it may be gone.
                self._fail(consumer, flight, LostCommit("PostgreSQL restarted after it was committed"))
                break
            flight.durable = True
        return True

    async def flush(self) -> None:
        """Settle every committed transaction and wait until its offsets are committed (or the settle or the commit
        has failed: the offsets then wait, and their records come again after a restart)."""
        if self._last is not None and any(f.done for f in self._order):
            self._commit_soon(*self._last)
        self._hurry.set()
        try:
            while self._committer is not None and not self._committer.done():
                await self._committer
        finally:
            self._hurry.clear()

    async def hand_over(self, revoked: Iterable[TopicPartition], timeout: float = HAND_OVER_SECONDS) -> None:
        """Before a rebalance takes `revoked`: let the transactions in flight end, then settle and commit what they
        and the ones before them applied, so the partitions' next owner starts after it instead of applying it again
        (as no-ops, but lettering a poison record twice). Bounded by `timeout`: a database or Kafka that does not
        answer must not hold the whole group's rebalance; what is left is then redelivered, harmlessly."""
        revoked = set(revoked)
        if not revoked or (not self._running and not self._order):
            return
        # Waited for, never cancelled: a transaction or a commit cut short would only be redone.
        self._draining = asyncio.ensure_future(self._drain())
        done, _ = await asyncio.wait({self._draining}, timeout=timeout)
        if not done:
            log.warning(
                "partitions %s handed over before what was applied of them in the last %.0fs was committed; their"
                " next owner applies those records again, as no-ops",
                ", ".join(sorted(f"{tp.topic}/{tp.partition}" for tp in revoked)),
                timeout,
            )

    async def _drain(self) -> None:
        # The transactions running now, then the one the batches queued behind them start as they end: not every
        # transaction after, which a consumer under load would never run out of.
        for _ in range(2):
            if self._running:
                await asyncio.wait(list(self._running.values()))
        await self.flush()

    async def close(self) -> None:
        """Stop taking batches (a late one is rewound, not committed), finish the transaction running, commit."""
        self._closing = True
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._queued = []  # never applied, so never committed: the next owner of the partitions fetches them again
        self._room.set()
        await self.flush()


class LostCommit(Exception):
    """A transaction committed asynchronously on a run of the server that stopped before it was settled."""


def still_assigned(consumer: Any, offsets: Offsets) -> Offsets:
    """The offsets of partitions the consumer still holds. aiokafka refuses a whole commit that names one a rebalance
    has taken, which would drop the offsets of those it kept with it (their lag would show records already applied);
    the taken ones are their new owner's, which re-applies from the last committed offset as no-ops."""
    assigned = consumer.assignment() if hasattr(consumer, "assignment") else None
    if assigned is None:
        return offsets
    return {tp: offset for tp, offset in offsets.items() if tp in assigned}


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
