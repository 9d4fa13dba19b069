"""`--workers N`: each worker accepts on a socket of its own, so fresh connections reach every worker; a dead worker is
started again; SIGTERM stops every worker through its lifespan; a taken port or a broken app is an error, not a hang."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bench.stack import worker_pids
from services.localinfra.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.unit.serve_app:app"
CONNECTIONS = 24  # fresh connections: all of them hashed onto one of two sockets would happen once in 2**23 runs
TIMEOUT_S = 30.0


@contextmanager
def supervisor(
    tmp_path: Path, app: str = APP, port: int | None = None, workers: int = 2
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = port or free_port()
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    log = (tmp_path / "serve.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.kit.serve", app, "--port", str(port), "--workers", str(workers)],
        cwd=ROOT,
        env={**os.environ, "SERVE_APP_MARKS": str(marks)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def answering_pids(port: int, connections: int = CONNECTIONS) -> set[int]:
    """The worker pid each of `connections` fresh connections was served by."""
    pids = set()
    for _ in range(connections):
        with httpx.Client(timeout=5) as client:  # a new client: a new connection, a new source port
            pids.add(int(client.get(f"http://127.0.0.1:{port}/").text))
    return pids


def every_worker_answers(process: subprocess.Popen[bytes], port: int, workers: int = 2) -> bool:
    """Both spawned and serving (a worker still starting dies of SIGTERM without its lifespan, as any process would)."""
    pids = worker_pids(process.pid)
    return len(pids) == workers and answering_pids(port) == set(pids)


def wait_for(condition: Callable[[], object], what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f}s")
        time.sleep(0.1)


def test_fresh_connections_reach_every_worker_and_sigterm_stops_each_through_its_lifespan(tmp_path: Path) -> None:
    with supervisor(tmp_path) as (process, port):
        wait_for(lambda: every_worker_answers(process, port), "two workers answering")
        workers = set(worker_pids(process.pid))
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT_S) == 0
        assert {int(p.name) for p in (tmp_path / "marks").iterdir()} == workers, "a worker skipped its lifespan shutdown"
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_killed_worker_is_started_again_and_the_port_keeps_answering(tmp_path: Path) -> None:
    with supervisor(tmp_path) as (process, port):
        wait_for(lambda: every_worker_answers(process, port), "two workers answering")
        first, second = worker_pids(process.pid)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: first not in worker_pids(process.pid) and len(worker_pids(process.pid)) == 2, "a new worker")
        (successor,) = set(worker_pids(process.pid)) - {second}
        wait_for(lambda: answering_pids(port) == {second, successor}, "both workers answering again")
        assert process.poll() is None


def test_workers_of_a_supervisor_killed_by_sigkill_stop_instead_of_serving_on_orphaned(tmp_path: Path) -> None:
    with supervisor(tmp_path) as (process, port):
        wait_for(lambda: every_worker_answers(process, port), "two workers answering")
        workers = worker_pids(process.pid)
        process.kill()
        process.wait()
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), "the orphaned workers gone")
        assert {int(p.name) for p in (tmp_path / "marks").iterdir()} == set(workers), "stopped without their lifespan"


def test_a_port_already_taken_is_refused_with_a_reason(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with supervisor(tmp_path, port=taken.getsockname()[1]) as (process, _):
            assert process.wait(TIMEOUT_S) == 1
    assert "cannot listen on 127.0.0.1" in (tmp_path / "serve.log").read_text()


@pytest.mark.timeout(90)
def test_an_app_that_cannot_start_stops_the_supervisor_instead_of_restarting_forever(tmp_path: Path) -> None:
    with supervisor(tmp_path, app="tests.unit.serve_app:missing", workers=1) as (process, _):
        assert process.wait(60) == 1
    assert "times in a row" in (tmp_path / "serve.log").read_text()
