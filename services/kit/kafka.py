"""Kafka clients of a service: every producer, consumer and admin client is built here, from Settings."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker, Topic
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from schemas.catalogue import DLQ_MAX_MESSAGE_BYTES
from services.kit.logs import FASTSTREAM_BROKER
from services.kit.settings import KafkaAuth, Settings


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every aiokafka client of this service: bootstrap servers and its identity."""
    return {"bootstrap_servers": settings.kafka_bootstrap_servers, **settings.kafka_auth.aiokafka_options()}


def idempotent_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    # acks from all in-sync replicas and idempotence: a retried send is never written twice. Requests up to the
    # DLQ's message size: a dead letter is its (up to 1 MiB) record plus the x-dlq-* headers.
    options: dict[str, Any] = {
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 2,
        "request_timeout_ms": 15000,
        "max_request_size": DLQ_MAX_MESSAGE_BYTES,
    }
    return AIOKafkaProducer(**client_options(settings), **(options | overrides))


def broker(settings: Settings, client_id: str) -> KafkaBroker:
    """The FastStream broker of a consumer service."""
    # Per-batch "Received/Processed" lines at DEBUG: at replay speed INFO logging would cost more than the apply.
    # FastStream's own logger writes coloured plain text beside the service's JSON lines; ours goes through the
    # root handler, so a log shipper reads every line as JSON (logs.configure sets its level).
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        log_level=logging.DEBUG,
        logger=logging.getLogger(FASTSTREAM_BROKER),
        security=faststream_security(settings.kafka_auth),
    )


def existing(*topics: str) -> tuple[Topic, ...]:
    """Topics a subscriber reads but never creates: they come from `blacklist-sync up` (or the cluster's operators),
    and a consumer's identity may not create topics, so FastStream's attempt only logged an authorization warning."""
    return tuple(Topic(name, declare=False) for name in topics)


def faststream_security(auth: KafkaAuth) -> BaseSecurity | None:
    """The same identity in FastStream's terms (None: no authentication)."""
    if not auth.uses_sasl:
        return None
    assert auth.username is not None and auth.password is not None  # KafkaAuth refuses SASL without them
    ssl_context = ssl.create_default_context() if auth.security_protocol == "SASL_SSL" else None
    kinds: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
        "PLAIN": SASLPlaintext,
    }
    return kinds[auth.mechanism](auth.username, auth.password, ssl_context=ssl_context)
