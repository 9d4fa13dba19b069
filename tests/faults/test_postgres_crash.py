"""PostgreSQL crashes (an immediate stop) while a consumer applies a stream: the consumer commits asynchronously, so
the crash may take its last transactions with it; none of their offsets was committed, the consumer applies them
again once the server is back, and the copy ends exact with every version written once."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest

from services import localinfra
from services.kit.signing import SigningKey
from services.runner import RunningService
from tests.conftest import Infra
from tests.faults import kafka_probe
from tests.faults.conftest import FaultResult
from tests.faults.copies import assert_exact_copy, wrong_answers
from tests.faults.history import TOPIC, History, Sent, produce, signing_key
from tests.faults.processes import Processes, events_applied
from tests.faults.test_postgres_outage import quiet, wait_ready_status

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]
CONSUMER = "airline"
CHUNKS, CHUNK_EVENTS = 20, 200
LOST_NOTICE = "PostgreSQL restarted after it was committed"


async def test_postgres_crash_while_applying_loses_nothing_once_the_consumer_has_applied_again(
    stack: Infra, processes: Processes, run: str, fault: list[FaultResult]
) -> None:
    result = FaultResult("crash PostgreSQL (immediate stop) while a consumer applies a stream, start it again", events=0)
    fault.append(result)
    authors = History.start(run)
    key = signing_key(stack.home)
    bootstrap = stack.bootstrap_servers
    (consumer,) = await processes.start(CONSUMER)
    sent = await produce(bootstrap, key, authors.mixed(600))
    await kafka_probe.wait_committed(bootstrap, CONSUMER, TOPIC, await kafka_probe.end_offsets(bootstrap, TOPIC), 45)

    logged_before = consumer.log_path.read_text(errors="replace").count(LOST_NOTICE)  # the log may hold earlier runs'
    async with httpx.AsyncClient(timeout=10) as client:
        before = await events_applied(client, consumer, "applied") + await events_applied(client, consumer, "no_op")
        stream = asyncio.create_task(produce_spread(bootstrap, key, authors, CHUNKS))
        # The server dies once the consumer has applied part of the stream: mid-way, transactions committing.
        applied_at_crash = await wait_applied(client, consumer, before + CHUNK_EVENTS)
        await asyncio.to_thread(localinfra.stop_postgres, stack.home, quiet, "immediate")
        streamed = await stream
        sent += streamed
        await asyncio.to_thread(localinfra.start_postgres, stack.home, quiet)
        await wait_ready_status(client, consumer, 200, 30)
        assert consumer.process.poll() is None, "the consumer died with its database"
        sent += await produce(bootstrap, key, authors.churn(300))
        result.events = len(sent)
        await kafka_probe.wait_committed(bootstrap, CONSUMER, TOPIC, await kafka_probe.end_offsets(bootstrap, TOPIC), 60)

        db = await asyncpg.connect(stack.database_url)
        try:
            await assert_exact_copy(db, CONSUMER, authors, result)
        finally:
            await db.close()

        probed = sorted(authors.newest)[::25]
        wrong = await wrong_answers(client, consumer.url, CONSUMER, [authors.newest[i] for i in probed], authors.subjects)
        result.wrong_answers = len(wrong)
        assert not wrong, wrong[:5]
    rewound = consumer.log_path.read_text(errors="replace").count(LOST_NOTICE) - logged_before
    result.survived = True
    result.notes = (
        f"crashed after {applied_at_crash - before:,} events of a {len(streamed):,}-event stream were applied;"
        f" the consumer found transactions the server may have lost {rewound} time(s), and applied them again"
    )


async def produce_spread(bootstrap: str, key: SigningKey, authors: History, chunks: int) -> list[Sent]:
    """The stream in chunks a little apart, so that the consumer is applying it when the server dies."""
    sent: list[Sent] = []
    for _ in range(chunks):
        sent += await produce(bootstrap, key, authors.churn(CHUNK_EVENTS))
        await asyncio.sleep(0.05)
    return sent


async def wait_applied(client: httpx.AsyncClient, consumer: RunningService, count: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        seen = await events_applied(client, consumer, "applied") + await events_applied(client, consumer, "no_op")
        if seen >= count:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"the consumer applied {seen} events in {timeout}s, wanted {count}")
        await asyncio.sleep(0.01)
