"""The publisher memory figure reads a `--workers N` service's workers, not its supervisor nor the resource tracker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.stack import largest_worker_status_kb, vm_status_kb, worker_pids

# A supervisor like uvicorn's: it spawns two workers with multiprocessing's spawn start method (which also starts
# a resource tracker process), prints their pids, and waits; each worker holds 64 MB (far more than the supervisor)
# and sleeps until it is killed.
SUPERVISOR = """
import multiprocessing, sys, time
BIG = 64 << 20
def work():
    held = b"x" * BIG  # written, so resident (a zeroed allocation may not be)
    time.sleep(60)
if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=work) for _ in range(2)]
    for w in workers:
        w.start()
    print(" ".join(str(w.pid) for w in workers), flush=True)
    time.sleep(60)
"""
TIMEOUT_S = 30.0
WORKER_KB = 64 << 10


def _held(supervisor: int, spawned: list[int]) -> bool:
    return worker_pids(supervisor) == spawned and all(vm_status_kb(p)["VmHWM"] >= WORKER_KB for p in spawned)


def test_worker_pids_are_the_spawned_workers_and_the_largest_peak_is_one_of_theirs(tmp_path: Path) -> None:
    script = tmp_path / "supervisor.py"  # a file: spawned workers import their target from it
    script.write_text(SUPERVISOR)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    spawned: list[int] = []
    try:
        assert process.stdout is not None
        spawned = sorted(int(p) for p in process.stdout.readline().split())
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and not _held(process.pid, spawned):
            time.sleep(0.1)  # the workers start, name spawn_main in their command line, then allocate
        assert worker_pids(process.pid) == spawned
        largest = largest_worker_status_kb(process.pid)["VmHWM"]
        assert largest >= WORKER_KB, "the peak read is a worker's (each holds 64 MB), not the supervisor's"
        assert vm_status_kb(process.pid)["VmHWM"] < WORKER_KB
        assert largest == max(vm_status_kb(p)["VmHWM"] for p in spawned)
    finally:
        for pid in spawned:  # the workers outlive a killed supervisor
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.kill()
        process.wait(TIMEOUT_S)


def test_a_process_without_workers_is_its_own_worker() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert worker_pids(process.pid) == [process.pid]
        before = vm_status_kb(process.pid)["VmHWM"]
        # The process's own peak (it may still grow while the interpreter starts, never shrink).
        assert before <= largest_worker_status_kb(process.pid)["VmHWM"] <= vm_status_kb(process.pid)["VmHWM"]
    finally:
        process.kill()
        process.wait(TIMEOUT_S)
