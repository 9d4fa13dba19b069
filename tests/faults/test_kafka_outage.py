"""Kafka stopped while a publisher keeps accepting listings: every listing that got a 201 reaches every consumer
that applies it once Kafka is back (the outbox holds them), each applied once."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest

from schemas.catalogue import CONSUMERS
from schemas.events import Listing
from services import localinfra
from services.scenario import TOKENS, person_id
from tests.conftest import Infra
from tests.faults import instruments, kafka_probe
from tests.faults.conftest import FaultResult
from tests.faults.copies import authority_state, wait_for_copies, wait_outbox_drained, wrong_answers
from tests.faults.history import TOPIC
from tests.faults.processes import Processes

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]
BEFORE_SECONDS, OUTAGE_SECONDS, AFTER_SECONDS = 1.0, 3.0, 1.0
PUBLISH_INTERVAL = 0.05  # about 20 listings a second: a busy court, and CPU left for Kafka on a 2-core box
CATCH_UP_TIMEOUT = 60.0
BACKLOG_TIMEOUT = 120.0  # what earlier tests produced for groups that were not running then
PROBES = 20


def quiet(_: str) -> None:
    """Progress lines of localinfra, not wanted in test output."""


@dataclass
class Accepted:
    """What the publisher answered while the test kept publishing."""

    listings: dict[str, Listing] = field(default_factory=dict)
    subjects: dict[str, str] = field(default_factory=dict)
    at: dict[str, float] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


async def keep_publishing(url: str, authority: str, accepted: Accepted, stop: asyncio.Event) -> None:
    """Issue court listings one after another until told to stop; record every 201 and every other answer."""
    rng = random.Random(authority)
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            subject = person_id(rng, f"19{rng.randint(50, 99)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}")
            body = {
                "authority": authority,
                "list": "court.dishonest_debtor",
                "subject": {"kind": "person", "id": subject, "name": "Outage Person"},
                "legal_basis": {"case_number": f"(2026) Outage {len(accepted.listings)}"},
            }
            try:
                response = await client.post(
                    f"{url}/v1/listings", json=body, headers={"Authorization": f"Bearer {TOKENS['court']}"}
                )
            except httpx.HTTPError as exc:
                accepted.refused.append(repr(exc))
                continue
            if response.status_code != 201:
                accepted.refused.append(f"{response.status_code} {response.text[:200]}")
                continue
            listing = Listing.model_validate(response.json()["listing"])
            accepted.listings[listing.listing_id] = listing
            accepted.subjects[listing.listing_id] = subject
            accepted.at[listing.listing_id] = time.monotonic()
            await asyncio.sleep(PUBLISH_INTERVAL)


async def test_kafka_outage_while_publishing_loses_no_accepted_listing_and_applies_each_once(
    stack: Infra, processes: Processes, run: str, fault: list[FaultResult]
) -> None:
    result = FaultResult("stop Kafka while the court publisher keeps accepting listings, start it again", events=0)
    fault.append(result)
    authority = f"court.faults-{run}"
    began = time.monotonic()
    running = {s.spec.name: s for s in await processes.start("court", *CONSUMERS)}
    up = time.monotonic()
    topic_start = await kafka_probe.end_offsets(stack.bootstrap_servers, TOPIC)
    # Groups that did not run during earlier tests first read what those tests produced: not part of this fault.
    for consumer in CONSUMERS:
        await kafka_probe.wait_committed(stack.bootstrap_servers, consumer, TOPIC, topic_start, BACKLOG_TIMEOUT)
    backlog_read = time.monotonic()

    accepted, stop = Accepted(), asyncio.Event()
    publisher = asyncio.create_task(keep_publishing(running["court"].url, authority, accepted, stop))
    try:
        await asyncio.sleep(BEFORE_SECONDS)
        stopping = time.monotonic()
        await asyncio.to_thread(localinfra.stop_kafka, stack.home, quiet)
        stopped = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(localinfra.start_kafka, stack.home, quiet)
        started = time.monotonic()
        await asyncio.sleep(AFTER_SECONDS)
    finally:
        stop.set()
        await publisher
    during = [i for i, t in accepted.at.items() if stopping <= t <= started]
    result.events = len(accepted.listings)
    assert not accepted.refused, f"the publisher refused listings during the outage: {accepted.refused[:3]}"
    assert during, "no listing was accepted while Kafka was down"

    db = await asyncpg.connect(stack.database_url)
    try:
        state = await authority_state(db, "court", authority)
        assert {x.listing_id for x in state} == set(accepted.listings), "a 201 without the listing in the register"
        await wait_outbox_drained(db, "court", authority, CATCH_UP_TIMEOUT)
        drained = time.monotonic()
        diffs = await wait_for_copies(db, CONSUMERS, authority, state, CATCH_UP_TIMEOUT)
        caught_up = time.monotonic()
        result.lost = sum(len(d.lost) for d in diffs.values())
        result.wrong_rows = sum(len(d.wrong) for d in diffs.values())
        assert not any(diffs.values()), {c: d.describe() for c, d in diffs.items() if d}
        # Records sent twice arrive after the copies are already right: audit once every consumer has read them all.
        ends = await kafka_probe.end_offsets(stack.bootstrap_servers, TOPIC)
        for consumer in CONSUMERS:
            await kafka_probe.wait_committed(stack.bootstrap_servers, consumer, TOPIC, ends, CATCH_UP_TIMEOUT)
            twice = instruments.applied_twice(await instruments.writes(db, consumer, authority))
            assert not twice, f"{consumer} wrote versions twice: {twice[:5]}"
    finally:
        await db.close()
    on_wire = await kafka_probe.read(stack.bootstrap_servers, TOPIC, topic_start, f"{authority}:".encode())
    assert len(on_wire) >= len(accepted.listings)

    sample = random.Random(run).sample(sorted(accepted.listings), min(PROBES, len(accepted.listings)))
    wrong: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for consumer in CONSUMERS:
            listings = [accepted.listings[i] for i in sample]
            wrong += await wrong_answers(client, running[consumer].url, consumer, listings, accepted.subjects)
    result.wrong_answers = len(wrong)
    assert not wrong, wrong[:5]
    result.survived = True
    result.notes = (
        f"{len(during)} of {len(accepted.listings)} listings accepted while Kafka was stopping or down "
        f"(stop took {stopped - stopping:.1f}s, down {OUTAGE_SECONDS:.0f}s more, "
        f"start {started - stopped - OUTAGE_SECONDS:.1f}s); "
        f"{len(on_wire)} records on the wire; outbox drained {drained - started:.1f}s and all 4 consumers equal the register "
        f"{caught_up - started:.1f}s after Kafka was back "
        f"(services took {up - began:.1f}s to start, earlier tests' backlog {backlog_read - up:.1f}s to read)"
    )
