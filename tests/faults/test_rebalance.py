"""Two instances of one consumer group under load: one killed during a rebalance, or one losing its partitions in
the middle of a batch. Nothing is lost, nothing is applied wrongly or twice, the counters match the database."""

from __future__ import annotations

import asyncio
import random
import signal

import asyncpg
import httpx
import pytest

from services.consumers.registry import POLICIES
from services.runner import RunningService
from tests.conftest import Infra
from tests.faults import instruments, kafka_probe
from tests.faults.conftest import FaultResult
from tests.faults.copies import assert_exact_copy, kept, wrong_answers
from tests.faults.history import TOPIC, History, Sent, produce, signing_key
from tests.faults.instruments import Gate
from tests.faults.processes import Processes, events_applied, kill_9

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]
CONSUMER = "airline"
REBALANCING = ("PreparingRebalance", "CompletingRebalance")
LOAD_CHUNKS, LOAD_CHUNK, LOAD_PAUSE = 30, 100, 0.3  # about 4,500 events over 10 s while the group changes
APPLY_TIMEOUT = 60.0
PROBES = 60


class Load:
    """Keeps producing the authority's churn while the group rebalances."""

    def __init__(self, stack: Infra, authors: History) -> None:
        self.stack = stack
        self.authors = authors
        self.sent: list[Sent] = []

    async def run(self) -> None:
        key = signing_key(self.stack.home)
        for _ in range(LOAD_CHUNKS):
            self.sent += await produce(self.stack.bootstrap_servers, key, self.authors.churn(LOAD_CHUNK))
            await asyncio.sleep(LOAD_PAUSE)


async def held_first_instance(stack: Infra, processes: Processes, authors: History) -> tuple[RunningService, Gate, int, Load]:
    """Instance 0 applies a backlog, then sits inside a batch transaction at a gate while the load goes on."""
    key = signing_key(stack.home)
    (first,) = await processes.start(CONSUMER)
    await produce(stack.bootstrap_servers, key, authors.mixed(1500))
    phase_b = authors.churn(600)
    applied = [e.listing.listing_id for e in phase_b if e.listing.version == 1 and kept(POLICIES[CONSUMER], e.listing)]
    gate = await Gate.close(stack.database_url, applied[len(applied) // 2], lock_key=random.getrandbits(62))
    await produce(stack.bootstrap_servers, key, phase_b)
    held = await gate.wait_held(CONSUMER, timeout=APPLY_TIMEOUT)
    return first, gate, held, Load(stack, authors)


async def check_copy(stack: Infra, db: asyncpg.Connection, authors: History, result: FaultResult) -> None:
    ends = await kafka_probe.end_offsets(stack.bootstrap_servers, TOPIC)
    await kafka_probe.wait_committed(stack.bootstrap_servers, CONSUMER, TOPIC, ends, APPLY_TIMEOUT)
    await assert_exact_copy(db, CONSUMER, authors, result)


async def probe(url: str, authors: History, result: FaultResult) -> None:
    sample = random.Random(authors.run).sample(sorted(authors.newest), PROBES)
    async with httpx.AsyncClient(timeout=10) as client:
        wrong = await wrong_answers(client, url, CONSUMER, [authors.newest[i] for i in sample], authors.subjects)
    result.wrong_answers = len(wrong)
    assert not wrong, wrong[:5]


async def test_instance_killed_during_a_rebalance_under_load_leaves_the_survivor_an_exact_copy(
    stack: Infra, processes: Processes, run: str, fault: list[FaultResult]
) -> None:
    result = FaultResult("2 instances of a group, one kill -9'd mid-batch during a rebalance, under load", events=0)
    fault.append(result)
    authors = History.start(run)
    db = await asyncpg.connect(stack.database_url)
    try:
        first, gate, held, load = await held_first_instance(stack, processes, authors)
        loading = asyncio.create_task(load.run())
        try:
            # Frozen, the first instance cannot rejoin, so the rebalance the second one starts stays open until the
            # first's session times out (10 s) and the kill lands inside it. Running, the first could rejoin within
            # milliseconds of its next heartbeat: a CI run once polled past the whole rebalance.
            first.process.send_signal(signal.SIGSTOP)
            joining = asyncio.create_task(processes.start(CONSUMER, instance=1))
            at_kill = await kafka_probe.wait_group(stack.bootstrap_servers, CONSUMER, lambda g: g.state in REBALANCING, 30)
            kill_9(first)
        finally:
            if first.process.poll() is None:  # the wait failed: a frozen process would not heed teardown's SIGTERM
                kill_9(first)
            await gate.release()
        await instruments.wait_backend_gone(db, held, timeout=20)
        first_survivor_write = await instruments.last_write_id(db)
        (second,) = await joining
        await loading
        result.events = len(authors.events)

        await check_copy(stack, db, authors, result)
        by_survivor = await instruments.writes(db, CONSUMER, None, after_id=first_survivor_write)
        async with httpx.AsyncClient(timeout=10) as client:
            counted = await events_applied(client, second, "applied")
            no_ops = await events_applied(client, second, "no_op")
        assert counted == len(by_survivor), f"survivor counts {counted} applied, the database saw {len(by_survivor)} writes"
        await probe(second.url, authors, result)
    finally:
        await db.close()
    result.survived = True
    result.notes = (
        f"frozen, then killed while the group was {at_kill.state} with {at_kill.members} members and a batch held open; "
        f"survivor wrote {counted} versions (= its metric) and counted {no_ops} redelivered no-ops"
    )


async def test_instance_losing_its_partitions_mid_batch_under_load_commits_nothing_wrong(
    stack: Infra, processes: Processes, run: str, fault: list[FaultResult]
) -> None:
    result = FaultResult("2 instances of a group, partitions revoked mid-batch (no kill), under load", events=0)
    fault.append(result)
    authors = History.start(run)
    db = await asyncpg.connect(stack.database_url)
    try:
        first_write = await instruments.last_write_id(db)
        first, gate, _, load = await held_first_instance(stack, processes, authors)
        loading = asyncio.create_task(load.run())
        try:
            (second,) = await processes.start(CONSUMER, instance=1)
            # The rebalance completes around the held batch: its partitions may now belong to the second instance.
            stable = await kafka_probe.wait_group(
                stack.bootstrap_servers, CONSUMER, lambda g: g.state == "Stable" and g.members == 2, 30
            )
        finally:
            await gate.release()
        await loading
        result.events = len(authors.events)

        await check_copy(stack, db, authors, result)
        written = await instruments.writes(db, CONSUMER, None, after_id=first_write)
        async with httpx.AsyncClient(timeout=10) as client:
            counted = [await events_applied(client, s, "applied") for s in (first, second)]
            no_ops = [await events_applied(client, s, "no_op") for s in (first, second)]
        assert sum(counted) == len(written), f"instances count {counted} applied, the database saw {len(written)} writes"
        await probe(second.url, authors, result)
    finally:
        await db.close()
    result.survived = True
    result.notes = (
        f"group {stable.state} with {stable.members} members while a batch was held; writes {counted} "
        f"(sum = database), no-ops {no_ops}"
    )
