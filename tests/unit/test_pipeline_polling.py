"""The consumer's fetch loop and pipeline: no pause after an empty poll, group commit, offsets never ahead of the copy.

These pipelines run one transaction at a time (`connections=1`), as the default one does whenever its second
connection is busy or the listings overlap; test_pipeline_concurrent.py covers two at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka.subscriber.usecase import BatchSubscriber

from services.consumers import pipeline
from services.consumers.app import BATCH_RECORDS, POLL_MS, build_broker
from services.consumers.copy import BatchOutcome, CopyKeeper, Prepared
from services.consumers.pipeline import Pipeline
from services.consumers.registry import POLICIES
from services.kit.settings import Settings

TOPIC = "court.listings.v1"
SERVER_STARTED = datetime(2026, 1, 1, tzinfo=UTC)
AIRLINE = POLICIES["airline"]


def record(partition: int, offset: int, value: bytes = b"v") -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, b"k", value, None, 1, 1, [])


POISON = b"poison"  # ListKeeper dead-letters records with this value


class PollingConsumer:
    """Stands in for aiokafka's consumer: hands out queued polls, records the offsets committed and the seeks."""

    def __init__(self, polls: Sequence[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] = ()) -> None:
        self.polls = list(polls)
        self.requests: list[tuple[int, int | None]] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        self.requests.append((timeout_ms, max_records))
        return self.polls.pop(0) if self.polls else {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


class ListKeeper(CopyKeeper):
    """A copy keeper without a database: it admits every record and keeps each transaction's offsets, in order.
    While `held` is clear, a transaction stays open (as a slow database would keep it). Records whose value is
    POISON count as dead-lettered; `commits_seen` holds how many offset commits each transaction found made."""

    def __init__(self, fail_on: int | None = None, consumer: PollingConsumer | None = None) -> None:
        # no pool, keyring or producer: nothing reaches them
        self.applied: list[list[int]] = []
        self.consumer = consumer
        self.commits_seen: list[int] = []
        self.fail_on = fail_on
        self.failures = 0
        self.open = asyncio.Event()  # set while a transaction is open
        self.held = asyncio.Event()
        self.held.set()
        self.done = asyncio.Event()  # set as each transaction ends, committed or failed

    async def prepare(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> Prepared:
        return Prepared(records=len(records), batch=records)

    async def apply(self, prepared: Prepared) -> BatchOutcome:
        if self.consumer is not None:
            self.commits_seen.append(len(self.consumer.commits))
        self.open.set()
        await self.held.wait()
        self.open.clear()
        self.done.set()
        offsets = [r.offset for r in prepared.batch]
        if self.fail_on in offsets:
            self.failures += 1
            raise ConnectionError("database away")
        self.applied.append(offsets)
        lettered = sum(r.value == POISON for r in prepared.batch)
        return BatchOutcome(prepared.records, prepared.records - lettered, prepared.records - lettered, lettered)

    async def settle(self) -> datetime:
        """The server never restarts here: every transaction is durable once settled."""
        return SERVER_STARTED

    async def until(self, applied: int = 0, failures: int = 0) -> None:
        while len(self.applied) < applied or self.failures < failures:
            self.done.clear()
            await asyncio.wait_for(self.done.wait(), timeout=10)


def subscriber_of(keeper: CopyKeeper | None = None) -> BatchSubscriber:
    broker = build_broker(AIRLINE, Settings.from_env(service=AIRLINE.name), lambda: keeper)
    (subscriber,) = broker.subscribers
    assert isinstance(subscriber, BatchSubscriber)
    return subscriber


async def test_empty_poll_returns_at_once_instead_of_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"the fetch loop paused {seconds}s after an empty poll")

    monkeypatch.setattr(anyio, "sleep", no_sleep)  # what FastStream's own batch poll sleeps with
    consumer = PollingConsumer()
    assert await subscriber_of().get_msg(consumer) == ()
    assert consumer.requests == [(POLL_MS, BATCH_RECORDS)]


async def test_poll_hands_over_every_partitions_records_in_fetch_order() -> None:
    fetched = {TopicPartition(TOPIC, 0): [record(0, 5), record(0, 6)], TopicPartition(TOPIC, 3): [record(3, 1)]}
    got = await subscriber_of().get_msg(PollingConsumer([fetched]))
    assert [(r.partition, r.offset) for r in got] == [(0, 5), (0, 6), (3, 1)]


async def test_batches_fetched_during_a_transaction_go_into_the_next_one_in_fetch_order() -> None:
    keeper, consumer = ListKeeper(), PollingConsumer()
    batches = Pipeline(AIRLINE.name, lambda: keeper, connections=1)
    keeper.held.clear()
    await handled(batches, consumer, [record(0, 0), record(1, 0)])
    await asyncio.wait_for(keeper.open.wait(), timeout=10)  # the first transaction is running
    await handled(batches, consumer, [record(0, 1), record(0, 2)])
    await handled(batches, consumer, [record(1, 1), record(0, 3)])
    assert keeper.applied == [] and consumer.commits == []  # nothing committed while the transaction is open
    keeper.held.set()
    await asyncio.wait_for(batches.close(), timeout=10)
    assert keeper.applied == [[0, 0], [1, 2, 1, 3]]
    assert latest_commit(consumer) == {TopicPartition(TOPIC, 0): 4, TopicPartition(TOPIC, 1): 2}


async def test_a_full_queue_holds_the_fetch_loop_until_the_transaction_takes_it() -> None:
    keeper, consumer = ListKeeper(), PollingConsumer()
    batches = Pipeline(AIRLINE.name, lambda: keeper, group_records=4, connections=1)
    keeper.held.clear()
    await handled(batches, consumer, [record(0, 0)])
    await asyncio.wait_for(keeper.open.wait(), timeout=10)
    await handled(batches, consumer, [record(0, 1), record(0, 2), record(0, 3)])  # queued: 3 of 4
    third = asyncio.create_task(handled(batches, consumer, [record(0, 4), record(0, 5)]))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not third.done()  # 3 + 2 records would not fit: no further fetch while the database is behind
    keeper.held.set()
    await asyncio.wait_for(third, timeout=10)
    await asyncio.wait_for(batches.close(), timeout=10)
    assert keeper.applied == [[0], [1, 2, 3], [4, 5]]


async def test_offsets_of_transactions_within_a_spacing_go_out_as_one_commit_at_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline, "COMMIT_SPACING_SECONDS", 60.0)  # the whole test runs inside one spacing
    keeper, consumer = ListKeeper(), PollingConsumer()
    batches = Pipeline(AIRLINE.name, lambda: keeper, connections=1)
    for n, start in enumerate(range(0, 12, 3), start=1):
        await handled(batches, consumer, [record(0, start + k) for k in range(3)] + [record(2, start)])
        await keeper.until(applied=n)
    await asyncio.wait_for(batches.close(), timeout=10)  # flush() cuts the spacing short
    assert keeper.applied == [[0, 1, 2, 0], [3, 4, 5, 3], [6, 7, 8, 6], [9, 10, 11, 9]]
    p0, p2 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 2)
    assert consumer.commits == [{p0: 3, p2: 1}, {p0: 12, p2: 10}]


