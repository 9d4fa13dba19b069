"""Kafka offsets for ops: partitions of topics, start and end offsets, a bounded read, deleting a group."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError, NotCoordinatorError, for_code
from aiokafka.protocol.admin import DeleteGroupsRequest

from services.ops.runtime import OpsError

Records = Sequence[ConsumerRecord[bytes, bytes]]
Handle = Callable[[Records], Awaitable[None]]
FETCH_RECORDS = 2000
POLL_MS = 500
# No record for this long while a partition is short of its end offset: stop with a reason, never pretend to be done.
STALL_S = 60.0
GROUP_ID_NOT_FOUND = 69
T = TypeVar("T")


async def partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    found = []
    for topic in topics:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            await consumer._client.force_metadata_update()  # aiokafka learns topics lazily
            numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            raise OpsError(f"topic {topic} does not exist on this cluster (run `blacklist-sync up` or create it)")
        found += [TopicPartition(topic, p) for p in sorted(numbers)]
    return found


async def start_offsets(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition], since: datetime | None
) -> dict[TopicPartition, int]:
    """Earliest offsets, or the first offset at or after `since` (the end offset where nothing is that new)."""
    if since is None:
        return dict(await consumer.beginning_offsets(list(partitions)))
    found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
    ends = await consumer.end_offsets(list(partitions))
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in partitions}


@dataclass
class BoundedRead:
    """Reads assigned partitions from their positions up to end offsets, handing each fetch to `handle`.

    Records past an end offset that arrive in the same fetch are handed on too: every apply is
    version-idempotent, so being ahead is harmless, while skipping one would lose it."""

    consumer: AIOKafkaConsumer
    start: Mapping[TopicPartition, int]
    commit: bool = False
    fetch_records: int = FETCH_RECORDS
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    records_seen: int = 0

    async def begin(self) -> None:
        self.consumer.assign(list(self.start))
        for tp, offset in self.start.items():
            self.consumer.seek(tp, offset)
            self.positions[tp] = offset

    def advance(self, positions: Mapping[TopicPartition, int]) -> None:
        """Carry on from where another reader stopped (a rebuild's loaders); never moves a partition back."""
        for tp, offset in positions.items():
            if offset > self.positions[tp]:
                self.consumer.seek(tp, offset)
                self.positions[tp] = offset

    def done_within(self, end: Mapping[TopicPartition, int]) -> int:
        return sum(max(min(self.positions[tp], end[tp]) - self.start[tp], 0) for tp in end)

    def remaining(self, end: Mapping[TopicPartition, int]) -> int:
        return sum(max(end[tp] - self.positions[tp], 0) for tp in end)

    async def read_to(
        self,
        end: Mapping[TopicPartition, int],
        handle: Handle,
        progress: Callable[[int], None] = lambda _: None,
    ) -> None:
        active = {tp for tp in end if self.positions[tp] < end[tp]}
        last_progress = time.monotonic()
        while active:
            fetched = await self.consumer.getmany(*active, timeout_ms=POLL_MS, max_records=self.fetch_records)
            records = [r for batch in fetched.values() for r in batch]
            if records:
                await handle(records)  # the database commit comes first; offsets move only after it
                self.records_seen += len(records)
                last_progress = time.monotonic()
            for tp in list(active):
                self.positions[tp] = await self.consumer.position(tp)
                if self.positions[tp] >= end[tp]:
                    active.discard(tp)
            if records and self.commit:
                await self.consumer.commit(dict(self.positions))
            progress(self.done_within(end))
            if active and time.monotonic() - last_progress > STALL_S:
                short = ", ".join(f"{tp.topic}/{tp.partition} at {self.positions[tp]} of {end[tp]}" for tp in sorted(active))
                raise OpsError(f"no records for {STALL_S:.0f}s while {short}")


async def coordinated(call: Callable[[], Awaitable[T]], attempts: int = 20) -> T:
    """Run a call that needs a group coordinator; on a young cluster Kafka creates the offsets topic first."""
    for attempt in range(attempts):
        try:
            return await call()
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def delete_group(client: AIOKafkaAdminClient, group: str) -> None:
    """Delete a consumer group (aiokafka's admin client has no call for it); a group already gone is fine."""
    coordinator = await coordinated(lambda: client.find_coordinator(group))
    response = await client._client.send(coordinator, DeleteGroupsRequest([group]))
    for name, code in response.results:
        if code and code != GROUP_ID_NOT_FOUND:
            raise OpsError(f"could not delete consumer group {name}: {for_code(code).__name__}")
