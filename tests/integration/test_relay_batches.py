"""The relay's batched send on real Kafka: each record on its key's partition, in outbox order, and verifiable."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.kit import signing
from services.kit.intake import headers_of
from services.kit.signing import Keyring, SigningKey, TrustedKey, record_headers
from services.publishers.partitioner import partition_of
from services.publishers.relay import partition_groups, send_groups, send_in_batches, sign_groups
from services.publishers.store import OutboxRecord
from tests import kafka_clients
from tests.conftest import Infra

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
PARTITIONS = 6
AUTHORITY = "court.relay-test"
RECORDS = 300
LISTINGS = 100  # three versions of each listing, so per-key order is tested too
READ_TIMEOUT_S = 60.0


@pytest_asyncio.fixture(loop_scope="session")
async def topic(infra: Infra) -> AsyncIterator[str]:
    async with kafka_clients.scratch_topic(infra.bootstrap_servers, "relay-batches", PARTITIONS) as name:
        yield name


def outbox(topic: str) -> list[OutboxRecord]:
    records = []
    for i in range(RECORDS):
        listing_id = f"{AUTHORITY}:2026-{i % LISTINGS:06d}"
        value = json.dumps({"outbox_id": i, "listing_id": listing_id, "padding": "x" * 500}).encode()
        records.append(OutboxRecord(i, topic, listing_id, value, AUTHORITY, "listing.issued"))
    return records


async def read_all(infra: Infra, topic: str, expected: int = RECORDS) -> list[tuple[int, int, str, bytes, dict[str, bytes]]]:
    consumer = kafka_clients.consumer(infra.bootstrap_servers, topic, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: list[tuple[int, int, str, bytes, dict[str, bytes]]] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for m in batch:
                    assert m.key is not None and m.value is not None
                    seen.append((m.partition, m.offset, m.key.decode(), m.value, headers_of(m.headers)))
    finally:
        await consumer.stop()
    return seen


async def test_batched_send_puts_every_record_on_its_keys_partition_in_outbox_order(infra: Infra, topic: str) -> None:
    key = SigningKey("relay-test", Ed25519PrivateKey.generate())
    records = outbox(topic)
    signed = record_headers(key, AUTHORITY, [r.value for r in records], [r.event_type for r in records])
    # Small Kafka batches: ~25 records each, so every partition takes several and the overflow path runs.
    producer = kafka_clients.producer(infra.bootstrap_servers, enable_idempotence=True, acks="all", max_batch_size=16384)
    await producer.start()
    try:
        futures = await send_in_batches(producer, list(zip(records, signed, strict=True)))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert len(futures) > PARTITIONS, "each partition's records fit one Kafka batch: the overflow path did not run"

    seen = await read_all(infra, topic)
    assert len(seen) == RECORDS, f"read {len(seen)} of {RECORDS} records"
    assert all(partition == partition_of(k.encode(), list(range(PARTITIONS))) for partition, _, k, _, _ in seen)
    for partition in range(PARTITIONS):
        ids = [json.loads(value)["outbox_id"] for p, _, _, value, _ in sorted(seen) if p == partition]
        assert ids == sorted(ids), f"partition {partition} holds records out of outbox order"
    keyring = Keyring([TrustedKey(key.key_id, ("court.*",), key.private_key.public_key())])
    assert {keyring.verify(value, headers) for _, _, _, value, headers in seen} == {AUTHORITY}
    assert {json.loads(value)["listing_id"] for _, _, _, value, _ in seen} == {r.key for r in records}


async def test_relay_signs_a_large_share_of_each_partition_alone_and_small_shares_together(infra: Infra, topic: str) -> None:
    key = SigningKey("relay-test", Ed25519PrivateKey.generate())
    other = "court.relay-other"  # 1 record in 32: a few in each partition, signed together across partitions
    authorities = [other if i % 32 == 0 else AUTHORITY for i in range(960)]
    records = [
        OutboxRecord(i, topic, f"{AUTHORITY}:2026-{i:06d}", json.dumps({"n": i}).encode(), authority, "listing.issued")
        for i, authority in enumerate(authorities)
    ]
    producer = kafka_clients.producer(infra.bootstrap_servers, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        groups = await partition_groups(producer, records, lambda r: r)
        await asyncio.gather(*await send_groups(producer, sign_groups(groups, lambda _: key)))
    finally:
        await producer.stop()

    seen = await read_all(infra, topic, len(records))
    assert len(seen) == len(records), f"read {len(seen)} of {len(records)} records"
    keyring = Keyring([TrustedKey(key.key_id, ("court.*",), key.private_key.public_key())])
    small = [h for _, _, _, _, h in seen if h["x-authority"] == other.encode()]
    assert len({h["x-signature"] for h in small}) == 1, "the small shares are one signed batch"
    assert sorted(int(h["x-merkle-index"]) for h in small) == list(range(30))
    for partition in range(PARTITIONS):
        held = [(value, headers) for p, _, _, value, headers in sorted(seen) if p == partition]
        large = [h for _, h in held if h["x-authority"] == AUTHORITY.encode()]
        assert len(large) >= signing.PARTITION_BATCH_FROM, "each partition's share of the large authority is large"
        assert len({h["x-signature"] for h in large}) == 1, f"partition {partition}: its share is not one batch"
        assert [int(h["x-merkle-index"]) for h in large] == list(range(len(large))), "side by side, in index order"
        assert {int(h["x-merkle-size"]) for h in large} == {len(large)}
        before = keyring.verifications
        assert set(keyring.verify_batch(held)) == {AUTHORITY, other}
        assert keyring.verifications - before <= 2, "the partition's share verified as one tree, the small batch once"
