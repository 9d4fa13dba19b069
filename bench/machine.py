"""CPU time of the whole machine over a stretch of a bench, from /proc/stat (Linux).

A request to a publisher costs work in several processes that share the box's cores: the service's workers, its
outbox relay, PostgreSQL's backends, the Kafka broker and the load generator itself. What the request costs the
machine is the sum of them all; /proc/stat counts it without having to know which process did what, including
processes that start and exit inside the stretch (a backend, a compaction thread)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STAT = Path("/proc/stat")


@dataclass(frozen=True)
class Usage:
    """What the machine did over a stretch: since boot for a sample, between two samples for a stretch of a bench."""

    busy_s: float  # user, nice, system, irq and softirq of every CPU
    idle_s: float  # idle and iowait: time no process of ours wanted a CPU (steal, the host's, is neither)

    @property
    def busy_fraction(self) -> float:
        """Share of the CPUs' time spent running anything: near 1, the stretch was bound by CPU."""
        counted = self.busy_s + self.idle_s
        return self.busy_s / counted if counted > 0 else float("nan")

    def us_per(self, units: int) -> float:
        """CPU microseconds of the whole machine per unit of work (a request, a listing) done in the stretch."""
        return self.busy_s / units * 1e6 if units > 0 else float("nan")


def sample(stat: Path = STAT) -> Usage:
    """The machine's CPU counters now, its usage since boot (Linux only: the bench reads /proc elsewhere too, for
    memory and workers)."""
    fields = stat.read_text().split("\n", 1)[0].split()
    if len(fields) < 8 or fields[0] != "cpu":
        raise ValueError(f"{stat} does not start with the machine's cpu line: {' '.join(fields[:3])!r}")
    user, nice, system, idle, iowait, irq, softirq = (int(x) for x in fields[1:8])
    tick = os.sysconf("SC_CLK_TCK")
    return Usage((user + nice + system + irq + softirq) / tick, (idle + iowait) / tick)


def between(start: Usage, end: Usage) -> Usage:
    return Usage(end.busy_s - start.busy_s, end.idle_s - start.idle_s)


class Meter:
    """The machine's usage over a stretch: `meter = Meter()` at its start, `meter.stop()` at its end."""

    def __init__(self) -> None:
        self.start = sample()

    def stop(self) -> Usage:
        return between(self.start, sample())
