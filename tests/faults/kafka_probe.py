"""What Kafka says during a fault test: end and committed offsets, a group's state, records and dead letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    KafkaError,
    NotCoordinatorForGroupError,
)
from aiokafka.protocol.admin import DescribeGroupsRequest_v3, DescribeGroupsResponse_v3
from aiokafka.protocol.api import Request

from schemas.catalogue import LISTING_TOPIC_PARTITIONS, dlq_topic
from tests import kafka_clients

Offsets = dict[int, int]
COORDINATOR_BUSY = (14, 15, 16)  # COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR


class _DescribeGroupsV3(DescribeGroupsRequest_v3):  # type: ignore[misc]  # aiokafka is untyped
    # aiokafka 0.14 decodes the v3 answer with the v2 layout (no authorized_operations) and fails on Kafka 4.
    RESPONSE_TYPE = DescribeGroupsResponse_v3


class _DescribeGroups(Request[_DescribeGroupsV3]):  # type: ignore[misc]
    API_KEY = 15

    def __init__(self, groups: list[str]) -> None:
        self.groups = groups

    def build(self, request_struct_class: type[_DescribeGroupsV3]) -> _DescribeGroupsV3:
        return request_struct_class(self.groups, False)


def _partitions(topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(LISTING_TOPIC_PARTITIONS)]


async def end_offsets(bootstrap: str, topic: str) -> Offsets:
    consumer = kafka_clients.consumer(bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(_partitions(topic))
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def committed(bootstrap: str, group: str, topic: str, loading_timeout: float = 30.0) -> Offsets:
    """The group's committed offset per partition of `topic` (0 where it never committed)."""
    admin = kafka_clients.admin(bootstrap)
    await admin.start()
    try:
        await _coordinator_loaded(admin, group, loading_timeout)
        found = await admin.list_consumer_group_offsets(group, partitions=_partitions(topic))
    finally:
        await admin.close()
    return {p: 0 for p in range(LISTING_TOPIC_PARTITIONS)} | {tp.partition: max(m.offset, 0) for tp, m in found.items()}


async def _coordinator_loaded(admin: Any, group: str, timeout: float) -> None:
    """Right after a broker start the coordinator is still loading; aiokafka ignores the top-level error code of
    OffsetFetch and would report -1 (never committed) for every partition, so wait until it can answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            node = await admin.find_coordinator(group)
            response = await admin._client.send(node, _DescribeGroups([group]))
            if response.groups[0][0] not in COORDINATOR_BUSY:
                return
        except KafkaError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the coordinator of group {group} did not answer within {timeout}s")
        await asyncio.sleep(0.2)


async def wait_committed(bootstrap: str, group: str, topic: str, target: Mapping[int, int], timeout: float) -> float:
    """Wait until the group has committed up to `target` on every partition; the seconds it took."""
    started = time.monotonic()
    while True:
        done = await committed(bootstrap, group, topic)
        behind = {p: (done[p], end) for p, end in target.items() if done[p] < end}
        if not behind:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"group {group} still behind on {topic} (committed, end): {behind} after {timeout}s")
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class GroupState:
    state: str
    members: int


async def group_state(bootstrap: str, group: str) -> GroupState:
    admin = kafka_clients.admin(bootstrap)
    await admin.start()
    try:
        node = await admin.find_coordinator(group)
        response = await admin._client.send(node, _DescribeGroups([group]))
    finally:
        await admin.close()
    _, _, state, _, _, members, _ = response.groups[0]
    return GroupState(state, len(members))


async def wait_group(
    bootstrap: str, group: str, ok: Callable[[GroupState], bool], timeout: float, poll: float = 0.05
) -> GroupState:
    deadline = time.monotonic() + timeout
    while True:
        found: GroupState | KafkaError
        try:
            found = await group_state(bootstrap, group)
        except (GroupLoadInProgressError, GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError) as exc:
            found = exc  # a fresh broker creates its offsets topic on the first FindCoordinator; a busy one moves it
        else:
            if ok(found):
                return found
        if time.monotonic() > deadline:
            raise AssertionError(f"group {group} is {found} after {timeout}s")
        await asyncio.sleep(poll)


@dataclass(frozen=True)
class Seen:
    key: bytes
    partition: int
    offset: int
    headers: dict[str, bytes]


async def read(bootstrap: str, topic: str, start: Mapping[int, int], key_prefix: bytes, timeout: float = 20.0) -> list[Seen]:
    """Every record of `topic` from `start` to the current end whose key starts with `key_prefix`."""
    ends = await end_offsets(bootstrap, topic)
    reader = kafka_clients.consumer(bootstrap, enable_auto_commit=False, group_id=None)
    await reader.start()
    found: list[Seen] = []
    try:
        partitions = [tp for tp in _partitions(topic) if ends[tp.partition] > start.get(tp.partition, 0)]
        reader.assign(partitions)
        for tp in partitions:
            reader.seek(tp, start.get(tp.partition, 0))
        deadline = time.monotonic() + timeout
        while [tp for tp in partitions if await reader.position(tp) < ends[tp.partition]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} up to {ends} within {timeout}s")
            batches = await reader.getmany(timeout_ms=500)
            for records in batches.values():
                found += [
                    Seen(r.key, r.partition, r.offset, {k: bytes(v) for k, v in r.headers or ()})
                    for r in records
                    if r.key is not None and r.key.startswith(key_prefix) and r.offset < ends[r.partition]
                ]
    finally:
        await reader.stop()
    return found


async def dead_letters(bootstrap: str, consumer: str, start: Mapping[int, int], key_prefix: bytes) -> list[Seen]:
    return await read(bootstrap, dlq_topic(consumer), start, key_prefix)
