"""Property on the real apply path and PostgreSQL: any delivery of random histories leaves each copy at the newest version."""

# Histories: issue, amendments, revocation, expiry; delivered with duplicates, replayed from earliest, old versions
# redriven. Each copy must equal the newest version per listing filtered by its consumer's policy, a revoked listing
# never comes back, and an expired one never blocks.

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer, ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.consumers import store
from services.consumers.copy import CopyKeeper
from services.consumers.registry import POLICIES
from services.kit.migrations import migrate
from services.kit.settings import DEFAULT_SUBJECT_HASH_KEY
from services.kit.signing import Keyring, SigningKey, sign_batch
from services.kit.subjects import id_hash
from tests import kafka_clients
from tests.conftest import Infra

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
RETENTION = timedelta(days=3)
SUBJECTS = ("110101198001011234", "310101197505051111", "440301199012121212")

# CONTRACT section 5, written out here as the oracle rather than read from the policies under test.
KEPT_CODES: dict[str, frozenset[str]] = {
    "airline": frozenset({"FLIGHT"}),
    "ticketing": frozenset({"FLIGHT", "RAIL", "RAIL_PREMIUM"}),
    "luxury-retail": frozenset({"LUXURY_GOODS"}),
    "admissions": frozenset({"PRIVATE_SCHOOL_TUITION"}),
}


@dataclass(frozen=True)
class Publisher:
    """An authority, the list it may publish, the codes that list may carry, and where it applies."""

    authority: str
    list_id: str
    key_id: str
    topic: str
    codes: tuple[str, ...]
    scope: str = "national"


PUBLISHERS = (
    Publisher(
        "court.bj-1st-intermediate",
        "court.dishonest_debtor",
        "court-dev",
        "court.listings.v1",
        ("FLIGHT", "RAIL_PREMIUM", "LUXURY_GOODS", "PRIVATE_SCHOOL_TUITION", "STAR_HOTEL", "VEHICLE"),
    ),
    Publisher("transport.caac", "transport.flight_ban", "caac-dev", "transport.listings.v1", ("FLIGHT",)),
    Publisher("transport.railway", "transport.rail_ban", "railway-dev", "transport.listings.v1", ("RAIL",)),
    Publisher(
        "city.hangzhou",
        "city.hangzhou.transit_fare_evasion",
        "city-dev",
        "city-pilot.listings.v1",
        ("LUXURY_GOODS", "CITY_SUBSIDY"),
        "CN-ZJ-HZ",
    ),
)


@dataclass(frozen=True)
class State:
    """A listing's full state at one version, as the event carries it."""

    listing_id: str
    version: int
    publisher: Publisher
    subject: str
    restrictions: tuple[str, ...]
    case_number: str
    effective_from: datetime
    expires_at: datetime
    revoked: bool = False

    def event(self) -> dict[str, Any]:
        kind = "listing.revoked" if self.revoked else "listing.issued" if self.version == 1 else "listing.amended"
        return {
            "event_id": str(uuid.uuid4()),
            "event_type": kind,
            "schema_version": 1,
            "occurred_at": NOW.isoformat(),
            "listing": {
                "listing_id": self.listing_id,
                "version": self.version,
                "list": self.publisher.list_id,
                "authority": self.publisher.authority,
                "status": "revoked" if self.revoked else "active",
                "subject": {
                    "kind": "person",
                    "id_hash": subject_hash(self.subject),
                    "id_masked": self.subject[:6] + "********" + self.subject[-4:],
                    "display_name": "Property *",
                },
                "restrictions": list(self.restrictions),
                "scope": self.publisher.scope,
                "legal_basis": {"case_number": self.case_number},
                "effective_from": self.effective_from.isoformat(),
                "expires_at": self.expires_at.isoformat(),
                "revocation": {"reason": "paid", "at": NOW.isoformat()} if self.revoked else None,
            },
        }


def subject_hash(subject: str) -> str:
    return id_hash(DEFAULT_SUBJECT_HASH_KEY.encode(), "person", subject)


# --- strategies --------------------------------------------------------------------------------------------------------

# Expiry relative to now: long past retention, expired within retention, about to expire, far ahead.
EXPIRY_DAYS = (-30, -1, 2, 400)


@st.composite
def terms(draw: st.DrawFn) -> tuple[datetime, datetime]:
    expires_at = NOW + timedelta(days=draw(st.sampled_from(EXPIRY_DAYS)), hours=draw(st.integers(0, 23)))
    start_offset = draw(st.sampled_from((-800, -60, 1)))  # started long ago, recently, or not yet in force
    effective_from = min(NOW + timedelta(days=start_offset), expires_at - timedelta(days=1))
    return effective_from, expires_at