async def test_a_transaction_that_wrote_dead_letters_has_its_offsets_committed_before_the_next_one_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A poison record redelivered after a crash would be lettered again: once its letter is in Kafka, its offset
    must be committed before anything else can hold the pipeline up (a kill during the next transaction)."""
    monkeypatch.setattr(pipeline, "COMMIT_SPACING_SECONDS", 60.0)  # without letters, offsets would wait for flush()
    consumer = PollingConsumer()
    keeper = ListKeeper(consumer=consumer)
    batches = Pipeline(AIRLINE.name, lambda: keeper, connections=1)
    p0 = TopicPartition(TOPIC, 0)
    await handled(batches, consumer, [record(0, 0), record(0, 1)])
    await keeper.until(applied=1)
    await handled(batches, consumer, [record(0, 2)])
    await keeper.until(applied=2)
    await handled(batches, consumer, [record(0, 3), record(0, 4, POISON), record(0, 5)])
    await keeper.until(applied=3)
    await handled(batches, consumer, [record(0, 6)])
    await keeper.until(applied=4)
    # The first commit goes out at once; the second batch's waits out the spacing; the poisoned batch's offsets
    # (with the second's, coalesced) are committed before the fourth transaction begins.
    assert keeper.commits_seen[3] == 2 and consumer.commits[1] == {p0: 6}
    await asyncio.wait_for(batches.close(), timeout=10)
    assert latest_commit(consumer) == {p0: 7}


async def test_failed_transaction_rewinds_with_the_batches_queued_behind_it_and_commits_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline, "RETRY_SECONDS", 0.0)
    keeper, consumer = ListKeeper(fail_on=3), PollingConsumer()
    batches = Pipeline(AIRLINE.name, lambda: keeper, connections=1)
    await handled(batches, consumer, [record(0, 0), record(0, 1), record(0, 2)])
    await keeper.until(applied=1)
    keeper.held.clear()
    await handled(batches, consumer, [record(0, 3), record(1, 7)])  # its transaction fails
    await asyncio.wait_for(keeper.open.wait(), timeout=10)
    await handled(batches, consumer, [record(0, 4), record(1, 8), record(2, 5)])  # queued behind it
    keeper.held.set()
    await keeper.until(failures=1)
    await handled(batches, consumer, [record(0, 5)])  # fetched before the rewind: sent back, not applied
    await asyncio.wait_for(batches.close(), timeout=10)
    assert keeper.applied == [[0, 1, 2]]
    assert latest_commit(consumer) == {TopicPartition(TOPIC, 0): 3}
    rewound = dict(consumer.seeks)
    assert rewound == {TopicPartition(TOPIC, 0): 3, TopicPartition(TOPIC, 1): 7, TopicPartition(TOPIC, 2): 5}


class RebalancedConsumer(PollingConsumer):
    """A consumer that lost `taken` to a rebalance: committing or asking the high watermark of it fails, as in
    aiokafka (IllegalStateError from commit, an AssertionError from highwater). `taken_after_look`: the rebalance
    lands between the pipeline's look at the assignment (which still lists `taken`) and its commit."""

    def __init__(self, owned: set[TopicPartition], taken: set[TopicPartition], taken_after_look: bool = False) -> None:
        super().__init__()
        self.owned, self.taken, self.taken_after_look = owned, taken, taken_after_look

    def assignment(self) -> set[TopicPartition]:
        return self.owned | self.taken if self.taken_after_look else set(self.owned)

    def highwater(self, tp: TopicPartition) -> int:
        assert tp in self.owned, "Partition is not assigned"
        return 100

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.taken & set(offsets):
            raise RuntimeError(f"IllegalStateError: {sorted(self.taken & set(offsets))} is not assigned")
        await super().commit(offsets)


