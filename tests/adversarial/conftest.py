"""Fixtures of the adversarial suite: an airline consumer process of our own (for its pid), keys, a producer, the DLQ."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from services import runner
from services.topology import PORT_OFFSET
from tests import kafka_clients
from tests.adversarial.probes import SUMMARY, Victim, publish_listing, wait_until_blocked
from tests.adversarial.records import CONSUMER, DlqWatcher, Keys
from tests.conftest import Infra


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("adversarial records")
        for line in lines:
            terminalreporter.write_line(line)


# 8100 is no contract port, so this consumer can run beside the `services` fixture's own airline on 8101.
ADVERSARIAL_PORT = 8100 + PORT_OFFSET


@pytest.fixture(scope="package")
def consumer_process(infra: Infra) -> Iterator[runner.RunningService]:
    """The airline consumer as a real process, started here so the tests know its pid (RSS) and its /metrics."""
    running = runner.start(
        [CONSUMER], infra.home / "logs" / "tests-adversarial", env=infra.env(), ports={CONSUMER: ADVERSARIAL_PORT}
    )
    try:
        runner.wait_ready(running, timeout=120, progress=lambda _: None)
        yield running[0]
    finally:
        runner.stop(running)


@pytest.fixture(scope="package")
def keys(infra: Infra) -> Keys:
    return Keys.load(infra.home / "keys")


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    client = kafka_clients.producer(infra.bootstrap_servers, linger_ms=5)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def dlq(infra: Infra, consumer_process: runner.RunningService) -> AsyncIterator[DlqWatcher]:
    watcher = DlqWatcher(infra.bootstrap_servers)
    await watcher.start()
    try:
        yield watcher
    finally:
        await watcher.stop()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def victim(keys: Keys, producer: AIOKafkaProducer, consumer_process: runner.RunningService) -> Victim:
    """A live listing, applied before any attack, that forged and mis-keyed records then try to revoke or change."""
    listing_id, subject = await publish_listing(producer, keys, "victim")
    await wait_until_blocked(consumer_process.url, subject)
    return Victim(listing_id, subject)