@st.composite
def history(draw: st.DrawFn, number: int) -> list[State]:
    """Issue, then amendments (restrictions, expiry) and perhaps a revocation, which ends the history."""
    publisher = draw(st.sampled_from(PUBLISHERS))
    codes = st.lists(st.sampled_from(publisher.codes), min_size=1, unique=True).map(lambda c: tuple(sorted(c)))
    effective_from, expires_at = draw(terms())
    state = State(
        f"{publisher.authority}:prop-{uuid.uuid4().hex[:10]}-{number}",
        1,
        publisher,
        draw(st.sampled_from(SUBJECTS)),
        draw(codes),
        f"(2026) Property {number}",
        effective_from,
        expires_at,
    )
    states = [state]
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 3)) == 0:
            states.append(replace(states[-1], version=states[-1].version + 1, revoked=True))
            break
        _, new_expiry = draw(terms())
        amended = replace(states[-1], version=states[-1].version + 1, restrictions=draw(codes))
        if new_expiry > amended.effective_from:
            amended = replace(amended, expires_at=new_expiry)
        states.append(amended)
    return states


@dataclass(frozen=True)
class Plan:
    """Who publishes what, and how the records reach the consumer: live (a prefix of each history, duplicated,
    interleaved), replayed from earliest (everything, again), then old versions redriven out of order."""

    histories: list[list[State]]
    live: list[State]
    replay: list[State]
    redrive: list[State]
    batch_sizes: list[int]


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    histories = [draw(history(n)) for n in range(draw(st.integers(1, 8)))]
    delivered = [h[: draw(st.integers(1, len(h)))] for h in histories]
    # Kafka keeps one listing's records in order (one key, one partition); listings interleave freely.
    queues = [[s for s in h for _ in range(draw(st.integers(1, 2)))] for h in delivered]
    live: list[State] = []
    while any(queues):
        queue = draw(st.sampled_from([q for q in queues if q]))
        live.append(queue.pop(0))
    replay = [s for h in histories for s in h]
    older = [s for h in histories for s in h[:-1]]
    redrive = draw(st.permutations(older)) if older else []
    return Plan(histories, live, replay, list(redrive), draw(st.lists(st.integers(1, 7), min_size=1, max_size=5)))


# --- the oracle --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A row of a copy as the oracle sees it; a version marker has nothing but its version."""

    version: int
    list: str | None = None
    authority: str | None = None
    subject_kind: str | None = None
    id_hash: str | None = None
    restrictions: tuple[str, ...] | None = None
    scope: str | None = None
    case_number: str | None = None
    effective_from: datetime | None = None
    expires_at: datetime | None = None


def expected_copy(consumer: str, delivered: Sequence[State]) -> dict[str, Row]:
    """Newest delivered version per listing, filtered by the consumer's codes; markers for what it must forget."""
    newest: dict[str, State] = {}
    for s in delivered:
        if s.listing_id not in newest or s.version > newest[s.listing_id].version:
            newest[s.listing_id] = s
    copy: dict[str, Row] = {}
    for lid, s in newest.items():
        kept = tuple(sorted(set(s.restrictions) & KEPT_CODES[consumer]))
        if kept and not s.revoked and s.expires_at >= NOW - RETENTION:
            copy[lid] = Row(
                s.version,
                s.publisher.list_id,
                s.publisher.authority,
                "person",
                subject_hash(s.subject),
                kept,
                s.publisher.scope,
                s.case_number,
                s.effective_from,
                s.expires_at,
            )
        elif s.version > 1:
            copy[lid] = Row(s.version)
    return copy


def expected_blocking(copy: dict[str, Row], subject: str, codes: frozenset[str], at: datetime, region: str | None) -> set[str]:
    found = set()
    for lid, row in copy.items():
        if row.id_hash != subject_hash(subject) or not set(row.restrictions or ()) & codes:
            continue
        assert row.effective_from is not None and row.expires_at is not None
        if row.effective_from <= at < row.expires_at and row.scope in ("national", region):
            found.add(lid)
    return found


# --- the real apply path -----------------------------------------------------------------------------------------------


@dataclass
class Copy:
    consumer: str
    schema: str
    pool: asyncpg.Pool
    keeper: CopyKeeper


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def copies(infra: Infra) -> AsyncIterator[dict[str, Copy]]:
    """One scratch schema per consumer, migrated like the real one, and the consumer's CopyKeeper over it."""
    run = uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(infra.database_url)
    dlq: AIOKafkaProducer = kafka_clients.producer(infra.bootstrap_servers)
    await dlq.start()
    keyring = Keyring.load(infra.keyring_path)
    made: dict[str, Copy] = {}
    try:
        for consumer, policy in POLICIES.items():
            schema = f"prop_{run}_{consumer.replace('-', '_')}"
            await migrate(admin, consumer, schema=schema)
            pool = await asyncpg.create_pool(infra.database_url, min_size=1, max_size=2, server_settings={"search_path": schema})
            made[consumer] = Copy(consumer, schema, pool, CopyKeeper(policy, pool, keyring, dlq, retention=RETENTION))
        yield made
    finally:
        for c in made.values():
            await c.pool.close()
            await admin.execute(f'DROP SCHEMA "{c.schema}" CASCADE')
        await admin.close()
        await dlq.stop()