async def test_a_partition_lost_to_a_rebalance_fails_its_commit_but_neither_the_committer_nor_the_pipeline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bench run caught the committer task dying of highwater()'s assertion after such a commit failed. The
    flush after a group that wrote dead letters raised it into the applier, which died with the next group queued."""
    monkeypatch.setattr(pipeline, "COMMIT_SPACING_SECONDS", 0.0)
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    consumer = RebalancedConsumer(owned={p0}, taken={p1}, taken_after_look=True)
    keeper = ListKeeper(consumer=consumer)
    batches = Pipeline(AIRLINE.name, lambda: keeper, connections=1)
    keeper.held.clear()
    await handled(batches, consumer, [record(1, 5), record(1, 6, POISON)])  # its offsets' commit will fail
    await asyncio.wait_for(keeper.open.wait(), timeout=10)
    await handled(batches, consumer, [record(0, 3)])  # queued behind it
    keeper.held.set()
    await keeper.until(applied=2)  # the queued group is applied without another fetch
    await asyncio.wait_for(batches.close(), timeout=10)
    assert latest_commit(consumer) == {p0: 4}


def latest_commit(consumer: PollingConsumer) -> dict[TopicPartition, int]:
    out: dict[TopicPartition, int] = {}
    for commit in consumer.commits:
        for tp, offset in commit.items():
            assert offset >= out.get(tp, 0), "a commit moved an offset back"
            out[tp] = offset
    return out


async def handled(batches: Pipeline, consumer: PollingConsumer, records: list[ConsumerRecord[bytes, bytes]]) -> None:
    """The fetch loop handing a batch over; a loop stuck behind the database fails the test instead of hanging it."""
    await asyncio.wait_for(batches.handle(consumer, records), timeout=10)


async def test_offsets_of_partitions_a_rebalance_took_do_not_hold_back_those_still_owned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transaction's records spanned a partition kept and one taken by a rebalance: the kept one's offset is
    committed; only the taken one's is left to its new owner (aiokafka refuses a commit naming a partition the
    consumer no longer holds, which used to drop the kept partition's offset with it, showing lag that was not)."""
    monkeypatch.setattr(pipeline, "COMMIT_SPACING_SECONDS", 0.0)
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    consumer = RebalancedConsumer(owned={p0}, taken={p1})
    keeper = ListKeeper(consumer=consumer)
    batches = Pipeline(AIRLINE.name, lambda: keeper, connections=1)
    await handled(batches, consumer, [record(0, 3), record(1, 5)])
    await keeper.until(applied=1)
    await asyncio.wait_for(batches.close(), timeout=10)
    assert latest_commit(consumer) == {p0: 4}


