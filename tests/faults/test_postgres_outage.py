"""PostgreSQL stopped under a running consumer: no offset moves, /readyz and the check API say 503, and once the
database returns the consumer catches up with nothing lost, nothing applied twice, each dead letter written once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import asyncpg
import httpx
import pytest

from services import localinfra
from services.runner import RunningService
from tests.conftest import Infra
from tests.faults import instruments, kafka_probe
from tests.faults.conftest import FaultResult
from tests.faults.copies import assert_exact_copy, wrong_answers
from tests.faults.history import TOPIC, History, produce, signing_key
from tests.faults.processes import Processes, events_applied

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]
CONSUMER = "airline"
OUTAGE_SECONDS = 8.0  # long enough for several retries of the held batch
READY_WITHIN = 5.0


def quiet(_: str) -> None:
    """Progress lines of localinfra, not wanted in test output."""


async def wait_ready_status(client: httpx.AsyncClient, service: RunningService, status: int, timeout: float) -> float:
    """Seconds until /readyz answers `status`."""
    started = time.monotonic()
    while True:
        response = await client.get(f"{service.url}/readyz")
        if response.status_code == status:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"/readyz still {response.status_code} {response.text} after {timeout}s")
        await asyncio.sleep(0.1)


async def test_postgres_outage_holds_offsets_answers_503_and_the_consumer_catches_up_with_nothing_lost(
    stack: Infra, processes: Processes, run: str, fault: list[FaultResult]
) -> None:
    result = FaultResult("stop PostgreSQL under a running consumer, start it again", events=0)
    fault.append(result)
    authors = History.start(run)
    key = signing_key(stack.home)
    bootstrap = stack.bootstrap_servers
    db = await asyncpg.connect(stack.database_url)
    first_write = await instruments.last_write_id(db)
    await db.close()
    (consumer,) = await processes.start(CONSUMER)
    sent = await produce(bootstrap, key, authors.mixed(600))
    await kafka_probe.wait_committed(bootstrap, CONSUMER, TOPIC, await kafka_probe.end_offsets(bootstrap, TOPIC), 45)
    committed_before = await kafka_probe.committed(bootstrap, CONSUMER, TOPIC)

    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.to_thread(localinfra.stop_postgres, stack.home, quiet)
        unready_after = await wait_ready_status(client, consumer, 503, READY_WITHIN)
        readiness = (await client.get(f"{consumer.url}/readyz")).json()
        assert readiness["database"] is False and readiness["kafka"] is True, readiness

        phase_b = authors.churn(600)
        poisoned = sorted({e.listing.listing_id for e in phase_b[::101]})
        sent += await produce(bootstrap, key, phase_b, poison=poisoned)
        result.events = len(sent)
        subject = authors.subjects[phase_b[-1].listing.listing_id]
        during = await client.post(
            f"{consumer.url}/v1/checks", json={"subject": {"kind": "person", "id": subject}, "action": "board_flight"}
        )
        await asyncio.sleep(OUTAGE_SECONDS)
        committed_during = await kafka_probe.committed(bootstrap, CONSUMER, TOPIC)
        assert consumer.process.poll() is None, "the consumer died with its database"
        assert committed_during == committed_before, "offsets moved while the copy could not be written"
        assert during.status_code == 503, f"a check during the outage answered {during.status_code} {during.text[:200]}"

        await asyncio.to_thread(localinfra.start_postgres, stack.home, quiet)
        ready_after = await wait_ready_status(client, consumer, 200, 30)
        # Traffic goes on after the outage: its offsets must not be committed past anything still unapplied.
        sent += await produce(bootstrap, key, authors.churn(300))
        result.events = len(sent)
        await kafka_probe.wait_committed(bootstrap, CONSUMER, TOPIC, await kafka_probe.end_offsets(bootstrap, TOPIC), 45)

        db = await asyncpg.connect(stack.database_url)
        try:
            await assert_exact_copy(db, CONSUMER, authors, result)
            written = await instruments.writes(db, CONSUMER, None, after_id=first_write)
        finally:
            await db.close()
        assert await events_applied(client, consumer, "applied") == len(written), "metric and database disagree"

        letters = await kafka_probe.dead_letters(bootstrap, CONSUMER, {}, authors.authority.encode())
        per_source = Counter(letter.headers["x-dlq-source"] for letter in letters)
        assert len(per_source) == len(poisoned), f"{len(per_source)} of {len(poisoned)} poison records dead-lettered"
        assert max(per_source.values()) == 1, f"dead-lettered more than once while retrying: {per_source.most_common(3)}"

        probed = sorted({e.listing.listing_id for e in phase_b[::10]})
        wrong = await wrong_answers(client, consumer.url, CONSUMER, [authors.newest[i] for i in probed], authors.subjects)
        result.wrong_answers = len(wrong)
        assert not wrong, wrong[:5]
    result.survived = True
    result.notes = (
        f"/readyz 503 after {unready_after:.1f}s, 200 again {ready_after:.1f}s after restart; offsets held for "
        f"{OUTAGE_SECONDS:.0f}s; checks 503 meanwhile; {len(poisoned)} poison records dead-lettered once each"
    )
