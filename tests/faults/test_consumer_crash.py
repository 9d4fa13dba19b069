"""kill -9 of a consumer in the middle of a batch, on real Kafka and PostgreSQL: the restarted consumer's copy
equals the authorities' state, every version is written once, and offsets never ran ahead of the copy."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence

import asyncpg
import httpx
import pytest

from schemas.events import Listing, ListingEvent
from services import localinfra
from services.consumers.registry import POLICIES
from tests.conftest import Infra
from tests.faults import instruments, kafka_probe
from tests.faults.conftest import FaultResult
from tests.faults.copies import Held, actual_copy, compare, expected_copy, kept, wrong_answers
from tests.faults.history import TOPIC, History, Sent, produce, signing_key
from tests.faults.instruments import Gate
from tests.faults.processes import Processes, events_applied, kill_9

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]
CONSUMER = "airline"
APPLY_TIMEOUT = 45.0
PROBES = 60


def quiet(_: str) -> None:
    """Progress lines of localinfra, not wanted in test output."""


def offsets_ran_ahead(
    sent: Sequence[Sent], committed: Mapping[int, int], copy: Mapping[str, Held], versions: Mapping[tuple[str, int], Listing]
) -> list[Sent]:
    """Records below the committed offset whose version the copy does not hold: offsets committed before the apply."""
    policy = POLICIES[CONSUMER]
    ahead = []
    for s in sent:
        if s.version is None or s.offset >= committed[s.partition]:
            continue
        held = copy.get(s.listing_id)
        first_not_applied = s.version == 1 and kept(policy, versions[(s.listing_id, 1)]) is None
        if not (held is not None and held.version >= s.version) and not (held is None and first_not_applied):
            ahead.append(s)
    return ahead


def middle_applied(events: Sequence[ListingEvent]) -> str:
    """A listing first issued in the middle of `events` that the consumer applies: its write is what the gate holds."""
    applied = [e.listing.listing_id for e in events if e.listing.version == 1 and kept(POLICIES[CONSUMER], e.listing)]
    return applied[len(applied) // 2]


async def applied_backlog(stack: Infra, processes: Processes, authors: History) -> list[Sent]:
    """Phase A: the consumer runs, applies and commits a first history before any fault."""
    await processes.start(CONSUMER)
    sent = await produce(stack.bootstrap_servers, signing_key(stack.home), authors.mixed(1500))
    ends = await kafka_probe.end_offsets(stack.bootstrap_servers, TOPIC)
    await kafka_probe.wait_committed(stack.bootstrap_servers, CONSUMER, TOPIC, ends, APPLY_TIMEOUT)
    return sent


async def check_recovered(
    stack: Infra, db: asyncpg.Connection, authors: History, restarted_first_write: int, result: FaultResult
) -> tuple[int, list[tuple[str, int]]]:
    """After the restart: the copy equals the authorities' state; returns (writes by the restarted process, twice)."""
    ends = await kafka_probe.end_offsets(stack.bootstrap_servers, TOPIC)
    await kafka_probe.wait_committed(stack.bootstrap_servers, CONSUMER, TOPIC, ends, APPLY_TIMEOUT)
    diff = compare(expected_copy(POLICIES[CONSUMER], authors.newest.values()), await actual_copy(db, CONSUMER, authors.authority))
    result.lost, result.wrong_rows = len(diff.lost), len(diff.wrong)
    assert not diff, f"{CONSUMER} copy differs from the authority's state: {diff.describe()}"
    twice = instruments.applied_twice(await instruments.writes(db, CONSUMER, authors.authority))
    after = await instruments.writes(db, CONSUMER, None, after_id=restarted_first_write)
    return len(after), twice


async def probe_answers(url: str, authors: History, result: FaultResult, extra: Sequence[str]) -> None:
    sample = random.Random(authors.run).sample(sorted(authors.newest), PROBES) + list(extra)
    async with httpx.AsyncClient(timeout=10) as client:
        wrong = await wrong_answers(client, url, CONSUMER, [authors.newest[i] for i in sample], authors.subjects)
    result.wrong_answers = len(wrong)
    assert not wrong, f"the check API contradicts the authority for {wrong[:5]}"


