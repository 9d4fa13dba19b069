"""What every ops command shares: the consumer's policy, database pools on a chosen schema, Kafka clients, who runs it."""

from __future__ import annotations

import getpass
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from schemas.catalogue import CONSUMERS
from services.consumers.policy import ConsumerPolicy
from services.consumers.registry import POLICIES
from services.kit.kafka import client_options
from services.kit.settings import Settings


class OpsError(RuntimeError):
    """A reason an ops command stops, in one line for the operator."""


def policy_of(consumer: str) -> ConsumerPolicy:
    policy = POLICIES.get(consumer)
    if policy is None:
        raise OpsError(f"{consumer!r} is not a consumer; choose one of {', '.join(CONSUMERS)}")
    return policy


def reader(settings: Settings, group_id: str | None = None, **extra: Any) -> AIOKafkaConsumer:
    """A consumer that reads exactly what it is told: manual assignment, no auto-commit."""
    options: dict[str, Any] = {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 2000,
    }
    return AIOKafkaConsumer(**client_options(settings), **(options | extra))


def admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(settings))


async def schema_pool(settings: Settings, schema: str, max_size: int = 4) -> asyncpg.Pool:
    """A pool whose unqualified table names resolve in `schema` (the live copy or a shadow one)."""
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=max_size,
        server_settings={"search_path": schema, "application_name": "blacklist-sync-ops"},
        command_timeout=120,
    )
    if pool is None:  # pragma: no cover - asyncpg returns None only when used as an awaitable context
        raise OpsError("could not create a database pool")
    return pool


class OneConnection:
    """Stands in for a pool so that CopyKeeper's apply joins the caller's open transaction (as a savepoint)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self._conn


def operator() -> str:
    """Who runs this command, for the redrive log: login name at host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
