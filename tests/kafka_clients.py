"""Kafka clients for tests, built in one place: bootstrap servers and the identity each client proves."""

# By default a client acts as the admin identity (a super user): KAFKA_SASL_* from the environment, else the
# credentials file `blacklist-sync up` wrote in $BLACKLIST_SYNC_HOME. Pass `auth=identity("airline")` to act
# as one service under its ACLs, or `auth=ANONYMOUS` for a client without credentials.

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.kit.settings import KafkaAuth, home_dir, kafka_auth_from_env, local_env

ANONYMOUS = KafkaAuth("PLAINTEXT")
_TRANSPORT = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM")


def admin_identity() -> KafkaAuth:
    return kafka_auth_from_env(None, home_dir())


def identity(name: str) -> KafkaAuth:
    """A service's own identity, from the credentials file `up` wrote (never the admin the environment may name)."""
    home = home_dir()
    environ = {key: value for key, value in {**local_env(home), **os.environ}.items() if key in _TRANSPORT}
    return kafka_auth_from_env(name, home, {**environ, "KAFKA_SASL_USERNAME": name})


def options(bootstrap_servers: str, auth: KafkaAuth | None = None) -> dict[str, Any]:
    return {"bootstrap_servers": bootstrap_servers, **(auth or admin_identity()).aiokafka_options()}


def producer(bootstrap_servers: str, *, auth: KafkaAuth | None = None, **extra: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**options(bootstrap_servers, auth), **extra)


def consumer(bootstrap_servers: str, *topics: str, auth: KafkaAuth | None = None, **extra: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **options(bootstrap_servers, auth), **extra)


def admin(bootstrap_servers: str, *, auth: KafkaAuth | None = None, **extra: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**options(bootstrap_servers, auth), **extra)


@contextlib.asynccontextmanager
async def scratch_topic(bootstrap_servers: str, prefix: str, partitions: int = 1) -> AsyncIterator[str]:
    """A topic of the test's own (`prefix` and a random suffix), deleted afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client = admin(bootstrap_servers)
    await client.start()
    try:
        await client.create_topics([NewTopic(name, partitions, 1)])
        yield name
    finally:
        await client.delete_topics([name])
        await client.close()
