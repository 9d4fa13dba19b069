"""PostgreSQL access: one asyncpg pool per service, its search_path set to the service's own schema."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from schemas.catalogue import schema_name


async def create_pool(
    database_url: str,
    service: str,
    min_size: int = 1,
    max_size: int = 8,
    reset_sessions: bool = True,
    synchronous_commit: bool = True,
) -> asyncpg.Pool:
    """`reset_sessions=False` for a pool whose users leave no session state behind (no SET, LISTEN or session
    lock, only statements and transactions): asyncpg's reset on release is then one round trip for nothing, and
    a consumer's next batch waits for it. An open transaction is still rolled back on release either way.

    `synchronous_commit=False`: a commit returns before its WAL is on disk, for a user that learns later which
    of its transactions are durable and can redo the rest (a consumer's pipeline, see consumers/pipeline.py)."""
    settings = {"search_path": schema_name(service), "application_name": f"blacklist-sync-{service}"}
    if not synchronous_commit:
        settings["synchronous_commit"] = "off"
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        server_settings=settings,
        command_timeout=30,
        reset=None if reset_sessions else keep_session,
    )
    if pool is None:  # pragma: no cover - asyncpg returns None only when used as an awaitable context
        raise RuntimeError("could not create a database pool")
    return pool


async def reachable(pool: asyncpg.Pool | None, timeout: float = 2.0) -> bool:
    """Whether the database answers now (for /readyz): a connection and a `SELECT 1` within the timeout."""
    if pool is None:
        return False
    try:
        async with pool.acquire(timeout=timeout) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return False
    return True


async def keep_session(_: asyncpg.Connection) -> None:
    """A release without the reset query (asyncpg still rolls back a transaction left open)."""


class HeldConnection:
    """Stands in for a pool (`acquire()`): up to `keep` connections, taken from the pool once and kept, for a user
    with a few transactions in flight at most, such as a consumer's pipeline. Each transaction otherwise paid the
    pool's acquire and release: some 50 µs of CPU and a turn of the event loop, 0.15 ms at the median between a
    commit and the return to the pipeline under the latency bench's load.

    A connection found closed, or in use when a statement was cut short (an error, a cancellation: its protocol
    state is then unknown), is terminated, which hands its slot back to the pool, and replaced on the next
    acquire. A user beyond `keep` at once gets one of the pool's. `close()` before the pool's."""

    def __init__(self, pool: asyncpg.Pool, keep: int = 1) -> None:
        self.pool = pool
        self.keep = keep
        self._idle: list[Any] = []
        self._in_use: set[Any] = set()
        self._lent = 0  # kept connections acquired now (one being opened counts)
        self._closed = False

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        if self._lent >= self.keep or self._closed:
            async with self.pool.acquire() as spare:
                yield spare
            return
        self._lent += 1
        conn: Any = None
        try:
            while self._idle and conn is None:
                kept = self._idle.pop()
                if reusable(kept):
                    conn = kept
                else:
                    drop(kept)
            if conn is None:
                conn = await self.pool.acquire()
            self._in_use.add(conn)
            try:
                yield conn
            except BaseException:
                drop(conn)
                raise
            finally:
                self._in_use.discard(conn)
            if self._closed:
                if reusable(conn):  # closed meanwhile: nothing keeps it now (close() cut it if it was running)
                    await self.pool.release(conn)
            else:
                self._idle.append(conn)
        finally:
            self._lent -= 1

    async def close(self) -> None:
        """Give the kept connections back to the pool (cut one whose statement is still running)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in self._in_use:
            drop(conn)
        for conn in idle:
            if reusable(conn):
                await self.pool.release(conn)


def reusable(conn: Any) -> bool:
    try:
        return conn is not None and not conn.is_closed()
    except asyncpg.InterfaceError:  # its socket closed and the pool has taken it back already
        return False


def drop(conn: Any) -> None:
    """Hand a connection's slot back to the pool, which opens a fresh one on the next acquire."""
    if conn is not None:
        with contextlib.suppress(asyncpg.InterfaceError):  # the pool may have taken it back already
            conn.terminate()
