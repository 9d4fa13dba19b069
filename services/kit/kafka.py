"""Kafka clients of a service: every producer, consumer and admin client is built here, from Settings."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from services.kit.settings import Settings


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every aiokafka client of this service."""
    return {"bootstrap_servers": settings.kafka_bootstrap_servers}


def idempotent_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    # acks from all in-sync replicas and idempotence: a retried send is never written twice.
    options: dict[str, Any] = {"enable_idempotence": True, "acks": "all", "linger_ms": 2, "request_timeout_ms": 15000}
    return AIOKafkaProducer(**client_options(settings), **(options | overrides))


def broker(settings: Settings, client_id: str) -> KafkaBroker:
    """The FastStream broker of a consumer service."""
    # Per-batch "Received/Processed" lines at DEBUG: at replay speed INFO logging would cost more than the apply.
    return KafkaBroker(settings.kafka_bootstrap_servers, client_id=client_id, log_level=logging.DEBUG)
