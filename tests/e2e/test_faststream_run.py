"""Services run the FastStream way (`faststream run <module>:stream`): they serve, and SIGTERM mid-load loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import asyncpg
import httpx
import pytest

from schemas.catalogue import schema_name
from schemas.events import ListingEvent
from services.consumers.registry import POLICIES
from tests.conftest import Infra
from tests.faults import kafka_probe
from tests.faults.copies import actual_copy, compare, expected_copy
from tests.faults.history import TOPIC, History, produce, signing_key
from tests.integration.helpers import court_listing, fresh_person, wait_for_answer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
PORT_OFFSET = int(os.environ.get("BLACKLIST_SYNC_PORT_OFFSET", "0"))
AIRLINE_PORT = 8900 + PORT_OFFSET
COURT_PORT = 8901 + PORT_OFFSET
AIRLINE = "services.consumers.airline.app:stream"
COURT = "services.publishers.court.app:stream"
READY_TIMEOUT = 30.0
EXIT_BOUND = 20.0  # SIGTERM to exit: finishing one batch of 2000 records takes well under this
PRODUCE_CHUNK = 200
CLEAN_EXIT = (0, -signal.SIGTERM)


@asynccontextmanager
async def faststream_run(
    infra: Infra, target: str, port: int, log: Path, workers: int = 1
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`faststream run target` as a process of its own, ready on /readyz; killed on the way out if still alive
    (its whole session: with workers, the supervisor's children too)."""
    process = spawn(infra, target, port, log, workers)
    try:
        await wait_ready(f"http://127.0.0.1:{port}", process, log)
        yield process
    finally:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def spawn(infra: Infra, target: str, port: int, log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    env = os.environ | infra.env()
    cmd = [sys.executable, "-m", "faststream", "run", target, "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


async def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{url} exited with {process.returncode}: {read_log(log)[-2000:]}")
            with suppress(httpx.HTTPError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} not ready after {READY_TIMEOUT}s: {read_log(log)[-2000:]}")
            await asyncio.sleep(0.2)


async def wait_exit(process: subprocess.Popen[bytes], bound: float) -> float:
    """Seconds until the process exits; fails when it is still running after `bound`."""
    started = time.monotonic()
    while process.poll() is None:
        if time.monotonic() - started > bound:
            raise AssertionError(f"still running {bound}s after SIGTERM")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def copy_rows(db: asyncpg.Connection, authority: str) -> int:
    sql = f'SELECT count(*) FROM "{schema_name("airline")}".listings WHERE listing_id LIKE $1'
    return int(await db.fetchval(sql, f"{authority}:%"))


async def produce_in_chunks(infra: Infra, events: Sequence[ListingEvent], done: Callable[[int], None]) -> None:
    """Send the history in order, a chunk at a time, so records keep arriving while the consumer applies."""
    key = signing_key(infra.home)
    for start in range(0, len(events), PRODUCE_CHUNK):
        await produce(infra.bootstrap_servers, key, events[start : start + PRODUCE_CHUNK])
        done(start + PRODUCE_CHUNK)


async def test_faststream_run_serves_checks_and_applies_court_listings(infra: Infra, tmp_path: Path) -> None:
    async with (
        faststream_run(infra, AIRLINE, AIRLINE_PORT, tmp_path / "airline.log"),
        faststream_run(infra, COURT, COURT_PORT, tmp_path / "court.log"),
        httpx.AsyncClient(timeout=10) as client,
    ):
        airline, court = f"http://127.0.0.1:{AIRLINE_PORT}", f"http://127.0.0.1:{COURT_PORT}"
        for url in (airline, court):
            assert (await client.get(f"{url}/healthz")).json() == {"status": "ok"}
            assert (await client.get(f"{url}/readyz")).json()["ready"] is True
        person = fresh_person()
        await wait_for_answer(client, airline, person, "board_flight", allowed=True, timeout=5)
        listing = await court_listing(client, {"court": court}, person, restrictions=["FLIGHT"])
        answer = await wait_for_answer(client, airline, person, "board_flight", allowed=False, timeout=30)
        assert listing["listing_id"] in {b["listing_id"] for b in answer["blocking"]}
    for log in ("airline.log", "court.log"):  # uvicorn's startup and access lines included
        lines = read_log(tmp_path / log).splitlines()
        assert any("Application startup complete." in line for line in lines), log
        not_json = [line for line in lines if line.strip() and not is_json_object(line)]
        assert not not_json, f"{log}: {not_json[:5]}"


async def test_sigterm_mid_load_exits_promptly_and_loses_no_listing(infra: Infra, tmp_path: Path) -> None:
    authors = History.start(uuid.uuid4().hex[:10])
    events = authors.mixed(2500)
    produced = [0]
    db = await asyncpg.connect(infra.database_url)
    try:
        async with faststream_run(infra, AIRLINE, AIRLINE_PORT, tmp_path / "airline-1.log") as first:
            producing = asyncio.create_task(produce_in_chunks(infra, events, lambda n: produced.__setitem__(0, n)))
            while await copy_rows(db, authors.authority) < 300:
                assert not producing.done() or producing.exception() is None
                await asyncio.sleep(0.02)
            first.send_signal(signal.SIGTERM)
            sent_at_sigterm = produced[0]
            took = await wait_exit(first, EXIT_BOUND)
            log = read_log(tmp_path / "airline-1.log")
            # uvicorn re-raises the signal after a graceful shutdown, so a clean exit reads -SIGTERM (or 0).
            assert first.returncode in CLEAN_EXIT, log[-2000:]
            assert "Application shutdown complete." in log, log[-2000:]
            await producing
        assert sent_at_sigterm < len(events), "the whole history was sent before SIGTERM: not mid-load"
        held_after_stop = await copy_rows(db, authors.authority)
        async with faststream_run(infra, AIRLINE, AIRLINE_PORT, tmp_path / "airline-2.log"):
            ends = await kafka_probe.end_offsets(infra.bootstrap_servers, TOPIC)
            await kafka_probe.wait_committed(infra.bootstrap_servers, "airline", TOPIC, ends, 45)
        diff = compare(
            expected_copy(POLICIES["airline"], authors.newest.values()), await actual_copy(db, "airline", authors.authority)
        )
        assert not diff, f"airline copy differs after SIGTERM and restart: {diff.describe()}"
        # Not asserted (Pipeline.close races a handler awaiting the same batch; see the issue note): reported instead.
        late = log.count("offset commit failed after apply")
        print(f"SIGTERM after {sent_at_sigterm}/{len(events)} events sent; exit in {took:.2f}s; {held_after_stop} rows;")
        print(f"applied batches whose offsets were not committed at shutdown: {late}")
    finally:
        await db.close()


async def test_two_workers_split_the_partitions_and_build_the_copy_one_process_would(infra: Infra, tmp_path: Path) -> None:
    """`--workers 2`: both processes join the consumer's group and apply into the one copy side by side, and the copy
    ends as record-by-record application of the whole history gives (amends and revokes included)."""
    authors = History.start(uuid.uuid4().hex[:10])
    events = authors.mixed(2500)
    # A consumer killed by an earlier test stays a member until its session times out: wait until none is left.
    await kafka_probe.wait_group(infra.bootstrap_servers, "airline", lambda g: g.members == 0, 30)
    db = await asyncpg.connect(infra.database_url)
    try:
        async with faststream_run(infra, AIRLINE, AIRLINE_PORT, tmp_path / "airline.log", workers=2) as supervisor:
            both = lambda g: g.members == 2 and g.state == "Stable"  # noqa: E731
            await kafka_probe.wait_group(infra.bootstrap_servers, "airline", both, 30)
            await produce_in_chunks(infra, events, lambda _: None)
            ends = await kafka_probe.end_offsets(infra.bootstrap_servers, TOPIC)
            await kafka_probe.wait_committed(infra.bootstrap_servers, "airline", TOPIC, ends, 45)
            assert (await kafka_probe.group_state(infra.bootstrap_servers, "airline")).members == 2, "a worker left"
            assert supervisor.poll() is None, read_log(tmp_path / "airline.log")[-2000:]
        diff = compare(
            expected_copy(POLICIES["airline"], authors.newest.values()), await actual_copy(db, "airline", authors.authority)
        )
        assert not diff, f"airline copy differs with two workers: {diff.describe()}"
    finally:
        await db.close()
