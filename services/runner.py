"""Run services as child processes (uvicorn), wait for them to be ready, and stop them cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.topology import SERVICES, ServiceSpec


@dataclass
class RunningService:
    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start(
    names: Iterable[str],
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    ports: Mapping[str, int] | None = None,
    workers: int = 1,
) -> list[RunningService]:
    """Start each service as a uvicorn process (with `workers` > 1, a supervisor and that many workers, a listening
    socket each)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    running = []
    for name in names:
        spec = SERVICES[name]
        port = (ports or {}).get(name, spec.port)
        log_path = log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        # One worker: uvicorn itself. Several: services.kit.serve, a socket per worker (SO_REUSEPORT), so that a
        # client's few keep-alive connections are spread over the workers instead of landing on one.
        server = ["services.kit.serve", spec.app, "--workers", str(workers)] if workers > 1 else ["uvicorn", spec.app]
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                *server,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *([] if workers > 1 else ["--no-access-log"]),
                "--log-level",
                "warning",
                "--timeout-graceful-shutdown",
                "10",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        running.append(RunningService(spec, process, port, log_path))
    return running


def wait_ready(running: Iterable[RunningService], timeout: float = 90.0, progress: Callable[[str], None] = print) -> None:
    """Poll /readyz of each service until all answer 200; a service that died or stays unready is an error."""
    pending = {r.spec.name: r for r in running}
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while pending:
            for name, r in list(pending.items()):
                if r.process.poll() is not None:
                    raise RuntimeError(f"service {name} exited with {r.process.returncode}; see {r.log_path}")
                try:
                    if client.get(f"{r.url}/readyz").status_code == 200:
                        progress(f"  {name} ready on :{r.port}")
                        del pending[name]
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(pending)}; see logs in {r.log_path.parent}")
            if pending:
                time.sleep(0.3)


def stop(running: Iterable[RunningService], timeout: float = 15.0) -> None:
    running = list(running)
    for r in running:
        if r.process.poll() is None:
            r.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for r in running:
        try:
            r.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            r.process.kill()
            r.process.wait()
