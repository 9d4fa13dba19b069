"""Serve a service's ASGI app from N worker processes, each accepting on a socket of its own (SO_REUSEPORT).

uvicorn's `--workers` shares one listening socket among its workers: whichever is awake first accepts, so a few
long-lived connections (a bench's, a merchant's keep-alive pool, a court system's batch client) can all land on one
worker while the others idle (bench/publisher.py measured 174 and 652 CPU ticks for two workers). Here every worker
has its own socket bound to the same port, and the kernel spreads new connections across them by address hash.

The supervisor owns the sockets. A worker that dies is started again on its own socket, so connections the kernel
queued to it meanwhile are served by its successor instead of refused; a worker that keeps dying at start stops the
service with an error rather than restarting forever. SIGTERM or SIGINT stops every worker as uvicorn stops one
(the app's lifespan shutdown runs), then the supervisor exits.

    python -m services.kit.serve services.publishers.court.app:app --port 8001 --workers 2
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

log = logging.getLogger("blacklist_sync.serve")
BACKLOG = 2048  # uvicorn's own default
CHECK_EVERY_S = 0.5
FAST_EXIT_S = 10.0  # a worker that dies this soon after its start counts towards FAST_EXITS
FAST_EXITS = 3  # in a row, for one worker: the service cannot start, stop instead of restarting forever
PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_MARGIN_S = 5.0  # beyond the graceful timeout, before a worker still running is killed


def claim_port(host: str, port: int) -> None:
    """Fail unless host:port is free: SO_REUSEPORT alone would let a second copy of the service (a stale one,
    say) bind beside the first, and the two would split its connections without a word."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port that other sockets with SO_REUSEPORT may bind as well."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _serve(options: dict[str, Any], sock: socket.socket, supervisor: int) -> None:
    """A worker: uvicorn serving the app on the socket it was given (it handles SIGTERM/SIGINT itself)."""
    _stop_with(supervisor)
    uvicorn.Server(uvicorn.Config(**options)).run(sockets=[sock])


def _stop_with(supervisor: int) -> None:
    """Have the kernel send this worker SIGTERM when its supervisor dies, even by SIGKILL (Linux): an orphaned worker
    would keep the port and serve on unsupervised."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d): this worker outlives a killed supervisor", ctypes.get_errno())
    if os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class _Slot:
    sock: socket.socket
    process: BaseProcess | None = None
    started: float = 0.0
    fast_exits: int = 0


@dataclass
class Workers:
    """`count` uvicorn workers of one app on one port, one socket each, kept running until stopped."""

    app: str
    host: str
    port: int
    count: int
    options: dict[str, Any] = field(default_factory=dict)  # further uvicorn.Config keyword arguments
    _slots: list[_Slot] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0), or until a worker keeps dying at start (1)."""
        claim_port(self.host, self.port)
        self._slots = [_Slot(listening_socket(self.host, self.port)) for _ in range(self.count)]
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self._stop.set())
        context = multiprocessing.get_context("spawn")
        code = 0
        try:
            for n, slot in enumerate(self._slots):
                self._start(context, n, slot)
            log.info("serving %s on %s:%d with %d workers, a socket each", self.app, self.host, self.port, self.count)
            while not self._stop.wait(CHECK_EVERY_S):
                if not self._restart_dead(context):
                    code = 1
                    break
        finally:
            self._stop_all()
            for slot in self._slots:
                slot.sock.close()
        return code

    def _start(self, context: Any, n: int, slot: _Slot) -> None:
        options = {"app": self.app, **self.options}
        slot.process = context.Process(target=_serve, args=(options, slot.sock, os.getpid()), name=f"worker-{n}")
        slot.process.start()
        slot.started = time.monotonic()

    def _restart_dead(self, context: Any) -> bool:
        """Start again each worker that exited; False when one keeps dying at start."""
        for n, slot in enumerate(self._slots):
            process = slot.process
            if process is None or process.is_alive():
                continue
            lived = time.monotonic() - slot.started
            slot.fast_exits = slot.fast_exits + 1 if lived < FAST_EXIT_S else 0
            if slot.fast_exits >= FAST_EXITS:
                log.error(
                    "worker %d exited with %s %d times in a row within %.0fs of starting; stopping. "
                    "Its log lines above say why (run the app without --workers to see it alone).",
                    n,
                    process.exitcode,
                    slot.fast_exits,
                    FAST_EXIT_S,
                )
                return False
            log.warning(
                "worker %d (pid %s) exited with %s after %.1fs; starting it again", n, process.pid, process.exitcode, lived
            )
            self._start(context, n, slot)
        return True

    def _stop_all(self) -> None:
        running = [s.process for s in self._slots if s.process is not None and s.process.is_alive()]
        for process in running:
            if process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        graceful = float(self.options.get("timeout_graceful_shutdown") or 0)
        deadline = time.monotonic() + graceful + STOP_MARGIN_S
        for process in running:
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                log.warning("worker pid %s still running %.0fs after SIGTERM; killing it", process.pid, graceful + STOP_MARGIN_S)
                process.kill()
                process.join()


def run_workers(app: str, host: str, port: int, count: int, options: dict[str, Any]) -> int:
    """`Workers(...).run()`, with a port that cannot be had reported in one line with what to check, not a traceback."""
    try:
        return Workers(app, host, port, count, options).run()
    except OSError as exc:
        log.error("cannot listen on %s:%d (%s); is another process using the port?", host, port, exc)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.kit.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("app", help="the app as module:attribute, e.g. services.publishers.court.app:app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2, help="processes, one socket each (default 2: one per core)")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--timeout-graceful-shutdown", type=int, default=10)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    options = {
        "access_log": False,
        "log_level": args.log_level,
        "timeout_graceful_shutdown": args.timeout_graceful_shutdown,
    }
    return run_workers(args.app, args.host, args.port, args.workers, options)


if __name__ == "__main__":
    sys.exit(main())
