"""Synthetic authority histories for fault tests: signed listing events, produced straight to a listing topic."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka.structs import RecordMetadata

from schemas.catalogue import Restriction
from schemas.events import (
    EventType,
    LegalBasis,
    Listing,
    ListingEvent,
    Revocation,
    RevocationReason,
    Status,
    Subject,
    SubjectKind,
    to_wire,
)
from services.kit.settings import DEFAULT_SUBJECT_HASH_KEY
from services.kit.signing import SigningKey, sign_batch
from services.kit.subjects import id_hash, mask_id
from tests import kafka_clients

TOPIC = "court.listings.v1"
LIST = "court.dishonest_debtor"
SIGNED_BATCH = 250
R = Restriction
# Restriction sets a court may impose: the consumers apply some of them, one (VEHICLE, STAR_HOTEL) none.
RESTRICTION_SETS: tuple[tuple[Restriction, ...], ...] = (
    (R.FLIGHT, R.RAIL_PREMIUM, R.LUXURY_GOODS, R.PRIVATE_SCHOOL_TUITION, R.STAR_HOTEL),
    (R.FLIGHT,),
    (R.RAIL_PREMIUM, R.LUXURY_GOODS),
    (R.VEHICLE, R.STAR_HOTEL),
    (R.PRIVATE_SCHOOL_TUITION, R.VACATION_TRAVEL),
)


@dataclass(frozen=True)
class Sent:
    """One record as Kafka stored it: where it landed and what it carried (None: a poison record)."""

    listing_id: str
    version: int | None
    partition: int
    offset: int


@dataclass
class History:
    """An authority's decisions for one test run: every event in order, the newest state of each listing."""

    run: str
    authority: str
    rng: random.Random
    events: list[ListingEvent] = field(default_factory=list)
    newest: dict[str, Listing] = field(default_factory=dict)
    subjects: dict[str, str] = field(default_factory=dict)
    _count: int = 0

    @classmethod
    def start(cls, run: str) -> History:
        return cls(run=run, authority=f"court.faults-{run}", rng=random.Random(run))

    def issue(self, restrictions: Sequence[Restriction] | None = None, expired: bool = False) -> Listing:
        self._count += 1
        raw_id = f"FAULTS{self.run}{self._count:08d}".upper()
        now = datetime.now(UTC).replace(microsecond=0)
        start = now - timedelta(days=800) if expired else now - timedelta(days=1)
        listing = Listing(
            listing_id=f"{self.authority}:{self._count:06d}",
            version=1,
            list=LIST,
            authority=self.authority,
            status=Status.ACTIVE,
            subject=Subject(
                kind=SubjectKind.PERSON,
                id_hash=id_hash(DEFAULT_SUBJECT_HASH_KEY.encode(), "person", raw_id),
                id_masked=mask_id(raw_id),
                display_name="Faults *",
            ),
            restrictions=tuple(restrictions or self.rng.choice(RESTRICTION_SETS)),
            legal_basis=LegalBasis(case_number=f"(2026) Faults {self.run} {self._count}"),
            effective_from=start,
            expires_at=start + timedelta(days=730),
        )
        self.subjects[listing.listing_id] = raw_id
        return self._record(EventType.ISSUED, listing)

    def amend(self, listing_id: str, restrictions: Sequence[Restriction] | None = None) -> Listing:
        old = self.newest[listing_id]
        choices = [s for s in RESTRICTION_SETS if s != old.restrictions]
        changed = old.model_copy(
            update={"version": old.version + 1, "restrictions": tuple(restrictions or self.rng.choice(choices))}
        )
        return self._record(EventType.AMENDED, changed)

    def revoke(self, listing_id: str) -> Listing:
        old = self.newest[listing_id]
        revocation = Revocation(reason=RevocationReason.PAID, at=datetime.now(UTC).replace(microsecond=0))
        changed = old.model_copy(update={"version": old.version + 1, "status": Status.REVOKED, "revocation": revocation})
        return self._record(EventType.REVOKED, changed)

    def mixed(self, listings: int, amended: float = 0.3, revoked: float = 0.15) -> list[ListingEvent]:
        """Issue `listings`, then amend and revoke shares of them: the events added, oldest first."""
        first = len(self.events)
        issued = [self.issue(expired=self.rng.random() < 0.05).listing_id for _ in range(listings)]
        for listing_id in self.rng.sample(issued, int(listings * amended)):
            self.amend(listing_id)
        for listing_id in self.rng.sample(issued, int(listings * revoked)):
            self.revoke(listing_id)
        return self.events[first:]

    def churn(self, count: int) -> list[ListingEvent]:
        """Amend or revoke `count` active listings already issued, mixed with new issues: the events added."""
        first = len(self.events)
        active = [i for i, x in self.newest.items() if x.status is Status.ACTIVE]
        for listing_id in self.rng.sample(active, min(count, len(active))):
            if self.rng.random() < 0.3:
                self.revoke(listing_id)
            else:
                self.amend(listing_id)
            if self.rng.random() < 0.5:
                self.issue()
        return self.events[first:]

    def _record(self, event_type: EventType, listing: Listing) -> Listing:
        # Validated like a record on the wire, so a test can never feed the consumer an impossible history.
        listing = Listing.model_validate(listing.model_dump())
        occurred = datetime.now(UTC).replace(microsecond=0)
        event = ListingEvent(
            event_id=uuid.uuid4(), event_type=event_type, schema_version=1, occurred_at=occurred, listing=listing
        )
        self.events.append(event)
        self.newest[listing.listing_id] = listing
        return listing


def signing_key(home: Path) -> SigningKey:
    return SigningKey.load(home / "keys", "court-dev")


def signed_records(key: SigningKey, authority: str, values: Sequence[bytes]) -> list[list[tuple[str, bytes]]]:
    """The headers a court relay would attach, signing `values` in batches as the relay does."""
    headers: list[list[tuple[str, bytes]]] = []
    for start in range(0, len(values), SIGNED_BATCH):
        chunk = values[start : start + SIGNED_BATCH]
        headers += [
            [("content-type", b"application/json"), *((str(k), v.encode()) for k, v in signed.items())]
            for signed in sign_batch(key, authority, chunk)
        ]
    return headers


async def produce(bootstrap: str, key: SigningKey, events: Sequence[ListingEvent], poison: Iterable[str] = ()) -> list[Sent]:
    """Send the events signed (and a poison record before the event of each listing id in `poison`)."""
    values = [to_wire(e) for e in events]
    headers = signed_records(key, events[0].listing.authority, values) if events else []
    for record_headers, event in zip(headers, events, strict=True):
        record_headers.append(("event-type", event.event_type.value.encode()))
    poisoned = set(poison)
    producer = kafka_clients.producer(bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    await producer.start()
    try:
        pending: list[tuple[str, int | None, object]] = []
        for event, value, record_headers in zip(events, values, headers, strict=True):
            listing = event.listing
            if listing.listing_id in poisoned:
                poisoned.discard(listing.listing_id)
                future = await producer.send(TOPIC, b"\xff{not json", key=listing.listing_id.encode(), headers=record_headers)
                pending.append((listing.listing_id, None, future))
            future = await producer.send(TOPIC, value, key=listing.listing_id.encode(), headers=record_headers)
            pending.append((listing.listing_id, listing.version, future))
        sent = []
        for listing_id, version, future in pending:
            metadata: RecordMetadata = await future  # type: ignore[misc]
            sent.append(Sent(listing_id, version, metadata.partition, metadata.offset))
        return sent
    finally:
        await producer.stop()
