"""Kafka access control on the real cluster: each service's SCRAM identity can do its own job and nothing else."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)

from schemas.catalogue import LISTING_TOPICS, dlq_topic
from services.kit.kafka import idempotent_producer
from services.kit.settings import KafkaAuth, Settings
from services.kit.signing import SigningKey
from services.localinfra import access
from services.localinfra.credentials import SERVICE_IDENTITIES
from tests import kafka_clients
from tests.conftest import Infra
from tests.events import COURT, court_event, signed, value_of
from tests.integration.helpers import fresh_person

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not kafka_clients.admin_identity().uses_sasl,
        reason="this stack runs without Kafka access control; `make test` starts it with BLACKLIST_SYNC_KAFKA_ACCESS=scram",
    ),
]
SEND_TIMEOUT_MS = 10_000
NO_ERROR = 0
TOPIC_AUTHORIZATION_FAILED = TopicAuthorizationFailedError.errno


@pytest.fixture
def service_env(monkeypatch: pytest.MonkeyPatch, infra: Infra) -> Iterator[None]:
    """The environment a service process gets: no KAFKA_SASL_* override, so it finds its own identity in the home."""
    for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SECURITY_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
async def airline_producer(service_env: None) -> AsyncIterator[AIOKafkaProducer]:
    """The DLQ producer exactly as the airline service builds it (kit/kafka.py, Settings of `airline`)."""
    settings = Settings.from_env(service="airline")
    producer = idempotent_producer(settings, request_timeout_ms=SEND_TIMEOUT_MS)
    await producer.start()
    yield producer
    await producer.stop()


async def started_producer(bootstrap_servers: str, auth: KafkaAuth) -> AIOKafkaProducer:
    producer = kafka_clients.producer(bootstrap_servers, auth=auth, enable_idempotence=True, request_timeout_ms=SEND_TIMEOUT_MS)
    await producer.start()
    return producer


async def topic_errors(infra: Infra, auth: KafkaAuth, topics: list[str]) -> dict[str, int]:
    """Per topic, the error code metadata gives this identity: 0, or 29 when it may not even see the topic."""
    admin = kafka_clients.admin(infra.bootstrap_servers, auth=auth)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {t["topic"]: t["error_code"] for t in described}


def signed_court_listing() -> tuple[bytes, bytes, list[tuple[str, bytes]], str]:
    """A valid court event for a fresh person, signed with the local court key: (key, value, headers, listing id)."""
    listing_id = f"court.bj-1st-intermediate:acl-{uuid.uuid4().hex[:12]}"
    value = value_of(court_event(listing_id, fresh_person()))
    key = SigningKey.load(Settings.from_env().keys_dir, "court-dev")
    return listing_id.encode(), value, signed(key, COURT, value), listing_id


async def test_consumer_identity_cannot_write_a_listing_topic(airline_producer: AIOKafkaProducer) -> None:
    for topic in LISTING_TOPICS:
        with pytest.raises(TopicAuthorizationFailedError):
            await airline_producer.send_and_wait(topic, b"forged listing", key=b"forged")


async def test_consumer_writes_its_own_dead_letter_topic_but_not_another_consumers(airline_producer: AIOKafkaProducer) -> None:
    probe = f"acl-probe-{uuid.uuid4().hex[:8]}".encode()

    written = await airline_producer.send_and_wait(dlq_topic("airline"), b"acl probe", key=probe)

    assert written.topic == "airline.dlq.v1" and written.offset >= 0
    for other in ("ticketing", "luxury-retail", "admissions"):
        with pytest.raises(TopicAuthorizationFailedError):
            await airline_producer.send_and_wait(dlq_topic(other), b"acl probe", key=probe)


async def test_publisher_writes_its_own_listing_topic_but_not_another_familys(infra: Infra) -> None:
    key, value, headers, _ = signed_court_listing()
    court = await started_producer(infra.bootstrap_servers, kafka_clients.identity("court"))
    try:
        written = await court.send_and_wait("court.listings.v1", value, key=key, headers=headers)
        assert written.topic == "court.listings.v1" and written.offset >= 0
        for topic in ("transport.listings.v1", "city-pilot.listings.v1"):
            with pytest.raises(TopicAuthorizationFailedError):
                await court.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await court.stop()


async def test_publisher_cannot_read_its_topic_nor_see_any_other(infra: Infra) -> None:
    transport = kafka_clients.identity("transport")
    own = TopicPartition("transport.listings.v1", 0)
    reader = kafka_clients.consumer(infra.bootstrap_servers, auth=transport, group_id=None)
    await reader.start()
    try:
        reader.assign([own])
        await reader.seek_to_beginning(own)
        with pytest.raises(TopicAuthorizationFailedError):  # it may describe its topic, not read it
            await reader.getmany(own, timeout_ms=5000)
    finally:
        await reader.stop()

    assert await topic_errors(infra, transport, ["transport.listings.v1", "court.listings.v1", dlq_topic("airline")]) == {
        "transport.listings.v1": NO_ERROR,
        "court.listings.v1": TOPIC_AUTHORIZATION_FAILED,
        "airline.dlq.v1": TOPIC_AUTHORIZATION_FAILED,
    }


async def test_consumer_reads_listing_topics_but_only_in_its_own_group(infra: Infra) -> None:
    key, value, headers, _ = signed_court_listing()
    court = await started_producer(infra.bootstrap_servers, kafka_clients.identity("court"))
    try:
        written = await court.send_and_wait("court.listings.v1", value, key=key, headers=headers)
    finally:
        await court.stop()
    airline = kafka_clients.identity("airline")
    where = TopicPartition(written.topic, written.partition)
    reader = kafka_clients.consumer(infra.bootstrap_servers, auth=airline, group_id=None)
    await reader.start()
    try:
        reader.assign([where])
        reader.seek(where, written.offset)
        fetched = await reader.getmany(where, timeout_ms=10_000, max_records=1)
    finally:
        await reader.stop()
    assert [r.key for r in fetched[where]] == [key]
    assert await topic_errors(infra, airline, [*LISTING_TOPICS, dlq_topic("ticketing")]) == {
        **dict.fromkeys(LISTING_TOPICS, NO_ERROR),
        "ticketing.dlq.v1": TOPIC_AUTHORIZATION_FAILED,
    }

    # Another consumer's group: refused at FindCoordinator, before it could join and disturb that group.
    intruder = kafka_clients.consumer(infra.bootstrap_servers, "court.listings.v1", auth=airline, group_id="ticketing")
    with pytest.raises(GroupAuthorizationFailedError):
        await intruder.start()
    await intruder.stop()


async def test_client_without_credentials_gets_nothing(infra: Infra) -> None:
    admin = kafka_clients.admin(infra.bootstrap_servers)
    await admin.start()  # control: the same cluster answers whoever authenticates
    await admin.close()

    anonymous_admin = kafka_clients.admin(infra.bootstrap_servers, auth=kafka_clients.ANONYMOUS, request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await anonymous_admin.start()
    await anonymous_admin.close()
    anonymous_reader: AIOKafkaConsumer = kafka_clients.consumer(
        infra.bootstrap_servers, "court.listings.v1", auth=kafka_clients.ANONYMOUS, request_timeout_ms=5000
    )
    with pytest.raises(KafkaConnectionError):
        await anonymous_reader.start()
    await anonymous_reader.stop()


async def test_known_identity_with_a_wrong_password_is_refused_at_authentication(infra: Infra) -> None:
    host, _, port = infra.bootstrap_servers.split(",")[0].rpartition(":")
    wrong = KafkaAuth("SASL_PLAINTEXT", "SCRAM-SHA-256", "airline", "not-the-password")

    with pytest.raises(SaslAuthenticationFailed):
        await create_conn(host, int(port), request_timeout_ms=5000, **wrong.aiokafka_options())


async def test_cluster_holds_exactly_the_acl_table_for_the_service_identities(infra: Infra) -> None:
    connection = await access.connect(infra.bootstrap_servers, kafka_clients.admin_identity())
    try:
        held = await access.current_grants(connection, {access.principal(name) for name in SERVICE_IDENTITIES})
    finally:
        connection.close()

    assert held == set(access.grants())
    writes = {(g.principal, g.name) for g in held if g.operation == access.Operation.WRITE}
    assert writes == {
        ("User:court", "court.listings.v1"),
        ("User:transport", "transport.listings.v1"),
        ("User:city-pilot", "city-pilot.listings.v1"),
        ("User:airline", "airline.dlq.v1"),
        ("User:ticketing", "ticketing.dlq.v1"),
        ("User:luxury-retail", "luxury-retail.dlq.v1"),
        ("User:admissions", "admissions.dlq.v1"),
    }


async def test_provisioning_again_removes_a_hand_made_grant_and_changes_nothing_else(infra: Infra) -> None:
    admin = kafka_clients.admin_identity()
    rogue = access.Grant("User:airline", access.Resource.TOPIC, f"acl-probe-{uuid.uuid4().hex[:8]}", access.Operation.READ)
    connection = await access.connect(infra.bootstrap_servers, admin)
    try:
        await access.converge_acls(connection, [*access.grants(), rogue])  # someone grants a little extra by hand
        assert rogue in await access.current_grants(connection, {"User:airline"})
    finally:
        connection.close()
    messages: list[str] = []
    passwords = {name: kafka_clients.identity(name).password or "" for name in SERVICE_IDENTITIES}

    await access.provision(infra.bootstrap_servers, admin, passwords, messages.append)  # what `up` runs

    connection = await access.connect(infra.bootstrap_servers, admin)
    try:
        held = await access.current_grants(connection, {access.principal(name) for name in SERVICE_IDENTITIES})
    finally:
        connection.close()
    assert held == set(access.grants())
    assert f"kafka: ACLs 0 created, 1 removed ({len(access.grants())} in the table)" in messages
    # The passwords were set again to the same values: each identity still authenticates.
    producer = await started_producer(infra.bootstrap_servers, kafka_clients.identity("airline"))
    await producer.stop()
