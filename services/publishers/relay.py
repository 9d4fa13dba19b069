"""Outbox relay: sends committed outbox records to Kafka, signed per batch, and marks them sent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Mapping

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.catalogue import authority_matches
from services.kit import metrics
from services.kit.kafka import idempotent_producer
from services.kit.settings import Settings
from services.kit.signing import SigningKey, record_headers
from services.publishers import store

log = logging.getLogger(__name__)
# Retrying a local broker is cheap; waiting longer only keeps accepted listings off the copies after Kafka is back.
MAX_BACKOFF_SECONDS = 2.0


class Signer:
    """The private keys a publisher holds, chosen per authority by the patterns the keyring gives them."""

    def __init__(self, keys: Mapping[str, tuple[SigningKey, tuple[str, ...]]]) -> None:
        self._keys = keys

    def key_for(self, authority: str) -> SigningKey:
        for key, patterns in self._keys.values():
            if any(authority_matches(p, authority) for p in patterns):
                return key
        raise LookupError(f"no signing key covers {authority}: add one to the keys directory and keyring")


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        signer: Signer,
        settings: Settings,
        service: str,
        batch_size: int = 1000,
        idle_wait: float = 1.0,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.settings = settings
        self.service = service
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.connected = False
        self._wake = asyncio.Event()

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def relay_once(self, kafka: AIOKafkaProducer) -> int:
        """Send one batch of pending records; they are marked sent only once Kafka acknowledged every one."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await store.take_relay_turn(conn):
                return 0  # another instance of this service is sending; one at a time keeps versions in order
            pending = await store.claim_pending(conn, self.batch_size)
            if not pending:
                return 0
            by_authority: dict[str, list[store.OutboxRecord]] = defaultdict(list)
            for record in pending:
                by_authority[record.authority].append(record)
            sends = []
            for authority, records in by_authority.items():
                key = self.signer.key_for(authority)
                signed = record_headers(key, authority, [r.value for r in records], [r.event_type for r in records])
                for record, headers in zip(records, signed, strict=True):
                    sends.append(await kafka.send(record.topic, record.value, key=record.key.encode(), headers=headers))
            await asyncio.gather(*sends)
            await store.mark_sent(conn, [r.id for r in pending])
        metrics.OUTBOX_SENT.labels(self.service).inc(len(pending))
        return len(pending)

    async def run(self) -> None:
        """Relay forever: woken by NOTIFY, polling as a fallback, retrying Kafka with backoff."""
        listener = await self.pool.acquire()
        await listener.add_listener(store.OUTBOX_CHANNEL, self.wake)
        backoff = 0.5
        try:
            while True:
                kafka = idempotent_producer(self.settings, max_batch_size=1 << 20)
                try:
                    await kafka.start()
                    self.connected, backoff = True, 0.5
                    while True:
                        self._wake.clear()
                        sent = await self.relay_once(kafka)
                        if sent == 0:
                            await self._report_backlog()
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._wake.wait(), self.idle_wait)
                except (KafkaError, OSError, asyncpg.PostgresError) as exc:
                    self.connected = False
                    log.warning("outbox relay paused: %s; retrying in %.1fs", exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                finally:
                    await kafka.stop()
        finally:
            await listener.remove_listener(store.OUTBOX_CHANNEL, self.wake)
            await self.pool.release(listener)

    async def _report_backlog(self) -> None:
        async with self.pool.acquire() as conn:
            metrics.OUTBOX_BACKLOG.labels(self.service).set(await store.backlog(conn))
