"""The services of a fault test as real processes: start, kill -9, restart, stop; and what they report."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services import runner
from services.runner import RunningService
from services.topology import SERVICES

READY_TIMEOUT = 60.0
SECOND_INSTANCE_SHIFT = 50  # a second instance of a consumer listens 50 ports above the first


@dataclass
class Processes:
    """Every process a test started, so that teardown stops the survivors whatever happened."""

    env: Mapping[str, str]
    log_dir: Path
    started: list[RunningService] = field(default_factory=list)

    async def start(self, *names: str, instance: int = 0) -> list[RunningService]:
        """Start services (instance 1: a second member of the same consumer group) and wait until each is ready."""
        ports = {n: SERVICES[n].port + instance * SECOND_INSTANCE_SHIFT for n in names}
        log_dir = self.log_dir / f"instance-{instance}"
        running = runner.start(names, log_dir, env=dict(self.env), ports=ports)
        self.started += running
        await asyncio.to_thread(runner.wait_ready, running, READY_TIMEOUT, lambda _: None)
        return running

    async def restart(self, service: RunningService) -> RunningService:
        instance = (service.port - service.spec.port) // SECOND_INSTANCE_SHIFT
        (again,) = await self.start(service.spec.name, instance=instance)
        return again

    def stop_all(self) -> None:
        runner.stop([r for r in self.started if r.process.poll() is None])


def kill_9(service: RunningService) -> None:
    """SIGKILL: no shutdown hook runs, no offset is committed, no transaction is finished."""
    service.process.send_signal(signal.SIGKILL)
    try:
        service.process.wait(10)
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - SIGKILL cannot be caught
        raise AssertionError(f"{service.spec.name} survived SIGKILL") from exc


async def scrape(client: httpx.AsyncClient, service: RunningService) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The service's Prometheus samples: (name, sorted labels) -> value."""
    response = await client.get(f"{service.url}/metrics")
    response.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def events_applied(client: httpx.AsyncClient, service: RunningService, outcome: str) -> int:
    """blacklist_events_applied_total{outcome=...} of this process since it started."""
    samples = await scrape(client, service)
    key = ("blacklist_events_applied_total", (("consumer", service.spec.name), ("outcome", outcome)))
    return int(samples.get(key, 0.0))
