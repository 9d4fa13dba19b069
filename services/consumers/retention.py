"""Retention: personal data of expired listings leaves a consumer's copy after a delay; version markers stay."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta

import asyncpg

from services.consumers import store

log = logging.getLogger(__name__)
DEFAULT_RETENTION = timedelta(days=3)  # the court rules' deletion window after a listing ends
SWEEP_INTERVAL_SECONDS = 60.0


def retention_from_env() -> timedelta:
    """COPY_RETENTION_DAYS (default 3): how long an expired listing's data may stay in a copy."""
    raw = os.environ.get("COPY_RETENTION_DAYS")
    if raw is None:
        return DEFAULT_RETENTION
    days = float(raw)
    if days < 0:
        raise ValueError("COPY_RETENTION_DAYS must be >= 0")
    return timedelta(days=days)


def past_retention(expires_at: datetime, retention: timedelta, now: datetime | None = None) -> bool:
    return expires_at < (now or datetime.now(UTC)) - retention


async def sweep_once(pool: asyncpg.Pool, retention: timedelta, now: datetime | None = None) -> int:
    """Markers for every listing past its retention, in bounded batches; returns how many were swept."""
    cutoff = (now or datetime.now(UTC)) - retention
    swept = 0
    while True:
        done = await store.sweep_expired(pool, cutoff)
        swept += done
        if done == 0:
            return swept


async def sweep_forever(
    pool: asyncpg.Pool, consumer: str, retention: timedelta, interval: float = SWEEP_INTERVAL_SECONDS
) -> None:
    while True:
        try:
            swept = await sweep_once(pool, retention)
            if swept:
                log.info("retention: %d expired listings reduced to version markers", swept, extra={"consumer": consumer})
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("retention sweep failed (%s); retrying in %.0fs", exc, interval)
        await asyncio.sleep(interval)
