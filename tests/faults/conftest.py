"""Fault-test fixtures: the local Kafka and PostgreSQL restored after each test, the services it starts as processes,
database instruments, and the table of faults tried (printed at the end of the run)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from schemas.catalogue import CONSUMERS
from services import localinfra
from tests.conftest import Infra
from tests.faults import instruments, kafka_probe
from tests.faults.processes import Processes

RESULTS = pytest.StashKey[list["FaultResult"]]()
GROUP_IDLE_TIMEOUT = 20.0  # a member killed by the previous test leaves after its 10 s session timeout


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: kills and outages of real processes, Kafka and PostgreSQL")
    config.stash[RESULTS] = []


@dataclass
class FaultResult:
    """One row of the closing table: what was done, how much went through it, and what went wrong."""

    fault: str
    events: int
    survived: bool = False
    lost: int = -1
    wrong_rows: int = -1
    wrong_answers: int = -1
    notes: str = ""


@pytest.fixture
def fault(request: pytest.FixtureRequest) -> Iterator[list[FaultResult]]:
    """Rows a test fills in; a row whose test failed is reported as not survived."""
    rows: list[FaultResult] = []
    yield rows
    failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
    for row in rows:
        row.survived = row.survived and not failed
        request.config.stash[RESULTS].append(row)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    rows = config.stash.get(RESULTS, [])
    if not rows:
        return
    terminalreporter.section("faults tried")
    terminalreporter.write_line("| fault | events | survived | events lost | wrong rows | wrong answers | notes |")
    terminalreporter.write_line("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = (r.fault, r.events, "yes" if r.survived else "NO", r.lost, r.wrong_rows, r.wrong_answers, r.notes)
        terminalreporter.write_line("| " + " | ".join(str(c) for c in cells) + " |")


@pytest.fixture
def stack(infra: Infra) -> Iterator[Infra]:
    """The local stack, left running after the test whatever the test stopped."""
    if not localinfra.is_running(infra.home):
        pytest.skip(f"fault tests stop and start the Kafka and PostgreSQL that `blacklist-sync up` runs in {infra.home}")
    try:
        yield infra
    finally:
        restore(infra)


def restore(infra: Infra) -> None:
    """Start again whatever a failed test left stopped (a no-op for what runs)."""
    localinfra.start_postgres(infra.home, progress=lambda _: None)
    localinfra.start_kafka(infra.home, progress=lambda _: None)


@pytest.fixture
async def db(stack: Infra) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.database_url)
    try:
        yield conn
    finally:
        if not conn.is_closed():
            await conn.close()


@pytest.fixture
async def audit(stack: Infra) -> AsyncIterator[None]:
    """Audit and gate triggers on every consumer's copy and on the court outbox, removed afterwards."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        await instruments.install(conn, CONSUMERS, outbox_of=("court",))
    finally:
        await conn.close()
    yield
    conn = await asyncpg.connect(stack.database_url)
    try:
        await instruments.uninstall(conn, CONSUMERS, outbox_of=("court",))
    finally:
        await conn.close()


@pytest.fixture
async def processes(stack: Infra, audit: None, request: pytest.FixtureRequest) -> AsyncIterator[Processes]:
    """Services started by the test; the consumer groups must have no member left from before it."""
    for group in CONSUMERS:
        try:
            await kafka_probe.wait_group(stack.bootstrap_servers, group, lambda g: g.members == 0, GROUP_IDLE_TIMEOUT, poll=0.5)
        except AssertionError as exc:
            # The session-wide `services` fixture of the integration tests keeps every group busy until it ends.
            raise AssertionError(
                f"{exc}: another {group} consumer runs; run tests/faults in a pytest session of its own"
            ) from exc
    log_dir = stack.home / "logs" / "faults" / request.node.name
    started = Processes(env=stack.env(), log_dir=log_dir)
    try:
        yield started
    finally:
        restore(stack)  # before the audit triggers are removed, which needs PostgreSQL
        started.stop_all()


@pytest.fixture
def run() -> str:
    """A fresh id naming this test's authority (court.faults-<run>), so its listings are its own."""
    return uuid.uuid4().hex[:8]
