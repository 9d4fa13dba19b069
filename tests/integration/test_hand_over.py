"""A rebalance on real Kafka: the consumer losing partitions commits what it applied of them first (Pipeline.hand_over),
so their next owner starts after it instead of applying it again."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from services.consumers.app import build_broker
from services.consumers.copy import BatchOutcome, CopyKeeper, Prepared
from services.consumers.pipeline import HAND_OVER_SECONDS, Pipeline
from services.consumers.registry import POLICIES
from services.kit.settings import Settings
from tests import kafka_clients
from tests.conftest import Infra

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PARTITIONS = 2
RECORDS_PER_PARTITION = 3
WAIT_S = 60.0
SERVER_STARTED = datetime(2026, 1, 1, tzinfo=UTC)


class HeldKeeper(CopyKeeper):
    """A copy keeper without a database: admits every record, keeps a transaction open while `held` is clear, and
    remembers which records each transaction applied."""

    def __init__(self) -> None:  # no pool, keyring or producer: nothing reaches them
        self.transactions: list[list[tuple[int, int]]] = []
        self.held = asyncio.Event()
        self.held.set()
        self.open = asyncio.Event()

    async def prepare(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> Prepared:
        return Prepared(records=len(records), batch=records)

    async def apply(self, prepared: Prepared) -> BatchOutcome:
        self.open.set()
        await self.held.wait()
        self.transactions.append([(r.partition, r.offset) for r in prepared.batch])
        return BatchOutcome(prepared.records, prepared.records, prepared.records, 0)

    async def settle(self) -> datetime:
        return SERVER_STARTED

    def applied(self) -> set[tuple[int, int]]:
        return {each for transaction in self.transactions for each in transaction}


class WatchedPipeline(Pipeline):
    """The pipeline, saying when a rebalance has begun to take partitions from it."""

    def __init__(self, keeper: CopyKeeper) -> None:
        super().__init__(POLICIES["airline"].name, lambda: keeper)
        self.revoking = asyncio.Event()

    async def hand_over(self, revoked: Iterable[TopicPartition], timeout: float = HAND_OVER_SECONDS) -> None:
        revoked = set(revoked)
        if revoked:
            self.revoking.set()
        await super().hand_over(revoked, timeout)


@pytest_asyncio.fixture(loop_scope="session")
async def topic(infra: Infra) -> AsyncIterator[str]:
    async with kafka_clients.scratch_topic(infra.bootstrap_servers, "hand-over", PARTITIONS) as name:
        producer = kafka_clients.producer(infra.bootstrap_servers)
        await producer.start()
        try:
            await produce_to_each_partition(producer, name, RECORDS_PER_PARTITION)
        finally:
            await producer.stop()
        yield name


async def produce_to_each_partition(producer: AIOKafkaProducer, topic: str, count: int) -> None:
    for partition in range(PARTITIONS):
        for i in range(count):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i}".encode(), partition=partition)


async def until(condition: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S:.0f}s: {condition}")
        await asyncio.sleep(0.1)


async def test_partitions_taken_by_a_rebalance_are_handed_over_with_what_was_applied_committed(infra: Infra, topic: str) -> None:
    settings = Settings.from_env()  # the admin identity: the test's own topic and group are outside the airline's ACLs
    group = f"hand-over-{uuid.uuid4().hex[:8]}"
    first, second = HeldKeeper(), HeldKeeper()
    first.held.clear()
    pipeline = WatchedPipeline(first)
    brokers = [
        build_broker(POLICIES["airline"], settings, lambda: first, topics=(topic,), group_id=group, pipeline=pipeline),
        build_broker(POLICIES["airline"], settings, lambda: second, topics=(topic,), group_id=group),
    ]
    try:
        await brokers[0].start()
        await asyncio.wait_for(first.open.wait(), WAIT_S)  # its first transaction is open, nothing committed yet
        # The second joins the group: the first consumer's partitions are revoked for a rebalance. Its start
        # returns once the group has settled, so it runs beside the test, which lets the first transaction end.
        joining = asyncio.create_task(brokers[1].start())
        await asyncio.wait_for(pipeline.revoking.wait(), WAIT_S)
        first.held.set()  # the open transaction commits while the rebalance waits for it
        await asyncio.wait_for(joining, WAIT_S)
        producer = kafka_clients.producer(infra.bootstrap_servers)
        await producer.start()
        try:  # one more record on each partition, for whichever consumer holds it now
            await produce_to_each_partition(producer, topic, 1)
        finally:
            await producer.stop()
        markers = {(p, RECORDS_PER_PARTITION) for p in range(PARTITIONS)}
        await until("the new records applied", lambda: markers <= first.applied() | second.applied())
        await asyncio.sleep(1.0)  # time for a record fetched again to be applied again
    finally:
        for broker in brokers:
            await broker.stop()
    handed_over = set(first.transactions[0])
    assert handed_over, "the first transaction applied nothing"
    assert markers & second.applied(), "the second consumer was given no partition: no rebalance was tested"
    again = sorted(handed_over & second.applied())
    assert not again, f"the second consumer applied again what the first had applied before the rebalance: {again}"
