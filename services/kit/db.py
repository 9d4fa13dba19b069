"""PostgreSQL access: one asyncpg pool per service, its search_path set to the service's own schema."""

from __future__ import annotations

import asyncpg

from schemas.catalogue import schema_name


async def create_pool(
    database_url: str, service: str, min_size: int = 1, max_size: int = 8, reset_sessions: bool = True
) -> asyncpg.Pool:
    """`reset_sessions=False` for a pool whose users leave no session state behind (no SET, LISTEN or session
    lock, only statements and transactions): asyncpg's reset on release is then one round trip for nothing, and
    a consumer's next batch waits for it. An open transaction is still rolled back on release either way."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": schema_name(service), "application_name": f"blacklist-sync-{service}"},
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