async def test_hand_over_waits_for_the_transaction_in_flight_and_commits_it_before_the_partitions_go() -> None:
    keeper, consumer = ListKeeper(), PollingConsumer()
    batches = Pipeline(AIRLINE.name, lambda: keeper, connections=1)
    keeper.held.clear()
    await handled(batches, consumer, [record(0, 0), record(1, 4)])
    await asyncio.wait_for(keeper.open.wait(), timeout=10)
    await handled(batches, consumer, [record(0, 1)])  # queued behind it: drained too
    hand_over = asyncio.create_task(batches.hand_over({TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)}))
    await asyncio.sleep(0.05)
    assert not hand_over.done() and consumer.commits == []  # the rebalance waits for the open transaction
    keeper.held.set()
    await asyncio.wait_for(hand_over, timeout=10)
    assert keeper.applied == [[0, 4], [1]]
    assert latest_commit(consumer) == {TopicPartition(TOPIC, 0): 2, TopicPartition(TOPIC, 1): 5}


async def test_hand_over_gives_up_after_its_timeout_so_a_stuck_database_cannot_hold_the_group(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keeper, consumer = ListKeeper(), PollingConsumer()
    batches = Pipeline(AIRLINE.name, lambda: keeper, connections=1)
    keeper.held.clear()
    await handled(batches, consumer, [record(0, 0)])
    await asyncio.wait_for(keeper.open.wait(), timeout=10)
    await asyncio.wait_for(batches.hand_over({TopicPartition(TOPIC, 0)}, timeout=0.05), timeout=10)
    assert consumer.commits == []
    assert "handed over before" in caplog.text
    keeper.held.set()
    await asyncio.wait_for(batches.close(), timeout=10)


async def test_hand_over_of_nothing_returns_at_once() -> None:
    keeper, consumer = ListKeeper(), PollingConsumer()
    batches = Pipeline(AIRLINE.name, lambda: keeper, connections=1)
    keeper.held.clear()
    await handled(batches, consumer, [record(0, 0)])
    await asyncio.wait_for(keeper.open.wait(), timeout=10)
    await asyncio.wait_for(batches.hand_over(set()), timeout=1)  # the first join revokes nothing
    keeper.held.set()
    await asyncio.wait_for(batches.close(), timeout=10)
