"""Two transactions in flight: listings apart run side by side, offsets still follow fetch order, a transaction that
writes dead letters runs alone, and a failure rewinds past every later transaction, committed or not."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from schemas.events import DlqReason
from services.consumers import pipeline, store
from services.consumers.copy import BatchOutcome, CopyKeeper, Prepared
from services.consumers.pipeline import Pipeline
from services.consumers.registry import POLICIES
from services.kit.intake import Rejection
from tests.unit.test_pipeline_polling import POISON, PollingConsumer, handled, latest_commit

TOPIC = "court.listings.v1"
SERVER_STARTED = datetime(2026, 1, 1, tzinfo=UTC)
AIRLINE = POLICIES["airline"]
P0, P1, P2 = (TopicPartition(TOPIC, n) for n in range(3))


def record(partition: int, offset: int, listing: str, value: bytes = b"v") -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, listing.encode(), value, None, 1, 1, [])


class GatedKeeper(CopyKeeper):
    """A copy keeper without a database whose transactions each wait for their own gate, named by the batch's first
    record's listing: the test decides which of two transactions in flight commits first."""

    def __init__(self, consumer: PollingConsumer) -> None:
        # no pool, keyring or producer: nothing reaches them
        self.consumer = consumer
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[list[str]] = []  # each transaction's listings, as it started
        self.applied: list[list[str]] = []  # as each committed
        self.commits_seen: list[int] = []  # offset commits made when each transaction started
        self.fail: set[str] = set()  # a transaction whose first listing is here fails
        self.began = asyncio.Event()  # set as each transaction starts
        self.server_started = SERVER_STARTED  # the run of the server a transaction commits on
        self.server_now = SERVER_STARTED  # the run settle() finds
        self.settle_fails = False
        self.settles = 0

    def gate(self, listing: str) -> asyncio.Event:
        return self.gates.setdefault(listing, asyncio.Event())

    async def prepare(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> Prepared:
        prepared = Prepared(records=len(records), batch=records)
        for r in records:
            if r.value == POISON:
                prepared.rejected.append((r, Rejection(DlqReason.INVALID_SCHEMA, "poison")))
            else:
                prepared.changes.append(store.Change((r.key or b"").decode(), 1, None))
        return prepared

    async def apply(self, prepared: Prepared) -> BatchOutcome:
        listings = [(r.key or b"").decode() for r in prepared.batch]
        self.started.append(listings)
        self.began.set()
        self.commits_seen.append(len(self.consumer.commits))
        await self.gate(listings[0]).wait()
        if listings[0] in self.fail:
            raise ConnectionError("database away")
        self.applied.append(listings)
        lettered = len(prepared.rejected)
        applied = prepared.records - lettered
        return BatchOutcome(prepared.records, applied, applied, lettered, self.server_started)

    async def until_started(self, count: int) -> None:
        while len(self.started) < count:
            self.began.clear()
            await asyncio.wait_for(self.began.wait(), timeout=10)

    async def settle(self) -> datetime:
        self.settles += 1
        if self.settle_fails:
            raise ConnectionError("database away")
        return self.server_now

    async def let_run(self) -> None:
        """Let every task that can run do so."""
        for _ in range(50):
            await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def _spacing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "COMMIT_SPACING_SECONDS", 0.0)
    monkeypatch.setattr(pipeline, "RETRY_SECONDS", 0.0)


def two_lanes() -> tuple[GatedKeeper, PollingConsumer, Pipeline]:
    consumer = PollingConsumer()
    keeper = GatedKeeper(consumer)
    return keeper, consumer, Pipeline(AIRLINE.name, lambda: keeper, connections=2)


async def test_a_batch_fetched_during_a_transaction_starts_at_once_on_the_second_connection() -> None:
    keeper, consumer, batches = two_lanes()
    await handled(batches, consumer, [record(0, 0, "a")])
    await handled(batches, consumer, [record(1, 0, "b")])
    await keeper.until_started(2)  # both in flight, neither committed
    await handled(batches, consumer, [record(0, 1, "c")])
    await handled(batches, consumer, [record(2, 0, "d")])
    await keeper.let_run()
    assert keeper.started == [["a"], ["b"]]  # no third connection: c and d wait, together

    keeper.gate("b").set()
    await keeper.until_started(3)
    assert keeper.started[2] == ["c", "d"]
    keeper.gate("a").set()
    keeper.gate("c").set()
    await asyncio.wait_for(batches.close(), timeout=10)
    assert latest_commit(consumer) == {P0: 2, P1: 1, P2: 1}


