"""Schema migrations: numbered .sql files applied once per service schema, under an advisory lock."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import asyncpg

from schemas.catalogue import CONSUMERS, PUBLISHERS, schema_name

SERVICES_DIR = Path(__file__).resolve().parent.parent
PUBLISHER_MIGRATIONS = SERVICES_DIR / "publishers" / "migrations"
CONSUMER_MIGRATIONS = SERVICES_DIR / "consumers" / "migrations"


def migrations_dir(service: str) -> Path:
    return CONSUMER_MIGRATIONS if service in CONSUMERS else PUBLISHER_MIGRATIONS


def migration_files(directory: Path) -> list[tuple[int, Path]]:
    files = []
    for path in sorted(directory.glob("*.sql")):
        number = path.name.split("_", 1)[0]
        if not number.isdigit():
            raise ValueError(f"migration {path} must start with a number, e.g. 001_init.sql")
        files.append((int(number), path))
    return files


async def migrate(conn: asyncpg.Connection, service: str, schema: str | None = None) -> list[str]:
    """Bring one service's schema up to date; return the migrations applied now."""
    schema = schema or schema_name(service)
    lock = int.from_bytes(hashlib.sha256(schema.encode()).digest()[:8], "big", signed=True)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", lock)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations '
            "(version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations')}
        for number, path in migration_files(migrations_dir(service)):
            if number in done:
                continue
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                await conn.execute(path.read_text())
                await conn.execute(f'INSERT INTO "{schema}".schema_migrations (version, name) VALUES ($1, $2)', number, path.name)
            applied_now.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock)
    return applied_now


async def migrate_all(database_url: str, services: Iterable[str] = (*PUBLISHERS, *CONSUMERS)) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for service in services:
            await migrate(conn, service)
    finally:
        await conn.close()