@pytest.fixture(scope="module")
def signing_keys(infra: Infra) -> dict[str, SigningKey]:
    return {p.key_id: SigningKey.load(infra.home / "keys", p.key_id) for p in PUBLISHERS}


def signed_records(states: Sequence[State], keys: dict[str, SigningKey]) -> dict[tuple[str, int], ConsumerRecord[bytes, bytes]]:
    """Every version, signed once as the relay would: one Merkle batch per authority, each record verifiable alone."""
    records: dict[tuple[str, int], ConsumerRecord[bytes, bytes]] = {}
    for publisher in PUBLISHERS:
        mine = [s for s in states if s.publisher is publisher]
        if not mine:
            continue
        values = [json.dumps(s.event()).encode() for s in mine]
        for offset, (s, value, headers) in enumerate(
            zip(mine, values, sign_batch(keys[publisher.key_id], publisher.authority, values), strict=True)
        ):
            record_headers = [("content-type", b"application/json"), *((str(k), v.encode()) for k, v in headers.items())]
            records[(s.listing_id, s.version)] = ConsumerRecord(
                publisher.topic,
                0,
                offset,
                0,
                0,
                s.listing_id.encode(),
                value,
                None,
                len(s.listing_id),
                len(value),
                record_headers,
            )
    return records


def batches(items: list[Any], sizes: list[int]) -> list[list[Any]]:
    out, i, n = [], 0, 0
    while i < len(items):
        size = sizes[n % len(sizes)]
        out.append(items[i : i + size])
        i, n = i + size, n + 1
    return out


async def deliver(
    copy: Copy, states: list[State], records: dict[tuple[str, int], ConsumerRecord[bytes, bytes]], sizes: list[int]
) -> None:
    for batch in batches(states, sizes):
        outcome = await copy.keeper.process([records[(s.listing_id, s.version)] for s in batch])
        assert outcome.dead_lettered == 0, "a valid signed record was refused"


async def rows(copy: Copy) -> dict[str, Row]:
    found = await copy.pool.fetch(
        "SELECT listing_id, version, list, authority, subject_kind, id_hash, restrictions, scope, case_number,"
        " effective_from, expires_at FROM listings"
    )
    return {
        r["listing_id"]: Row(
            r["version"],
            r["list"],
            r["authority"],
            r["subject_kind"],
            r["id_hash"],
            tuple(sorted(r["restrictions"])) if r["restrictions"] is not None else None,
            r["scope"],
            r["case_number"],
            r["effective_from"],
            r["expires_at"],
        )
        for r in found
    }


async def assert_checks_agree(copy: Copy, expected: dict[str, Row]) -> None:
    codes = KEPT_CODES[copy.consumer]
    for subject in SUBJECTS:
        for at in (NOW, NOW + timedelta(days=3), NOW - timedelta(days=2)):
            for region in (None, "CN-ZJ-HZ"):
                found = await store.blocking(copy.pool, subject_hash(subject), "person", sorted(codes), at, region)
                assert {b.listing_id for b in found} == expected_blocking(expected, subject, codes, at, region)
                assert all(at < b.expires_at for b in found), "an expired listing blocked a check"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=plans())
async def test_every_copy_is_the_newest_version_per_listing_under_duplicates_replay_and_redrive(
    plan: Plan, copies: dict[str, Copy], signing_keys: dict[str, SigningKey]
) -> None:
    records = signed_records(plan.replay, signing_keys)
    revoked = {h[-1].listing_id for h in plan.histories if h[-1].revoked}
    for copy in copies.values():
        await copy.pool.execute("TRUNCATE listings")
        delivered: list[State] = []
        for phase in (plan.live, plan.replay, plan.redrive):
            await deliver(copy, phase, records, plan.batch_sizes)
            delivered += phase
            expected = expected_copy(copy.consumer, delivered)
            assert await rows(copy) == expected, f"{copy.consumer} after {len(delivered)} deliveries"
        await assert_checks_agree(copy, expected)
        current = await rows(copy)
        for lid in revoked:
            assert lid not in current or current[lid].id_hash is None, f"{copy.consumer} revived revoked {lid}"
