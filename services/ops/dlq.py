"""`ops dlq list` / `ops dlq redrive`: read a consumer's dead letters and re-submit them through its normal path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord

from schemas.catalogue import dlq_topic, schema_name
from schemas.events import Header, rfc3339
from services.consumers.copy import CopyKeeper
from services.kit.intake import Rejection, admit, headers_of
from services.kit.kafka import idempotent_producer
from services.kit.migrations import migrate
from services.kit.settings import Settings
from services.kit.signing import Keyring
from services.ops.offsets import BoundedRead, partitions_of, start_offsets
from services.ops.runtime import OneConnection, OpsError, operator, policy_of, reader, schema_pool

CREATE_TIME = 0  # Kafka timestamp type of a record stamped by its producer
DLQ_HEADERS = frozenset({Header.DLQ_REASON.value, Header.DLQ_DETAIL.value, Header.DLQ_SOURCE.value})


@dataclass(frozen=True)
class Letter:
    """One record of `<consumer>.dlq.v1`: the original bytes and headers, and why they were refused."""

    partition: int
    offset: int
    written_at: datetime
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    reason: str
    detail: str
    source: str
    listing_id: str | None
    event_id: str | None

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> Letter:
        found = headers_of(record.headers)
        event = _readable_event(record.value)
        listing = event.get("listing")
        listing = listing if isinstance(listing, dict) else {}
        return cls(
            partition=record.partition,
            offset=record.offset,
            written_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            key=record.key,
            value=record.value,
            headers=tuple((k, v or b"") for k, v in record.headers or ()),
            reason=_text(found.get(Header.DLQ_REASON.value)),
            detail=_text(found.get(Header.DLQ_DETAIL.value)),
            source=_text(found.get(Header.DLQ_SOURCE.value)),
            listing_id=_str_or_none(listing.get("listing_id")),
            event_id=_str_or_none(event.get("event_id")),
        )

    def original(self) -> ConsumerRecord[bytes, bytes]:
        """The record as it first arrived: its source coordinates, its headers without the x-dlq-* ones."""
        # A letter always names its source; should one not, a second refusal still points back at this letter.
        topic, partition, offset = _source_coordinates(self.source) or ("unknown-source", self.partition, self.offset)
        return ConsumerRecord(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp=int(self.written_at.timestamp() * 1000),
            timestamp_type=CREATE_TIME,
            key=self.key,
            value=self.value,
            checksum=None,
            serialized_key_size=len(self.key or b""),
            serialized_value_size=len(self.value or b""),
            headers=[(k, v) for k, v in self.headers if k not in DLQ_HEADERS],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "dlq": f"{self.partition}/{self.offset}",
            "at": rfc3339(self.written_at),
            "reason": self.reason,
            "detail": self.detail,
            "source": self.source,
            "listing_id": self.listing_id,
            "event_id": self.event_id,
        }


def _readable_event(value: bytes | None) -> dict[str, Any]:
    try:
        parsed = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):  # a deeply nested letter is unreadable, not fatal
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", errors="replace")


def _source_coordinates(source: str) -> tuple[str, int, int] | None:
    topic, _, rest = source.rpartition("/")
    topic, _, partition = topic.rpartition("/")
    if not topic or not partition.isdigit() or not rest.isdigit():
        return None
    return topic, int(partition), int(rest)


async def read_letters(settings: Settings, consumer: str) -> list[Letter]:
    """Every dead letter of a consumer now in its DLQ topic, oldest first per partition."""
    policy_of(consumer)
    kafka = reader(settings)
    await kafka.start()
    try:
        partitions = await partitions_of(kafka, [dlq_topic(consumer)])
        read = BoundedRead(kafka, await start_offsets(kafka, partitions, None))
        # Before assigning: once assigned, the request would wait behind the first long-poll fetch.
        ends = await kafka.end_offsets(partitions)
        await read.begin()
        letters: list[Letter] = []

        async def keep(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
            letters.extend(Letter.of(r) for r in records)

        await read.read_to(ends, keep)
    finally:
        await kafka.stop()
    return sorted(letters, key=lambda letter: (letter.written_at, letter.partition, letter.offset))


class KnownLetters:
    """DLQ producer for replays: a record whose source is already in the DLQ is not dead-lettered a second time."""

    def __init__(self, producer: AIOKafkaProducer, sources: Iterable[str]) -> None:
        self.producer = producer
        self.sources = set(sources)
        self.skipped = 0
        self.written = 0

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None, headers: Any = None) -> asyncio.Future[Any]:
        source = headers_of(headers).get(Header.DLQ_SOURCE.value, b"").decode("utf-8", errors="replace")
        if source in self.sources:
            self.skipped += 1
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        self.sources.add(source)
        self.written += 1
        sent: asyncio.Future[Any] = await self.producer.send(topic, value, key=key, headers=headers)
        return sent


REDRIVEN = "SELECT dlq_partition, dlq_offset, letter_at FROM dlq_redrives"
RECORD_REDRIVE = """
INSERT INTO dlq_redrives (dlq_partition, dlq_offset, letter_at, source, event_id, listing_id, outcome, reason, redriven_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""


@dataclass(frozen=True)
class Redriven:
    letter: Letter
    outcome: str  # applied | no_op | dead_lettered
    reason: str | None


async def redrive(settings: Settings, consumer: str, event_id: str | None = None) -> list[Redriven]:
    """Re-submit dead letters not redriven before (only those of `event_id` if given) through CopyKeeper."""
    policy = policy_of(consumer)
    keyring = Keyring.load(settings.keyring_path)  # read now: the point of a redrive is often a fixed keyring
    letters = await read_letters(settings, consumer)
    pool = await schema_pool(settings, schema_name(consumer), max_size=2)
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        async with pool.acquire() as conn:
            await migrate(conn, consumer)
            done = {(r["dlq_partition"], r["dlq_offset"], r["letter_at"]) for r in await conn.fetch(REDRIVEN)}
            chosen = select(letters, done, event_id)
            keeper = CopyKeeper(policy, OneConnection(conn), keyring, producer)
            results = [await _redrive_one(conn, keeper, letter) for letter in chosen]
    finally:
        await producer.stop()
        await pool.close()
    return results


def select(letters: Sequence[Letter], done: set[tuple[int, int, datetime]], event_id: str | None) -> list[Letter]:
    if event_id is not None:
        matching = [letter for letter in letters if letter.event_id == event_id]
        if not matching:
            raise OpsError(f"no dead letter carries event id {event_id}")
        letters = matching
    return [letter for letter in letters if (letter.partition, letter.offset, letter.written_at) not in done]


async def _redrive_one(conn: asyncpg.Connection, keeper: CopyKeeper, letter: Letter) -> Redriven:
    """Apply (or dead-letter again) and log the redrive in one transaction: either both happen or neither."""
    record = letter.original()
    reason: str | None = None
    try:
        admit(record.key, record.value, headers_of(record.headers), keeper.keyring)
    except Rejection as rejection:
        reason = rejection.reason.value  # CopyKeeper dead-letters it again; this is only for the log
    async with conn.transaction():
        outcome = await keeper.process([record])
        result = "dead_lettered" if outcome.dead_lettered else ("applied" if outcome.applied else "no_op")
        await conn.execute(
            RECORD_REDRIVE,
            letter.partition,
            letter.offset,
            letter.written_at,
            letter.source,
            letter.event_id,
            letter.listing_id,
            result,
            reason,
            operator(),
        )
    return Redriven(letter, result, reason)
