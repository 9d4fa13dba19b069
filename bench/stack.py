"""The bench's own stack: Kafka and PostgreSQL from `blacklist-sync up` in a scratch home on free ports, torn down after.

The publisher, check API, propagation, memory and rebuild benches write to the contract's topics and schemas
(a compacted topic and an append-only register cannot be cleaned afterwards), so they run here, never on
the stack the bench was pointed at."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import progress
from services import runner
from services.kit.settings import Settings
from services.localinfra.envfile import parse_env
from services.localinfra.procs import free_port

# What would point a child at the stack the bench was run against, or at its Kafka identity.
STRIPPED = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    "AUTHORITY_KEYRING",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "BLACKLIST_SYNC_KAFKA_PORT",
    "BLACKLIST_SYNC_PG_PORT",
)
UP_TIMEOUT_S = 300.0


@dataclass
class ScratchStack:
    home: Path
    base_env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def boot(cls, parent_home: Path) -> ScratchStack:
        """Start `blacklist-sync up` for a new scratch home in the background; `wait()` for it."""
        home = parent_home / "bench" / f"scratch-{uuid.uuid4().hex[:8]}"
        home.mkdir(parents=True)
        base = {k: v for k, v in os.environ.items() if k not in STRIPPED}
        base |= {
            "BLACKLIST_SYNC_HOME": str(home),
            "BLACKLIST_SYNC_KAFKA_PORT": str(free_port(pair=True)),
            "BLACKLIST_SYNC_PG_PORT": str(free_port()),
        }
        stack = cls(home, base, home / "up.log")
        progress(
            f"scratch stack: starting Kafka :{base['BLACKLIST_SYNC_KAFKA_PORT']} and PostgreSQL "
            f":{base['BLACKLIST_SYNC_PG_PORT']} in {home}"
        )
        with stack.log.open("wb") as log:
            stack.process = subprocess.Popen(_cli("up"), env=base, stdout=log, stderr=subprocess.STDOUT)
        return stack

    def wait(self, timeout: float = UP_TIMEOUT_S) -> None:
        if self.env:
            return
        assert self.process is not None
        started = time.monotonic()
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise TimeoutError(f"scratch stack not up after {timeout:.0f}s; see {self.log}") from None
        if code != 0:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"scratch stack `up` failed (exit {code}): {' '.join(tail)}; see {self.log}")
        self.env = {**self.base_env, **parse_env((self.home / "env").read_text())}
        progress(f"scratch stack: up (waited {time.monotonic() - started:.1f}s)")

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """os.environ pointing at this stack only, for Settings.from_env and for the processes started meanwhile."""
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def settings(self) -> Settings:
        with self.environment():
            return Settings.from_env()

    def start_services(
        self, names: Iterable[str], timeout: float = 120.0, workers: Mapping[str, int] | None = None
    ) -> dict[str, runner.RunningService]:
        """The named services as real processes on free ports, ready (readyz 200) when this returns; `workers`
        gives a service that many uvicorn workers (default one)."""
        names = list(names)
        counts = {n: (workers or {}).get(n, 1) for n in names}
        running: list[runner.RunningService] = []
        with self.environment():
            for count in sorted(set(counts.values())):
                group = [n for n in names if counts[n] == count]
                ports = {n: free_port() for n in group}
                running += runner.start(group, self.home / "logs" / "services", ports=ports, workers=count)
        try:
            runner.wait_ready(running, timeout=timeout, progress=progress)
        except BaseException:
            runner.stop(running)
            raise
        return {r.spec.name: r for r in running}

    def down(self) -> None:
        """Stop what `up` started in the scratch home and delete the home; safe after a failed boot."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(30)
        with (self.home / "down.log").open("wb") as log:
            done = subprocess.run(_cli("down"), env=self.base_env, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=120)
        if done.returncode != 0:
            progress(f"scratch stack: `down` exited {done.returncode}; left {self.home} for inspection")
            return
        shutil.rmtree(self.home, ignore_errors=True)
        progress("scratch stack: stopped and removed")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


def vm_status_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak resident) and VmRSS (resident now) of a process, in kB, from /proc/<pid>/status."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(rest.split()[0])
    return fields


def worker_pids(pid: int) -> list[int]:
    """The uvicorn workers of a supervisor started with `--workers N` (its children that run
    multiprocessing's spawn_main; the resource tracker it also starts is not one); [pid] itself without workers."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended while the table was read
            continue
        # The parent pid is the second field after the command name, which is in parentheses and may hold spaces.
        if int(stat.rpartition(")")[2].split()[1]) == pid and b"spawn_main" in cmdline:
            children.append(int(entry.name))
    return sorted(children) or [pid]


def largest_worker_status_kb(pid: int) -> dict[str, int]:
    """vm_status_kb of the process serving requests: the one without workers, else the worker with the largest peak
    (the supervisor only forwards signals and restarts workers; its own memory is not the service's)."""
    return max((vm_status_kb(p) for p in worker_pids(pid)), key=lambda fields: fields["VmHWM"])
