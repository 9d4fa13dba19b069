"""Keeps a consumer's copy: admit each record, dead-letter the rest, apply the batch in one transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord

from schemas.events import DlqReason
from services.consumers import store
from services.consumers.policy import ConsumerPolicy
from services.consumers.retention import retention_from_env
from services.kit import metrics
from services.kit.dlq import dead_letter
from services.kit.intake import Rejection, admit, headers_of
from services.kit.signing import Keyring

log = logging.getLogger(__name__)
YIELD_EVERY = 200  # records admitted between two turns of the event loop: ~4 ms of CPU


@dataclass(frozen=True)
class BatchOutcome:
    records: int
    accepted: int
    applied: int
    dead_lettered: int
    server_started: datetime | None = None  # the run of the server that committed it; None if nothing was sent


@dataclass
class Prepared:
    """A batch admitted, waiting for its transaction; its rejected records are dead-lettered after that commits."""

    records: int
    batch: Sequence[ConsumerRecord[bytes, bytes]] = ()
    changes: list[store.Change] = field(default_factory=list)
    occurred: list[datetime] = field(default_factory=list)
    rejected: list[tuple[ConsumerRecord[bytes, bytes], Rejection]] = field(default_factory=list)

    @property
    def dead_lettered(self) -> int:
        return len(self.rejected)


class CopyKeeper:
    def __init__(
        self,
        policy: ConsumerPolicy,
        pool: asyncpg.Pool,
        keyring: Keyring,
        dlq: AIOKafkaProducer,
        retention: timedelta | None = None,
        settling: asyncpg.Pool | None = None,
    ) -> None:
        self.policy = policy
        self.retention = retention if retention is not None else retention_from_env()
        self.pool = pool
        self.settling = settling or pool  # where settle() runs: beside the applies, not queued behind them
        self.keyring = keyring
        self.dlq = dlq
        # This consumer's metric series, looked up once: a labels() call costs as much as the update it precedes.
        self._applied = metrics.EVENTS_APPLIED.labels(policy.name, "applied")
        self._no_op = metrics.EVENTS_APPLIED.labels(policy.name, "no_op")
        self._last_applied = metrics.LAST_APPLIED.labels(policy.name)
        self._delays = metrics.PUBLISH_TO_APPLY.labels(policy.name)

    async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> BatchOutcome:
        """Dead letters are durable and the copy committed before this returns; only then may offsets move."""
        return await self.apply(await self.prepare(records))

    async def prepare(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> Prepared:
        """Admit every record (CPU only); neither the copy nor the dead-letter topic is touched yet."""
        prepared = Prepared(records=len(records), batch=records)
        retained_after = datetime.now(UTC) - self.retention  # past_retention(expires_at, retention, now), per batch
        headers = [headers_of(r.headers) for r in records]
        # Signatures first, a fetch at a time: a signed batch found whole in it is verified as one tree.
        signatures = self.keyring.verify_batch([(r.value or b"", h) for r, h in zip(records, headers, strict=True)])
        # Bound once: the loop below runs for every record at replay speed.
        keyring, project, change = self.keyring, self.policy.project, store.Change
        changes, occurred, rejected = prepared.changes, prepared.occurred, prepared.rejected
        for n, (record, record_headers, signature) in enumerate(zip(records, headers, signatures, strict=True)):
            if n and not n % YIELD_EVERY:
                # Let the event loop run: the previous batch's transaction goes on meanwhile (its statements are
                # sent and PostgreSQL works while we verify), and so do checks served by this process.
                await asyncio.sleep(0)
            try:
                event = admit(record.key, record.value, record_headers, keyring, signature)
            except Rejection as rejection:
                rejected.append((record, rejection))
                continue
            except Exception as exc:
                log.exception("record %s/%s/%s could not be admitted", record.topic, record.partition, record.offset)
                detail = f"could not be admitted: {type(exc).__name__}: {exc}"[:500]
                rejected.append((record, Rejection(DlqReason.INVALID_SCHEMA, detail)))
                continue
            listing = event.listing
            row = project(listing)
            if row is not None and row.expires_at < retained_after:
                row = None  # replaying an old record must not bring back data the retention sweep removed
            changes.append(change(listing.listing_id, listing.version, row))
            occurred.append(event.occurred_at)
        return prepared

    async def apply(self, prepared: Prepared) -> BatchOutcome:
        """One transaction for the batch (newest version per listing wins), then its dead letters.

        A small batch is one statement, committed on its own (autocommit): atomic as BEGIN ... COMMIT would make
        it, at one round trip instead of three; a large one is staged and applied in a transaction of its own
        (store.apply_batch). A statement the database is still running when the consumer dies commits anyway; its
        offsets are not committed, so its records come again and the version check makes them no-ops, exactly as
        after a death between COMMIT and the offset commit."""
        applied = store.Applied(0, None)
        if prepared.changes:
            async with self.pool.acquire() as conn:
                applied = await store.apply_changes(conn, prepared.changes)
        if prepared.rejected:
            # Only once the batch is committed: a batch retried while PostgreSQL is down, or lost to a crash
            # before its commit, has written no letter yet, so its redelivery writes each letter once. The
            # pipeline commits the offsets past a letter before its next transaction (see pipeline.py).
            await dead_letter(self.dlq, self.policy.name, prepared.rejected)
        self._observe(len(prepared.changes), applied.rows, prepared.occurred)
        return BatchOutcome(prepared.records, len(prepared.changes), applied.rows, prepared.dead_lettered, applied.server_started)

    async def settle(self) -> datetime:
        """Make every transaction applied so far durable (the service applies with asynchronous commits); returns
        when the server started, which the transactions' own outcomes must match (see store.settle)."""
        async with self.settling.acquire() as conn:
            return await store.settle(conn)

    def _observe(self, accepted: int, applied: int, occurred: list[datetime]) -> None:
        self._applied.inc(applied)
        self._no_op.inc(accepted - applied)
        self._last_applied.set_to_current_time()
        now = datetime.now(UTC)
        # A sample of each batch: observing every record would cost more than verifying it at replay speed, and
        # at a steady trickle a batch's records are committed within a millisecond of each other.
        step = -(-len(occurred) // metrics.DELAY_SAMPLES_PER_BATCH)  # ceiling: at most that many samples
        for moment in occurred[:: max(1, step)]:
            self._delays.observe(max((now - moment).total_seconds(), 0.0))
