"""Kafka clients for tests: every test builds its raw producers, consumers and admin clients here,
so that connection settings (bootstrap, and credentials once the cluster needs them) live in one place."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient


def options(bootstrap_servers: str) -> dict[str, Any]:
    return {"bootstrap_servers": bootstrap_servers}


def producer(bootstrap_servers: str, **extra: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**options(bootstrap_servers), **extra)


def consumer(bootstrap_servers: str, *topics: str, **extra: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **options(bootstrap_servers), **extra)


def admin(bootstrap_servers: str, **extra: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**options(bootstrap_servers), **extra)
