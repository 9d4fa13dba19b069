"""The outbox relay on real PostgreSQL: one sender per service at a time, so versions reach Kafka in order."""

from __future__ import annotations

import asyncpg
import pytest

from services.publishers import store
from tests.conftest import Infra

pytestmark = pytest.mark.integration


async def test_a_second_relay_waits_while_the_first_is_sending(infra: Infra) -> None:
    first = await asyncpg.connect(infra.database_url, server_settings={"search_path": "court"})
    second = await asyncpg.connect(infra.database_url, server_settings={"search_path": "court"})
    other_service = await asyncpg.connect(infra.database_url, server_settings={"search_path": "transport"})
    try:
        async with first.transaction():
            assert await store.take_relay_turn(first)
            async with second.transaction():
                assert not await store.take_relay_turn(second), "two court relays would send at once"
            async with other_service.transaction():
                assert await store.take_relay_turn(other_service), "another service's relay is independent"
        async with second.transaction():
            assert await store.take_relay_turn(second), "the turn is free again once the first transaction ends"
    finally:
        for conn in (first, second, other_service):
            await conn.close()
