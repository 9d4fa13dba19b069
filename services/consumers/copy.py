"""Keeps a consumer's copy: admit each record, dead-letter the rest, apply the batch in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord

from services.consumers import store
from services.consumers.policy import ConsumerPolicy
from services.consumers.retention import past_retention, retention_from_env
from services.kit import metrics
from services.kit.dlq import dead_letter
from services.kit.intake import Rejection, admit, headers_of
from services.kit.signing import Keyring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutcome:
    records: int
    accepted: int
    applied: int
    dead_lettered: int


class CopyKeeper:
    def __init__(
        self,
        policy: ConsumerPolicy,
        pool: asyncpg.Pool,
        keyring: Keyring,
        dlq: AIOKafkaProducer,
        retention: timedelta | None = None,
    ) -> None:
        self.policy = policy
        self.retention = retention if retention is not None else retention_from_env()
        self.pool = pool
        self.keyring = keyring
        self.dlq = dlq

    async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> BatchOutcome:
        """Dead letters are durable and the copy committed before this returns; only then may offsets move."""
        changes: list[store.Change] = []
        rejected: list[tuple[ConsumerRecord[bytes, bytes], Rejection]] = []
        occurred: list[datetime] = []
        now = datetime.now(UTC)
        for record in records:
            try:
                event = admit(record.key, record.value, headers_of(record.headers), self.keyring)
            except Rejection as rejection:
                rejected.append((record, rejection))
                continue
            listing = event.listing
            row = self.policy.project(listing)
            if row is not None and past_retention(row.expires_at, self.retention, now):
                row = None  # replaying an old record must not bring back data the retention sweep removed
            changes.append(store.Change(listing.listing_id, listing.version, row))
            occurred.append(event.occurred_at)
        if rejected:
            await dead_letter(self.dlq, self.policy.name, rejected)
        applied = 0
        if changes:
            async with self.pool.acquire() as conn, conn.transaction():
                applied = await store.apply_batch(conn, changes)
        self._observe(len(changes), applied, occurred)
        return BatchOutcome(len(records), len(changes), applied, len(rejected))

    def _observe(self, accepted: int, applied: int, occurred: list[datetime]) -> None:
        name = self.policy.name
        metrics.EVENTS_APPLIED.labels(name, "applied").inc(applied)
        metrics.EVENTS_APPLIED.labels(name, "no_op").inc(accepted - applied)
        metrics.LAST_APPLIED.labels(name).set_to_current_time()
        now = datetime.now(UTC)
        histogram = metrics.PUBLISH_TO_APPLY.labels(name)
        # A sample of each batch: observing every record would cost more than verifying it at replay speed.
        for moment in occurred[:: max(1, len(occurred) // metrics.DELAY_SAMPLES_PER_BATCH)]:
            histogram.observe(max((now - moment).total_seconds(), 0.0))
