"""Every dead-letter reason of CONTRACT section 6, produced by crafted records on the real listing topic."""

from __future__ import annotations

import time
import uuid

import asyncpg
import httpx
import pytest
from aiokafka import TopicPartition

from schemas.catalogue import LISTING_TOPIC_PARTITIONS
from services.kit.signing import SigningKey
from tests import kafka_clients
from tests.conftest import Infra
from tests.events import court_event, signed, value_of
from tests.integration.helpers import court_listing, fresh_person, wait_for_answer

pytestmark = pytest.mark.integration
TOPIC = "court.listings.v1"


def value_of_court(listing_id: str, authority: str = "court.bj-1st-intermediate") -> bytes:
    return value_of(court_event(listing_id, authority=authority))


async def dlq_ends(bootstrap: str, consumer: str) -> dict[TopicPartition, int]:
    """End offsets of a consumer's DLQ now: the letters a test provokes land after them."""
    probe = kafka_clients.consumer(bootstrap, enable_auto_commit=False, group_id=None)
    await probe.start()
    try:
        topic = f"{consumer}.dlq.v1"
        partitions = [TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or ())] or [
            TopicPartition(topic, p) for p in range(LISTING_TOPIC_PARTITIONS)
        ]
        ends: dict[TopicPartition, int] = await probe.end_offsets(partitions)
        return ends
    finally:
        await probe.stop()


async def read_dlq(
    bootstrap: str, consumer: str, keys: set[bytes], since: dict[TopicPartition, int], timeout: float = 30.0
) -> dict[bytes, dict[str, bytes]]:
    """Headers of the DLQ records carrying `keys`, read from `since` (a reused stack's DLQ can be huge)."""
    reader = kafka_clients.consumer(bootstrap, enable_auto_commit=False, group_id=None)
    await reader.start()
    reader.assign(list(since))
    for tp, offset in since.items():
        reader.seek(tp, offset)
    found: dict[bytes, dict[str, bytes]] = {}
    deadline = time.monotonic() + timeout
    try:
        while set(found) != keys and time.monotonic() < deadline:
            batch = await reader.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    if r.key in keys:
                        found[r.key] = dict(r.headers) | {"__value": r.value}
    finally:
        await reader.stop()
    return found


async def test_each_bad_record_is_dead_lettered_with_its_reason_and_the_consumer_goes_on(
    services: dict[str, str], infra: Infra
) -> None:
    court = SigningKey.load(infra.home / "keys", "court-dev")
    city = SigningKey.load(infra.home / "keys", "city-dev")
    run = uuid.uuid4().hex[:8]
    authority = "court.bj-1st-intermediate"

    def lid(name: str) -> str:
        return f"{authority}:dlq-{run}-{name}"

    good = value_of_court(lid("tampered"))
    unknown, foreign, mismatched = value_of_court(lid("unknown")), value_of_court(lid("city")), value_of_court(lid("other"))
    not_json, not_event = b"\xff{not json", b'{"event_id": 1}'
    cases: dict[str, tuple[bytes, bytes, list[tuple[str, bytes]]]] = {
        "invalid_json": (lid("json").encode(), not_json, signed(court, authority, not_json)),
        "invalid_schema": (lid("schema").encode(), not_event, signed(court, authority, not_event)),
        "bad_signature": (lid("tampered").encode(), good.replace(b'"FLIGHT"', b'"VEHICLE"'), signed(court, authority, good)),
        "unknown_key": (
            lid("unknown").encode(),
            unknown,
            [(k, b"nobody-key" if k == "x-key-id" else v) for k, v in signed(court, authority, unknown)],
        ),
        # A valid signature by the city key, vouching for a city, on a court listing.
        "unauthorized_authority": (lid("city").encode(), foreign, signed(city, "city.hangzhou", foreign)),
        "key_mismatch": (f"{lid('other')}-x".encode(), mismatched, signed(court, authority, mismatched)),
    }
    since = {consumer: await dlq_ends(infra.bootstrap_servers, consumer) for consumer in ("airline", "admissions")}
    producer = kafka_clients.producer(infra.bootstrap_servers)
    await producer.start()
    try:
        for key, value, headers in cases.values():
            await producer.send_and_wait(TOPIC, value, key=key, headers=headers)
    finally:
        await producer.stop()

    for consumer in ("airline", "admissions"):
        letters = await read_dlq(infra.bootstrap_servers, consumer, {k for k, _, _ in cases.values()}, since[consumer])
        for reason, (key, value, headers) in cases.items():
            assert key in letters, f"{consumer} did not dead-letter the {reason} record"
            letter = letters[key]
            assert letter["x-dlq-reason"] == reason.encode(), (reason, letter.get("x-dlq-detail"))
            assert letter["__value"] == value, "the DLQ keeps the original value bytes"
            assert letter["x-dlq-source"].startswith(f"{TOPIC}/".encode())
            assert letter["x-dlq-detail"]
            for name, original in headers:
                assert letter[name] == original, f"original header {name} kept"

    conn = await asyncpg.connect(infra.database_url)
    try:
        applied = await conn.fetchval("SELECT count(*) FROM airline.listings WHERE listing_id LIKE $1", f"%dlq-{run}%")
    finally:
        await conn.close()
    assert applied == 0, "a dead-lettered record touched the copy"

    debtor = fresh_person()
    async with httpx.AsyncClient(timeout=10) as client:
        await court_listing(client, services, debtor)
        await wait_for_answer(client, services["airline"], debtor, "board_flight", allowed=False)
