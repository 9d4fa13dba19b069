"""Building blocks of the adversarial suite: events, signed and forged headers, the dead-letter watcher, copy snapshots."""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.catalogue import dlq_topic
from schemas.events import Header
from services.kit.settings import DEFAULT_SUBJECT_HASH_KEY
from services.kit.signing import SigningKey, sign_batch
from services.kit.subjects import id_hash
from tests import kafka_clients

CONSUMER = "airline"
COURT = "court.bj-1st-intermediate"
COURT_TOPIC = "court.listings.v1"
# Test-only header naming each produced record; the DLQ keeps original headers, so it finds the record's dead letter.
CASE_HEADER = "x-adv-case"
LOCAL_KEY_IDS = ("court-dev", "caac-dev", "railway-dev", "city-dev")


def event_document(
    listing_id: str,
    subject_id: str,
    *,
    version: int = 1,
    restrictions: Sequence[str] = ("FLIGHT",),
    authority: str = COURT,
    list_id: str = "court.dishonest_debtor",
) -> dict[str, Any]:
    """A valid listing.issued event (CONTRACT section 4) that the airline keeps: FLIGHT, national, in force until 2099."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "listing.issued" if version == 1 else "listing.amended",
        "schema_version": 1,
        "occurred_at": "2026-11-26T10:00:00Z",
        "listing": {
            "listing_id": listing_id,
            "version": version,
            "list": list_id,
            "authority": authority,
            "status": "active",
            "subject": {
                "kind": "person",
                "id_hash": id_hash(DEFAULT_SUBJECT_HASH_KEY.encode(), "person", subject_id),
                "id_masked": "110101********1234",
                "display_name": "Adversarial *",
            },
            "restrictions": list(restrictions),
            "scope": "national",
            "legal_basis": {"case_number": "(2026) Adversarial 1"},
            "effective_from": "2026-01-01T00:00:00Z",
            "expires_at": "2099-01-01T00:00:00Z",
            "revocation": None,
        },
    }


def set_path(document: dict[str, Any], path: str, value: object) -> None:
    *parents, last = path.split(".")
    node = document
    for name in parents:
        node = node[name]
    node[last] = value


def delete_path(document: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node = document
    for name in parents:
        node = node[name]
    del node[last]


def with_changes(document: Mapping[str, Any], changes: Mapping[str, object]) -> dict[str, Any]:
    """A copy of the event with dotted paths set, e.g. {"listing.version": 2}."""
    result = copy.deepcopy(dict(document))
    for path, value in changes.items():
        set_path(result, path, value)
    return result


def encode(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


@dataclass(frozen=True)
class Keys:
    """The local stack's authority keys, plus one no keyring trusts (for forgeries)."""

    by_id: Mapping[str, SigningKey]
    stranger: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @classmethod
    def load(cls, keys_dir: Path) -> Keys:
        return cls({key_id: SigningKey.load(keys_dir, key_id) for key_id in LOCAL_KEY_IDS})

    def signing_key(self, key_id: str, *, forged: bool = False, header_key_id: str | None = None) -> SigningKey:
        """The key that signs; `forged` swaps in the stranger's private key, `header_key_id` renames it in x-key-id."""
        private = self.stranger if forged else self.by_id[key_id].private_key
        return SigningKey(key_id if header_key_id is None else header_key_id, private)


def signature_headers(key: SigningKey, authority: str, values: Sequence[bytes]) -> list[list[tuple[str, bytes]]]:
    """The headers a publisher sends with each value of one signed batch, in order."""
    return [
        [(Header.CONTENT_TYPE.value, b"application/json"), *((str(name), text.encode()) for name, text in signed.items())]
        for signed in sign_batch(key, authority, values)
    ]


def signed(key: SigningKey, authority: str, value: bytes, event_type: str | None = None) -> list[tuple[str, bytes]]:
    headers = signature_headers(key, authority, [value])[0]
    return headers + ([(Header.EVENT_TYPE.value, event_type.encode())] if event_type else [])


def event_type_of(value: bytes) -> str | None:
    try:
        found = json.loads(value).get("event_type")
    except (ValueError, AttributeError, RecursionError):
        return None
    return found if isinstance(found, str) else None


@dataclass(frozen=True)
class Record:
    """One record to produce; `label` travels in CASE_HEADER so its dead letter can be found."""

    label: str
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


async def produce(producer: AIOKafkaProducer, records: Iterable[Record]) -> None:
    sends = [
        await producer.send(r.topic, r.value, key=r.key, headers=[*r.headers, (CASE_HEADER, r.label.encode())]) for r in records
    ]
    await asyncio.gather(*sends)


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str
    source: str
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes]


class DlqWatcher:
    """Reads the consumer's DLQ from the moment it starts, indexing dead letters by the CASE_HEADER label."""

    def __init__(self, bootstrap_servers: str, consumer: str = CONSUMER) -> None:
        self.topic = dlq_topic(consumer)
        self.reader: AIOKafkaConsumer = kafka_clients.consumer(
            bootstrap_servers, enable_auto_commit=False, group_id=None, max_partition_fetch_bytes=4 * 1024 * 1024
        )
        self.letters: dict[str, DeadLetter] = {}

    async def start(self) -> None:
        await self.reader.start()
        partitions = [TopicPartition(self.topic, p) for p in sorted(await self._partitions())]
        self.reader.assign(partitions)
        await self.reader.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end positions now, before anything is produced
            await self.reader.position(tp)

    async def _partitions(self) -> set[int]:
        deadline = time.monotonic() + 10
        while not (found := self.reader.partitions_for_topic(self.topic)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no partitions for {self.topic}")
            await self.reader._client.force_metadata_update()
        return set(found)

    async def stop(self) -> None:
        await self.reader.stop()

    async def wait_for(self, labels: Iterable[str], timeout: float = 60.0) -> dict[str, DeadLetter]:
        """Dead letters of these labels; whatever has not arrived after `timeout` seconds is simply missing."""
        wanted = set(labels)
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.letters) and time.monotonic() < deadline:
            for records in (await self.reader.getmany(timeout_ms=200)).values():
                for r in records:
                    self._index(r.key, r.value, r.headers)
        return {label: self.letters[label] for label in wanted if label in self.letters}

    def _index(self, key: bytes | None, value: bytes | None, raw_headers: Sequence[tuple[str, bytes]]) -> None:
        headers: dict[str, bytes] = {}
        for name, text in raw_headers:
            headers.setdefault(name, text)
        label = headers.get(CASE_HEADER)
        if label is None:
            return
        self.letters[label.decode()] = DeadLetter(
            reason=headers.get(Header.DLQ_REASON.value, b"").decode(),
            detail=headers.get(Header.DLQ_DETAIL.value, b"").decode(errors="replace"),
            source=headers.get(Header.DLQ_SOURCE.value, b"").decode(),
            key=key,
            value=value,
            headers=headers,
        )


COPY_COLUMNS = (
    "listing_id, version, list, authority, subject_kind, id_hash, id_masked, restrictions, scope, case_number,"
    " effective_from, expires_at, applied_at"
)


async def copy_rows(database_url: str, listing_ids: Iterable[str], schema: str = CONSUMER) -> dict[str, dict[str, Any]]:
    """The consumer's rows for these listings, applied_at included, so any write at all shows as a difference."""
    storable = sorted({i for i in listing_ids if "\x00" not in i})  # PostgreSQL text cannot hold NUL, so no row can
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(f'SELECT {COPY_COLUMNS} FROM "{schema}".listings WHERE listing_id = ANY($1::text[])', storable)
    finally:
        await conn.close()
    return {r["listing_id"]: dict(r) for r in rows}
