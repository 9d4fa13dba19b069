"""A record as large as a listing topic accepts is dead-lettered too, though its dead letter is larger by the x-dlq-* headers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError

from services.consumers.copy import CopyKeeper
from services.consumers.registry import POLICIES
from services.kit.db import create_pool
from services.kit.kafka import idempotent_producer
from services.kit.settings import Settings
from services.kit.signing import Keyring
from tests import kafka_clients
from tests.adversarial.records import CASE_HEADER, CONSUMER, COURT, COURT_TOPIC, DlqWatcher, Keys, encode, event_document, signed
from tests.conftest import Infra
from tests.integration.helpers import fresh_person

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def scratch_topic(infra: Infra) -> AsyncIterator[str]:
    """A topic with the broker's default size limit, like the listing topics, that nothing consumes."""
    async with kafka_clients.scratch_topic(infra.bootstrap_servers, "adv-size-probe") as name:
        yield name


def oversized_value(size: int) -> bytes:
    document = event_document(f"{COURT}:size-{uuid.uuid4().hex}", fresh_person())
    document["padding"] = ""
    value = encode(document)
    return value.replace(b'"padding": ""', b'"padding": "' + b"p" * (size - len(value)) + b'"')


async def largest_accepted(infra: Infra, topic: str, keys: Keys, label: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Binary search for the largest signed value (with its headers) the broker takes: what a hostile publisher can send."""
    extra = [(CASE_HEADER, label.encode())]
    probe = kafka_clients.producer(infra.bootstrap_servers, max_request_size=4 * 1024 * 1024)
    await probe.start()
    low, high = 512 * 1024, 2 * 1024 * 1024
    try:
        while high - low > 16:
            middle = (low + high) // 2
            value = oversized_value(middle)
            try:
                headers = [*signed(keys.by_id["court-dev"], COURT, value), *extra]
                await probe.send_and_wait(topic, value, key=b"size-limit", headers=headers)
                low = middle
            except KafkaError:
                high = middle
    finally:
        await probe.stop()
    value = oversized_value(low)
    return value, [*signed(keys.by_id["court-dev"], COURT, value), *extra]


async def test_record_of_the_largest_size_a_listing_topic_accepts_is_dead_lettered(
    infra: Infra, keys: Keys, scratch_topic: str, dlq: DlqWatcher
) -> None:
    label = f"size/{uuid.uuid4().hex}"
    value, headers = await largest_accepted(infra, scratch_topic, keys, label)
    record = ConsumerRecord(COURT_TOPIC, 0, 0, 0, 0, b"size-limit", value, None, 10, len(value), headers)
    settings = Settings.from_env(service=CONSUMER)
    pool = await create_pool(infra.database_url, CONSUMER, max_size=1)
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        outcome = await CopyKeeper(POLICIES[CONSUMER], pool, Keyring.load(infra.keyring_path), producer).process([record])
    finally:
        await producer.stop()
        await pool.close()

    letters = await dlq.wait_for([label], timeout=30)
    assert outcome.dead_lettered == 1
    assert letters[label].value == value
