"""kill -9 of a publisher between its database commit and Kafka: listings that got a 201 are sent by the relay
after the restart, and a record sent twice (sent, then killed before it was marked sent) is applied once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from schemas.events import Listing
from services import localinfra
from services.runner import RunningService
from services.scenario import TOKENS, person_id
from tests.conftest import Infra
from tests.faults import instruments, kafka_probe
from tests.faults.conftest import FaultResult
from tests.faults.copies import authority_state, outbox_unsent, wait_for_copies, wait_outbox_drained, wrong_answers
from tests.faults.history import TOPIC
from tests.faults.instruments import Gate
from tests.faults.processes import Processes, kill_9

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]
CONSUMER = "airline"
LISTINGS = 40
CATCH_UP_TIMEOUT = 45.0


def quiet(_: str) -> None:
    """Progress lines of localinfra, not wanted in test output."""


@dataclass(frozen=True)
class Issued:
    listings: dict[str, Listing]
    subjects: dict[str, str]  # listing id -> the subject's raw id, for asking the check API


async def issue(court: RunningService, authority: str, count: int) -> Issued:
    """POST `count` court listings; every one must get its 201."""
    rng = random.Random(authority)
    issued = Issued({}, {})
    async with httpx.AsyncClient(timeout=30) as client:
        for n in range(count):
            subject = person_id(rng, f"19{rng.randint(50, 99)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}")
            body = {
                "authority": authority,
                "list": "court.dishonest_debtor",
                "subject": {"kind": "person", "id": subject, "name": "Crash Person"},
                "legal_basis": {"case_number": f"(2026) Crash {n}"},
            }
            response = await client.post(
                f"{court.url}/v1/listings", json=body, headers={"Authorization": f"Bearer {TOKENS['court']}"}
            )
            assert response.status_code == 201, response.text
            listing = Listing.model_validate(response.json()["listing"])
            issued.listings[listing.listing_id] = listing
            issued.subjects[listing.listing_id] = subject
    return issued


async def check_delivered(
    stack: Infra, db: asyncpg.Connection, airline: RunningService, authority: str, subjects: dict[str, str], result: FaultResult
) -> Sequence[kafka_probe.Seen]:
    """Nothing left unsent, every listing of the register in the consumer's copy, each version written once."""
    await wait_outbox_drained(db, "court", authority, CATCH_UP_TIMEOUT)
    state = await authority_state(db, "court", authority)
    diffs = await wait_for_copies(db, [CONSUMER], authority, state, CATCH_UP_TIMEOUT)
    result.lost, result.wrong_rows = len(diffs[CONSUMER].lost), len(diffs[CONSUMER].wrong)
    assert not diffs[CONSUMER], diffs[CONSUMER].describe()
    # Duplicates arrive after the copy is already right: audit only once the consumer has read all of them.
    ends = await kafka_probe.end_offsets(stack.bootstrap_servers, TOPIC)
    await kafka_probe.wait_committed(stack.bootstrap_servers, CONSUMER, TOPIC, ends, CATCH_UP_TIMEOUT)
    twice = instruments.applied_twice(await instruments.writes(db, CONSUMER, authority))
    assert not twice, f"versions written twice: {twice[:5]}"
    async with httpx.AsyncClient(timeout=10) as client:
        wrong = await wrong_answers(client, airline.url, CONSUMER, state, subjects)
    result.wrong_answers = len(wrong)
    assert not wrong, wrong[:5]
    return await kafka_probe.read(stack.bootstrap_servers, TOPIC, {}, f"{authority}:".encode())


async def test_publisher_killed_after_its_commit_before_the_send_relays_every_accepted_listing_on_restart(
    stack: Infra, processes: Processes, run: str, fault: list[FaultResult]
) -> None:
    result = FaultResult("kill -9 publisher after its DB commit, before the Kafka send", events=LISTINGS)
    fault.append(result)
    authority = f"court.faults-{run}"
    court, airline = await processes.start("court", CONSUMER)
    # With Kafka down the relay cannot send: each 201 leaves a committed outbox record and nothing on the wire.
    await asyncio.to_thread(localinfra.stop_kafka, stack.home, quiet)
    issued = await issue(court, authority, LISTINGS)
    db = await asyncpg.connect(stack.database_url)
    try:
        pending_at_kill = await outbox_unsent(db, "court", authority)
        kill_9(court)
        assert pending_at_kill == LISTINGS, f"{pending_at_kill} of {LISTINGS} accepted listings pending in the outbox"
        await asyncio.to_thread(localinfra.start_kafka, stack.home, quiet)
        await processes.restart(court)
        on_wire = await check_delivered(stack, db, airline, authority, issued.subjects, result)
    finally:
        await db.close()
    assert len(on_wire) >= LISTINGS
    result.survived = True
    result.notes = f"{pending_at_kill} committed, unsent outbox records at the kill; all relayed after restart, applied once"


async def hold_relay_and_kill(
    stack: Infra, db: asyncpg.Connection, authority: str, make_it_send: Awaitable[RunningService]
) -> None:
    """Await `make_it_send` (it returns the publisher) while a gate holds the relay's marking of its batch as sent,
    then kill the publisher there; PostgreSQL rolls the held transaction back once the gate opens."""
    gate = await Gate.close(stack.database_url, authority, lock_key=random.getrandbits(62))
    try:
        acting = asyncio.ensure_future(make_it_send)
        held_backend = await gate.wait_held("court", timeout=30)
        kill_9(await acting)
    finally:
        await gate.release()
    await instruments.wait_backend_gone(db, held_backend, timeout=20)


async def test_publisher_killed_after_the_send_before_marking_sent_resends_and_consumers_apply_each_once(
    stack: Infra, processes: Processes, run: str, fault: list[FaultResult]
) -> None:
    result = FaultResult("kill -9 publisher after the Kafka send, before marking the outbox sent", events=LISTINGS)
    fault.append(result)
    authority = f"court.faults-{run}"
    court, airline = await processes.start("court", CONSUMER)
    issued: list[Issued] = []

    async def issue_all() -> RunningService:
        issued.append(await issue(court, authority, LISTINGS))
        return court

    db = await asyncpg.connect(stack.database_url)
    try:
        # First kill: the relay's first batch is held while the other listings pile up unsent in the outbox.
        await hold_relay_and_kill(stack, db, authority, issue_all())
        # Second kill: the restarted relay sends every pending record, then dies before marking them sent.
        await hold_relay_and_kill(stack, db, authority, processes.restart(court))
        on_wire_at_kill = await kafka_probe.read(stack.bootstrap_servers, TOPIC, {}, f"{authority}:".encode())
        assert await outbox_unsent(db, "court", authority) == LISTINGS, (
            "records were marked sent by a transaction that never committed"
        )
        assert len(on_wire_at_kill) >= LISTINGS, f"only {len(on_wire_at_kill)} records sent before the kill"

        await processes.restart(court)
        on_wire = await check_delivered(stack, db, airline, authority, issued[0].subjects, result)
    finally:
        await db.close()
    assert len(on_wire) >= len(on_wire_at_kill) + LISTINGS, "the records sent before the kill were not sent again"
    result.survived = True
    result.notes = (
        f"{len(on_wire_at_kill)} records on Kafka, none marked sent at the kill; all {LISTINGS} sent again after restart "
        f"({len(on_wire)} on the wire), each applied once"
    )
