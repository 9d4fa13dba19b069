"""Probes of the consumer under attack: its check answers, its progress through the topics, its memory, its counters."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from schemas.catalogue import LISTING_TOPICS
from tests.adversarial.records import CONSUMER, COURT, COURT_TOPIC, Keys, Record, encode, event_document, produce, signed
from tests.conftest import Infra
from tests.integration.helpers import fresh_person, wait_caught_up

# Lines each module adds for the closing figures (records tried, dead-lettered by reason, applied wrongly, memory).
SUMMARY = pytest.StashKey[list[str]]()


def report(config: pytest.Config, *lines: str) -> None:
    config.stash.setdefault(SUMMARY, []).extend(lines)


@dataclass(frozen=True)
class Victim:
    """A live listing that forged and mis-keyed records try to revoke or change."""

    listing_id: str
    subject_id: str


async def check(url: str, subject_id: str) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{url}/v1/checks", json={"subject": {"kind": "person", "id": subject_id}, "action": "board_flight"}
        )
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


async def wait_until_blocked(url: str, subject_id: str, timeout: float = 30.0) -> dict[str, object]:
    """Poll the consumer's check API until the subject may not board; fail with the last answer after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await check(url, subject_id)
        if answer["allowed"] is False:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} still allows {subject_id} after {timeout}s: {answer}")
        await asyncio.sleep(0.05)


async def caught_up(infra: Infra, timeout: float = 60.0) -> None:
    """Wait until the airline group has committed every record now on the listing topics."""
    for topic in LISTING_TOPICS:
        await wait_caught_up(infra.bootstrap_servers, CONSUMER, topic, timeout=timeout)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


async def dead_lettered_by(url: str) -> dict[str, float]:
    """This process's own dead-letter counters by reason, from its /metrics."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{url}/metrics")).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("blacklist_events_dead_lettered_total{") and f'consumer="{CONSUMER}"' in line:
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts


async def publish_listing(producer: AIOKafkaProducer, keys: Keys, name: str) -> tuple[str, str]:
    """Produce one valid court listing (FLIGHT, in force), signed as the court does; its listing id and subject id."""
    subject = fresh_person()
    listing_id = f"{COURT}:adv-{name}-{subject}-{time.time_ns()}"
    value = encode(event_document(listing_id, subject))
    headers = signed(keys.by_id["court-dev"], COURT, value)
    await produce(producer, [Record(f"{name}/{listing_id}", COURT_TOPIC, listing_id.encode(), value, headers)])
    return listing_id, subject


async def normal_listing_propagates(producer: AIOKafkaProducer, keys: Keys, url: str) -> str:
    """Publish one valid listing and wait until the consumer at `url` blocks its subject for it alone; its listing id."""
    listing_id, subject = await publish_listing(producer, keys, "after")
    answer = await wait_until_blocked(url, subject)
    blocking = answer["blocking"]
    assert isinstance(blocking, list)
    assert [b["listing_id"] for b in blocking] == [listing_id]
    return listing_id
