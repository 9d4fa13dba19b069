"""HeldConnection on real PostgreSQL: the consumer service's transactions reuse one pool connection; a broken or
interrupted one is replaced, never reused; a second user meanwhile gets a pool connection; close() gives it back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.kit.db import HeldConnection, keep_session
from tests.conftest import Infra

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    made = await asyncpg.create_pool(infra.database_url, min_size=1, max_size=3, reset=keep_session)
    assert made is not None
    try:
        yield made
    finally:
        made.terminate()


async def backend(held: HeldConnection) -> int:
    async with held.acquire() as conn:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
        return pid


async def test_consecutive_transactions_run_on_one_connection_and_close_gives_it_back(pool: asyncpg.Pool) -> None:
    held = HeldConnection(pool)

    pids = {await backend(held) for _ in range(5)}

    assert len(pids) == 1
    assert pool.get_idle_size() == pool.get_size() - 1  # the held one is out of the pool meanwhile
    await held.close()
    assert pool.get_idle_size() == pool.get_size()
    await asyncio.wait_for(pool.close(), 5)  # nothing is left acquired


async def test_a_connection_whose_statement_failed_is_replaced_not_reused(pool: asyncpg.Pool) -> None:
    held = HeldConnection(pool)
    first = await backend(held)

    with pytest.raises(asyncpg.DivisionByZeroError):
        async with held.acquire() as conn:
            await conn.execute("SELECT 1 / 0")

    assert await backend(held) != first
    await held.close()
    await asyncio.wait_for(pool.close(), 5)


async def test_a_connection_the_server_ended_is_replaced_on_the_next_acquire(pool: asyncpg.Pool, infra: Infra) -> None:
    held = HeldConnection(pool)
    first = await backend(held)
    admin = await asyncpg.connect(infra.database_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
    finally:
        await admin.close()

    # The client may see the close before the next transaction (replaced at once) or only through it (that one
    # fails, as one on a pooled connection would, and the pipeline retries it); the one after runs on a new backend.
    failures = 0
    while True:
        try:
            second = await backend(held)
            break
        except Exception:  # asyncpg's type depends on how far it got: connection, interface or protocol-state errors
            failures += 1
            assert failures == 1

    assert second != first
    await held.close()


async def test_a_second_user_while_the_connection_is_busy_gets_one_of_the_pool(pool: asyncpg.Pool) -> None:
    held = HeldConnection(pool)
    async with held.acquire() as busy:
        mine = await busy.fetchval("SELECT pg_backend_pid()")
        other = await backend(held)

    assert other != mine
    assert await backend(held) == mine  # the held one again once free
    await held.close()
    await asyncio.wait_for(pool.close(), 5)


async def test_a_cancelled_statement_does_not_leave_its_connection_to_the_next_transaction(pool: asyncpg.Pool) -> None:
    held = HeldConnection(pool)
    first = await backend(held)

    async def slow() -> None:
        async with held.acquire() as conn:
            await conn.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await backend(held) != first
    await held.close()


async def test_close_while_a_statement_runs_cuts_that_connection_so_the_pool_can_close(pool: asyncpg.Pool) -> None:
    held = HeldConnection(pool)
    started = asyncio.Event()

    async def slow() -> None:
        async with held.acquire() as conn:
            started.set()
            await conn.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await started.wait()
    await held.close()

    with pytest.raises(Exception):  # noqa: B017 - whichever error asyncpg raises for a connection cut mid-statement
        await task
    await asyncio.wait_for(pool.close(), 5)