async def test_consumer_killed_inside_its_apply_transaction_restarts_to_the_exact_copy_applying_each_version_once(
    stack: Infra, processes: Processes, db: asyncpg.Connection, run: str, fault: list[FaultResult]
) -> None:
    result = FaultResult("kill -9 consumer while its batch apply is held in PostgreSQL, restart", events=0)
    fault.append(result)
    authors = History.start(run)
    sent = await applied_backlog(stack, processes, authors)
    (consumer,) = [p for p in processes.started if p.spec.name == CONSUMER]

    phase_b = authors.churn(1200)
    issued_in_b = [e.listing.listing_id for e in phase_b if e.listing.version == 1]
    gated = middle_applied(phase_b)
    poisoned = sorted({gated, *issued_in_b[len(issued_in_b) // 2 + 1 :: 97]})
    gate = await Gate.close(stack.database_url, gated, lock_key=random.getrandbits(62))
    try:
        sent += await produce(stack.bootstrap_servers, signing_key(stack.home), phase_b, poison=poisoned)
        held_backend = await gate.wait_held(CONSUMER, timeout=APPLY_TIMEOUT)
        kill_9(consumer)
    finally:
        await gate.release()
    await instruments.wait_backend_gone(db, held_backend, timeout=20)
    result.events = len(sent)

    committed = await kafka_probe.committed(stack.bootstrap_servers, CONSUMER, TOPIC)
    copy_at_kill = await actual_copy(db, CONSUMER, authors.authority)
    versions = {(e.listing.listing_id, e.listing.version): e.listing for e in authors.events}
    # A small batch's upsert is one autocommitted statement: held by the gate, it may still commit after the kill,
    # leaving the copy ahead of the offsets (its redelivery is a no-op); a staged batch's transaction rolls back.
    # Both are correct. What must hold: its offsets were not committed, nor any past what the copy holds.
    held_committed = gated in copy_at_kill
    assert any(s.offset >= committed[s.partition] for s in sent if s.listing_id == gated), "the held batch was committed"
    ahead = offsets_ran_ahead(sent, committed, copy_at_kill, versions)
    assert not ahead, f"offsets committed past records the copy never applied: {ahead[:5]}"
    assert len(copy_at_kill) > 0, "phase A was applied before the kill"

    restarted_first_write = await instruments.last_write_id(db)
    again = await processes.restart(consumer)
    applied_after, twice = await check_recovered(stack, db, authors, restarted_first_write, result)
    assert not twice, f"versions written twice: {twice[:5]}"
    async with httpx.AsyncClient(timeout=10) as client:
        counted = await events_applied(client, again, "applied")
    assert counted == applied_after, f"restarted consumer counts {counted} applied, the database saw {applied_after} writes"

    letters = await kafka_probe.dead_letters(stack.bootstrap_servers, CONSUMER, {}, authors.authority.encode())
    per_source: dict[bytes, int] = {}
    for letter in letters:
        per_source[letter.headers["x-dlq-source"]] = per_source.get(letter.headers["x-dlq-source"], 0) + 1
    assert len(per_source) == len(poisoned), f"{len(per_source)} poison records dead-lettered of {len(poisoned)}"
    repeated = {source: n for source, n in per_source.items() if n > 1}
    assert not repeated, f"poison records dead-lettered more than once: {repeated}"

    await probe_answers(again.url, authors, result, extra=[gated])
    result.survived = True
    result.notes = (
        f"{len(copy_at_kill)} listings applied before the kill; held batch "
        f"{'committed by PostgreSQL after the kill' if held_committed else 'rolled back'}, its offsets not committed; "
        f"{applied_after} writes after restart = metric; {len(poisoned)} poison records dead-lettered once each"
    )


async def test_consumer_killed_after_its_database_commit_before_its_offset_commit_redelivers_only_no_ops(
    stack: Infra, processes: Processes, db: asyncpg.Connection, run: str, fault: list[FaultResult]
) -> None:
    result = FaultResult("kill -9 consumer after its DB commit, offsets not committed (Kafka down)", events=0)
    fault.append(result)
    authors = History.start(run)
    sent = await applied_backlog(stack, processes, authors)
    (consumer,) = [p for p in processes.started if p.spec.name == CONSUMER]

    phase_b = authors.churn(1200)
    gated = middle_applied(phase_b)
    gate = await Gate.close(stack.database_url, gated, lock_key=random.getrandbits(62))
    try:
        sent += await produce(stack.bootstrap_servers, signing_key(stack.home), phase_b)
        await gate.wait_held(CONSUMER, timeout=APPLY_TIMEOUT)
        # With Kafka stopped, the offset commit that follows the database commit cannot land anywhere.
        await asyncio.to_thread(localinfra.stop_kafka, stack.home, quiet)
        await gate.open()
        await _wait_written(db, authors.authority, gated)
        kill_9(consumer)
    finally:
        await gate.release()
    await asyncio.to_thread(localinfra.start_kafka, stack.home, quiet)
    result.events = len(sent)

    committed = await kafka_probe.committed(stack.bootstrap_servers, CONSUMER, TOPIC)
    copy_at_kill = await actual_copy(db, CONSUMER, authors.authority)
    versions = {(e.listing.listing_id, e.listing.version): e.listing for e in authors.events}
    assert not offsets_ran_ahead(sent, committed, copy_at_kill, versions)
    # Applied but not committed: exactly what a restart redelivers.
    redelivered_applied = [
        s
        for s in sent
        if s.version is not None
        and s.offset >= committed[s.partition]
        and s.listing_id in copy_at_kill
        and copy_at_kill[s.listing_id].version >= s.version
    ]
    assert any(s.listing_id == gated for s in redelivered_applied), "the gated record was committed before the kill"

    restarted_first_write = await instruments.last_write_id(db)
    again = await processes.restart(consumer)
    applied_after, twice = await check_recovered(stack, db, authors, restarted_first_write, result)
    assert not twice, f"versions written twice: {twice[:5]}"
    rewritten = {
        (w.listing_id, w.version) for w in await instruments.writes(db, CONSUMER, authors.authority, restarted_first_write)
    }
    again_applied = rewritten & {(s.listing_id, s.version) for s in redelivered_applied if s.version is not None}
    assert not again_applied, f"redelivered records applied again: {sorted(again_applied)[:5]}"
    async with httpx.AsyncClient(timeout=10) as client:
        counted = await events_applied(client, again, "applied")
        no_ops = await events_applied(client, again, "no_op")
    assert counted == applied_after
    assert no_ops >= len(redelivered_applied), f"{no_ops} no-ops counted for {len(redelivered_applied)} redelivered records"

    await probe_answers(again.url, authors, result, extra=[gated])
    result.survived = True
    result.notes = f"{len(redelivered_applied)} records applied but not committed at the kill, redelivered as no-ops"


async def _wait_written(db: asyncpg.Connection, authority: str, listing_id: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(w.listing_id == listing_id for w in await instruments.writes(db, CONSUMER, authority)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{listing_id} not committed {timeout}s after the gate opened")
        await asyncio.sleep(0.05)
