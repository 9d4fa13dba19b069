"""Background processes of the local stack: pid files, liveness, stopping, ports, log tails."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class LocalInfraError(RuntimeError):
    """`up`/`down` could not do what was asked; the message says why and where to look."""


def read_pid(pid_file: Path) -> int | None:
    """The pid on the first line of pid_file (PostgreSQL's postmaster.pid has more lines after it)."""
    try:
        return int(pid_file.read_text().splitlines()[0].strip())
    except (FileNotFoundError, IndexError, ValueError):
        return None


def live_pid(pid_file: Path, marker: str) -> int | None:
    """The pid named in pid_file if that process still runs and its command line contains marker.

    The marker check keeps a recycled pid (another program now holding it) from being taken for ours.
    """
    pid = read_pid(pid_file)
    if pid is None or not alive(pid):
        return None
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    return pid if marker in command_line else None


def alive(pid: int) -> bool:
    """True while pid runs; reaps it first if it is our own exited child (a zombie is not alive)."""
    with suppress(ChildProcessError):  # not our child: its parent reaps it
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def terminate(pid: int, timeout_s: float) -> bool:
    """SIGTERM, wait up to timeout_s, then SIGKILL. True if it had to be killed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    if wait_until(lambda: not alive(pid), timeout_s):
        return False
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), 10)
    return True


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_EPHEMERAL_RANGE = (32768, 60999)


def ephemeral_range(source: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The ports the kernel hands outgoing connections as their local port (Linux's default where unreadable).

    A server port in this range can be taken by any outgoing connection before the server binds it, with nothing
    listening there: the local stack's ports and the ports tests and benches pick lie below it."""
    try:
        low, high = (int(n) for n in source.read_text().split())
    except (OSError, ValueError):
        return LINUX_EPHEMERAL_RANGE
    return low, high


def free_port(pair: bool = False, floor: int = 10000) -> int:
    """A port below the ephemeral range that nothing has bound now (and the next one too, for Kafka's controller,
    when `pair`), for a server about to start. Falls back to a port the kernel picks if the range starts too low
    to leave room below it."""
    low, _ = ephemeral_range()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(floor, low - 1) if low - 1 > floor else _kernel_pick()
        if bindable(port) and (not pair or bindable(port + 1)):
            return port
    raise RuntimeError(f"no free {'pair of ports' if pair else 'port'} found on 127.0.0.1 below {low}")


def _kernel_pick() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"


def rotate(log: Path, max_bytes: int) -> None:
    """Keep one previous generation of a log that has grown past max_bytes (checked at each start)."""
    if log.exists() and log.stat().st_size > max_bytes:
        log.replace(log.with_name(log.name + ".1"))


def write_pid(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid}\n")


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run coro to completion from sync code, even when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="localinfra") as pool:
        return pool.submit(asyncio.run, coro).result()


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return bool(condition())


def is_root() -> bool:
    return os.geteuid() == 0


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Silence a library's logger (all but CRITICAL) for the duration of a block."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)
