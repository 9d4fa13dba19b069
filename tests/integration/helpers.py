"""Helpers for tests on the running services: publish, ask, and wait for an answer to change."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx

from services.scenario import TOKENS, person_id

rng = random.Random()


def fresh_person() -> str:
    return person_id(rng, f"19{rng.randint(50, 99)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}")


async def publish(
    client: httpx.AsyncClient, url: str, token: str, path: str, body: dict[str, Any], expect: int = 201
) -> dict[str, Any]:
    response = await client.post(f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


async def court_listing(client: httpx.AsyncClient, urls: dict[str, str], subject_id: str, **extra: Any) -> dict[str, Any]:
    body = {
        "authority": "court.bj-1st-intermediate",
        "list": "court.dishonest_debtor",
        "subject": {"kind": "person", "id": subject_id, "name": "Test Person"},
        "legal_basis": {"case_number": f"(2026) Test {rng.randint(1, 10**6)}"},
        **extra,
    }
    listing: dict[str, Any] = (await publish(client, urls["court"], TOKENS["court"], "/v1/listings", body))["listing"]
    return listing


async def ask(client: httpx.AsyncClient, url: str, subject_id: str, action: str, **extra: Any) -> dict[str, Any]:
    body = {"subject": {"kind": extra.pop("kind", "person"), "id": subject_id}, "action": action, **extra}
    response = await client.post(f"{url}/v1/checks", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def wait_for_answer(
    client: httpx.AsyncClient, url: str, subject_id: str, action: str, allowed: bool, timeout: float = 30.0, **extra: Any
) -> dict[str, Any]:
    """Poll the check API until it answers `allowed`; fail with the last answer after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await ask(client, url, subject_id, action, **dict(extra))
        if answer["allowed"] is allowed:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} still answers {answer} after {timeout}s")
        await asyncio.sleep(0.05)


async def wait_caught_up(bootstrap_servers: str, group: str, topic: str, timeout: float = 30.0) -> None:
    """Wait until `group` has committed every record now in `topic` (end offsets read on entry)."""
    from aiokafka import TopicPartition

    from tests import kafka_clients

    probe = kafka_clients.consumer(bootstrap_servers)
    admin = kafka_clients.admin(bootstrap_servers)
    await probe.start()
    await admin.start()
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or await _partitions(probe, topic))
        ]
        ends = await probe.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            behind = {tp: end for tp, end in ends.items() if end > 0 and (tp not in committed or committed[tp].offset < end)}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"group {group} still behind on {behind} after {timeout}s")
            await asyncio.sleep(0.1)
    finally:
        await probe.stop()
        await admin.close()


async def _partitions(consumer: Any, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return set(consumer.partitions_for_topic(topic) or ())