async def test_offsets_of_a_transaction_that_commits_first_wait_for_the_one_fetched_before_it() -> None:
    keeper, consumer, batches = two_lanes()
    await handled(batches, consumer, [record(0, 0, "a"), record(1, 0, "a2")])
    await handled(batches, consumer, [record(0, 1, "b"), record(1, 1, "b2")])
    await keeper.until_started(2)

    keeper.gate("b").set()
    await keeper.let_run()
    assert keeper.applied == [["b", "b2"]]
    assert consumer.commits == []  # b's offsets would pass a, which is not in the copy yet

    keeper.gate("a").set()
    await asyncio.wait_for(batches.close(), timeout=10)
    assert latest_commit(consumer) == {P0: 2, P1: 2}


async def test_a_batch_touching_a_listing_in_flight_waits_for_that_transaction() -> None:
    keeper, consumer, batches = two_lanes()
    await handled(batches, consumer, [record(0, 0, "a"), record(0, 1, "x")])
    await keeper.until_started(1)
    await handled(batches, consumer, [record(0, 2, "x")])  # x's next version: a free connection, but x is in flight
    await keeper.let_run()
    assert keeper.started == [["a", "x"]]

    keeper.gate("a").set()
    await keeper.until_started(2)
    assert keeper.started[1] == ["x"]
    keeper.gate("x").set()
    await asyncio.wait_for(batches.close(), timeout=10)
    assert keeper.applied == [["a", "x"], ["x"]]
    assert latest_commit(consumer) == {P0: 3}


async def test_a_transaction_writing_dead_letters_runs_alone_and_commits_its_offsets_before_the_next_starts() -> None:
    keeper, consumer, batches = two_lanes()
    await handled(batches, consumer, [record(0, 0, "a")])
    await keeper.until_started(1)
    await handled(batches, consumer, [record(1, 0, "p", POISON), record(1, 1, "q")])
    await keeper.let_run()
    assert keeper.started == [["a"]]  # the lettering one waits for the connection in use to be done

    keeper.gate("a").set()
    await keeper.until_started(2)
    assert keeper.started[1] == ["p", "q"]
    await handled(batches, consumer, [record(2, 0, "c")])
    await keeper.let_run()
    assert len(keeper.started) == 2  # nothing beside the lettering one

    keeper.gate("p").set()
    await keeper.until_started(3)
    assert latest_commit(consumer) == {P0: 1, P1: 2}  # the letters' offsets went out before c started
    assert keeper.commits_seen[2] == len(consumer.commits)
    keeper.gate("c").set()
    await asyncio.wait_for(batches.close(), timeout=10)
    assert latest_commit(consumer) == {P0: 1, P1: 2, P2: 1}


async def test_a_failed_transaction_rewinds_past_a_later_one_that_committed_and_commits_neither() -> None:
    keeper, consumer, batches = two_lanes()
    await handled(batches, consumer, [record(0, 0, "a")])
    keeper.gate("a").set()
    await keeper.let_run()
    await handled(batches, consumer, [record(0, 1, "f"), record(1, 4, "f2")])  # fails
    await handled(batches, consumer, [record(0, 2, "b"), record(2, 9, "b2")])  # commits, after f started
    await keeper.until_started(3)
    await handled(batches, consumer, [record(1, 5, "c")])  # queued behind both
    keeper.fail.add("f")
    keeper.gate("b").set()
    await keeper.until_started(4)  # b committed: c takes its connection while f still runs
    keeper.gate("f").set()
    await keeper.let_run()
    keeper.gate("c").set()  # c commits after f has failed
    await keeper.let_run()

    assert keeper.applied == [["a"], ["b", "b2"], ["c"]]
    assert latest_commit(consumer) == {P0: 1}  # a's only: f failed, and b and c were fetched after it
    assert dict(consumer.seeks) == {P0: 1, P1: 4, P2: 9}
    await handled(batches, consumer, [record(1, 6, "d")])  # fetched before the rewind took effect: sent back
    assert dict(consumer.seeks) == {P0: 1, P1: 4, P2: 9}
    await asyncio.wait_for(batches.close(), timeout=10)
    assert latest_commit(consumer) == {P0: 1}


async def test_a_later_transaction_failing_leaves_an_earlier_one_to_commit_its_offsets() -> None:
    keeper, consumer, batches = two_lanes()
    await handled(batches, consumer, [record(0, 0, "a"), record(0, 1, "a1")])
    await handled(batches, consumer, [record(1, 3, "f")])
    await keeper.until_started(2)
    keeper.fail.add("f")
    keeper.gate("f").set()
    await keeper.let_run()
    assert dict(consumer.seeks) == {P1: 3}  # only the failed one's partition goes back
    assert consumer.commits == []  # a is still running

    keeper.gate("a").set()
    await asyncio.wait_for(batches.close(), timeout=10)
    assert keeper.applied == [["a", "a1"]]
    assert latest_commit(consumer) == {P0: 2}
