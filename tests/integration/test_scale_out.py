"""Two instances of one consumer in one group share the partitions; each answers every check from the one copy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import DescribeGroupsRequest_v3, DescribeGroupsResponse_v3
from aiokafka.protocol.api import Request
from prometheus_client.parser import text_string_to_metric_families

from schemas.catalogue import FAMILIES, LISTING_TOPIC_PARTITIONS
from services import runner
from services.runner import RunningService
from services.scenario import TOKENS
from services.topology import SERVICES
from tests import kafka_clients
from tests.conftest import Infra
from tests.integration.helpers import ask, fresh_person, publish, wait_for_answer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(360)]

CONSUMER = "airline"
TOPIC = FAMILIES["court"].topic
# Own ports, so that these processes never meet the session's services (contract ports) or the fault tests' (+50).
COURT_SHIFT, INSTANCE_SHIFTS = 70, (70, 71)
READY_TIMEOUT = 90.0
GROUP_TIMEOUT = 60.0
MAX_LISTINGS = 60  # listing ids are the court's; publishing stops once every partition holds one of this test's


class _DescribeGroupsV3(DescribeGroupsRequest_v3):  # type: ignore[misc]  # aiokafka is untyped
    # aiokafka 0.14 decodes the v3 answer with the v2 layout and fails against Kafka 4: name the right one.
    RESPONSE_TYPE = DescribeGroupsResponse_v3


class _DescribeGroups(Request[_DescribeGroupsV3]):  # type: ignore[misc]
    API_KEY = 15

    def __init__(self, group: str) -> None:
        self.group = group

    def build(self, request_struct_class: type[_DescribeGroupsV3]) -> _DescribeGroupsV3:
        return request_struct_class([self.group], False)


@dataclass(frozen=True)
class Group:
    state: str
    assignments: dict[str, frozenset[int]]  # member id -> partitions of TOPIC it holds


async def describe(bootstrap: str) -> Group:
    """The group's state and each member's partitions of TOPIC, as the coordinator reports them."""
    admin = kafka_clients.admin(bootstrap)
    await admin.start()
    try:
        response = await admin._client.send(await admin.find_coordinator(CONSUMER), _DescribeGroups(CONSUMER))
    finally:
        await admin.close()
    _, _, state, _, _, members, _ = response.groups[0]
    assignments = {}
    for member_id, _, _, _, assignment in members:
        held = ConsumerProtocol.ASSIGNMENT.decode(assignment).partitions() if assignment else []
        assignments[member_id] = frozenset(tp.partition for tp in held if tp.topic == TOPIC)
    return Group(state, assignments)


async def wait_group(bootstrap: str, members: int | None, states: tuple[str, ...] = ("Stable",)) -> Group:
    """Wait until the group is in one of `states` with `members` members (None: any number)."""
    deadline = time.monotonic() + GROUP_TIMEOUT
    while True:
        try:
            group = await describe(bootstrap)
        except KafkaError as exc:  # a group never seen, on a fresh broker: the coordinator is still being set up
            group = Group(f"unavailable ({exc})", {})
        if group.state in states and members in (None, len(group.assignments)):
            return group
        if time.monotonic() > deadline:
            raise AssertionError(f"group {CONSUMER} is {group} after {GROUP_TIMEOUT}s, not {states} with {members} members")
        await asyncio.sleep(0.2)


async def partitions_of(bootstrap: str, keys: Iterable[str], since: dict[int, int]) -> dict[str, int]:
    """The partition of TOPIC each key was written to, read back from Kafka from the offsets `since`."""
    wanted = {k.encode() for k in keys}
    reader = kafka_clients.consumer(bootstrap, enable_auto_commit=False, group_id=None)
    await reader.start()
    found: dict[str, int] = {}
    try:
        partitions = [TopicPartition(TOPIC, p) for p in range(LISTING_TOPIC_PARTITIONS)]
        reader.assign(partitions)
        for tp in partitions:
            reader.seek(tp, since[tp.partition])
        deadline = time.monotonic() + 30
        while {k.decode() for k in wanted} - set(found):
            if time.monotonic() > deadline:
                raise AssertionError(f"keys never reached {TOPIC}: {sorted(k.decode() for k in wanted)[:5]}")
            for records in (await reader.getmany(timeout_ms=500)).values():
                found |= {r.key.decode(): r.partition for r in records if r.key in wanted}
    finally:
        await reader.stop()
    return found


async def end_offsets(bootstrap: str) -> dict[int, int]:
    probe = kafka_clients.consumer(bootstrap, enable_auto_commit=False)
    await probe.start()
    try:
        ends = await probe.end_offsets([TopicPartition(TOPIC, p) for p in range(LISTING_TOPIC_PARTITIONS)])
    finally:
        await probe.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def partitions_applied(client: httpx.AsyncClient, instance: RunningService) -> set[int]:
    """Partitions of TOPIC this process applied a batch from (the labels of its own lag gauge)."""
    text = (await client.get(f"{instance.url}/metrics")).text
    return {
        int(sample.labels["partition"])
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "blacklist_consumer_lag" and sample.labels.get("topic") == TOPIC
    }


@dataclass
class Stack:
    court: RunningService
    instances: list[RunningService]
    baseline_members: int  # members of the group that are not this test's (the session's airline service, if any)


async def start(infra: Infra, name: str, shift: int, label: str) -> RunningService:
    (service,) = runner.start(
        [name], infra.home / "logs" / "scale-out" / label, env=infra.env(), ports={name: SERVICES[name].port + shift}
    )
    await asyncio.to_thread(runner.wait_ready, [service], READY_TIMEOUT, lambda _: None)
    return service


@pytest.fixture
async def stack(infra: Infra) -> AsyncIterator[Stack]:
    started: list[RunningService] = []
    try:
        # Members already there (the session's airline service, if a test started it), once no rebalance is under way.
        settled = await wait_group(infra.bootstrap_servers, None, ("Stable", "Empty", "Dead"))
        baseline = len(settled.assignments)
        started.append(await start(infra, "court", COURT_SHIFT, "court"))
        for i, shift in enumerate(INSTANCE_SHIFTS):
            started.append(await start(infra, CONSUMER, shift, f"instance-{i}"))
        yield Stack(started[0], started[1:], baseline)
    finally:
        runner.stop(started)


async def publish_listing(client: httpx.AsyncClient, court: RunningService) -> tuple[str, str]:
    """One court listing of a fresh person; (listing id, raw person id)."""
    person = fresh_person()
    body = {
        "authority": "court.bj-1st-intermediate",
        "list": "court.dishonest_debtor",
        "subject": {"kind": "person", "id": person, "name": "Scale Out"},
        "legal_basis": {"case_number": "(2026) Scale Out 1"},
    }
    listing: dict[str, Any] = (await publish(client, court.url, TOKENS["court"], "/v1/listings", body))["listing"]
    return listing["listing_id"], person


async def publish_over_every_partition(
    client: httpx.AsyncClient, infra: Infra, court: RunningService
) -> dict[str, tuple[str, int]]:
    """Listings until each partition of TOPIC holds one: listing id -> (person, partition)."""
    since = await end_offsets(infra.bootstrap_servers)
    people: dict[str, str] = {}
    where: dict[str, int] = {}
    while set(where.values()) != set(range(LISTING_TOPIC_PARTITIONS)):
        assert len(people) < MAX_LISTINGS, f"{len(people)} listings reached only partitions {sorted(set(where.values()))}"
        batch = dict([await publish_listing(client, court) for _ in range(6)])
        people |= batch
        where |= await partitions_of(infra.bootstrap_servers, batch, since)
    return {listing_id: (people[listing_id], where[listing_id]) for listing_id in people}


async def assert_every_instance_blocks(
    client: httpx.AsyncClient, instances: list[RunningService], listings: dict[str, tuple[str, int]]
) -> None:
    for listing_id, (person, _) in listings.items():
        await wait_for_answer(client, instances[0].url, person, "board_flight", allowed=False)
        for instance in instances:
            answer = await ask(client, instance.url, person, "board_flight")
            assert answer["allowed"] is False, (instance.url, listing_id, answer)
            assert [b["listing_id"] for b in answer["blocking"]] == [listing_id], (instance.url, answer)


async def test_two_instances_share_the_partitions_and_each_answers_for_every_listing(infra: Infra, stack: Stack) -> None:
    group = await wait_group(infra.bootstrap_servers, stack.baseline_members + 2)
    async with httpx.AsyncClient(timeout=10) as client:
        listings = await publish_over_every_partition(client, infra, stack.court)

        await assert_every_instance_blocks(client, stack.instances, listings)

        unlisted = fresh_person()
        assert all([(await ask(client, i.url, unlisted, "board_flight"))["allowed"] for i in stack.instances])
        applied = [await partitions_applied(client, i) for i in stack.instances]
    holders = [held for held in group.assignments.values() if held]
    assert len(holders) >= 2, f"only {len(holders)} member(s) hold partitions of {TOPIC}: {group.assignments}"
    assert all(applied), f"an instance applied no partition of {TOPIC}: {applied}"
    if stack.baseline_members == 0:  # the two instances are the whole group: together they applied every partition
        assert set().union(*applied) == set(range(LISTING_TOPIC_PARTITIONS)), applied


async def test_the_surviving_instance_takes_over_the_partitions_of_a_stopped_one(infra: Infra, stack: Stack) -> None:
    before = await wait_group(infra.bootstrap_servers, stack.baseline_members + 2)
    stopped, survivor = stack.instances

    runner.stop([stopped])
    after = await wait_group(infra.bootstrap_servers, stack.baseline_members + 1)

    (gone,) = set(before.assignments) - set(after.assignments)
    orphaned = before.assignments[gone]
    assert orphaned, f"the stopped instance held no partition of {TOPIC}: {before.assignments}"
    assert orphaned <= set().union(*after.assignments.values()), f"{sorted(orphaned)} not reassigned: {after.assignments}"
    async with httpx.AsyncClient(timeout=10) as client:
        listing_id, person, partition = await publish_onto(client, infra, stack.court, orphaned)

        answer = await wait_for_answer(client, survivor.url, person, "board_flight", allowed=False)

        assert [b["listing_id"] for b in answer["blocking"]] == [listing_id]
        if stack.baseline_members == 0:  # the survivor is the group's only member: it alone can have applied it
            assert partition in await partitions_applied(client, survivor)


async def publish_onto(
    client: httpx.AsyncClient, infra: Infra, court: RunningService, partitions: frozenset[int]
) -> tuple[str, str, int]:
    """A listing that lands on one of `partitions` (the stopped instance's): listing id, person, partition."""
    for _ in range(MAX_LISTINGS):
        since = await end_offsets(infra.bootstrap_servers)
        listing_id, person = await publish_listing(client, court)
        partition = (await partitions_of(infra.bootstrap_servers, [listing_id], since))[listing_id]
        if partition in partitions:
            return listing_id, person, partition
    raise AssertionError(f"{MAX_LISTINGS} listings and none landed on partitions {sorted(partitions)}")
