"""Signed listing records for benchmarks: a mix of issue, amend and revoke, about 500-600 bytes each."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from schemas.events import rfc3339
from services.kit.settings import DEFAULT_SUBJECT_HASH_KEY
from services.kit.signing import SignedRecord, SigningKey, sign_records
from services.kit.subjects import id_hash
from services.publishers.partitioner import listing_partition
from services.publishers.relay import RELAY_BATCH

AUTHORITY = "court.bench-intermediate"
SIGNED_BATCH = RELAY_BATCH  # what the relay takes at once under load (one turn, one signature per partition)
CODES = [
    "FLIGHT",
    "RAIL_PREMIUM",
    "STAR_HOTEL",
    "REAL_ESTATE",
    "VEHICLE",
    "VACATION_TRAVEL",
    "LUXURY_GOODS",
    "PRIVATE_SCHOOL_TUITION",
]


Record = SignedRecord


def _event(
    listing_id: str,
    version: int,
    kind: str,
    subject: int,
    rng: random.Random,
    occurred_at: datetime,
    *,
    codes: Sequence[str] | None = None,
    subject_hash: str | None = None,
    authority: str = AUTHORITY,
    term: tuple[str, str] = ("2026-01-01T00:00:00Z", "2028-01-01T00:00:00Z"),
) -> dict[str, object]:
    revoked = kind == "listing.revoked"
    codes = codes or rng.sample(CODES, rng.randint(1, 4))
    subject_hash = subject_hash or id_hash(DEFAULT_SUBJECT_HASH_KEY.encode(), "person", f"1101011980010{subject:05d}")
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "event_type": kind,
        "schema_version": 1,
        "occurred_at": rfc3339(occurred_at),
        "listing": {
            "listing_id": listing_id,
            "version": version,
            "list": "court.dishonest_debtor",
            "authority": authority,
            "status": "revoked" if revoked else "active",
            "subject": {
                "kind": "person",
                "id_hash": subject_hash,
                "id_masked": f"110101********{subject % 10000:04d}",
                "display_name": "Bench *",
            },
            "restrictions": sorted(codes),
            "scope": "national",
            "legal_basis": {"case_number": f"(2026) Bench {listing_id[-6:]}"},
            "effective_from": term[0],
            "expires_at": term[1],
            "revocation": {"reason": "paid", "at": "2026-06-01T00:00:00Z"} if revoked else None,
        },
    }


def events(count: int, seed: int = 7, prefix: str = "bench") -> list[tuple[str, bytes]]:
    """(listing_id, value) pairs: about 60% issues, 25% amendments, 15% revocations, versions in order."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    versions: dict[str, int] = {}
    open_ids: list[str] = []
    out = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.6 or not open_ids:
            listing_id = f"{AUTHORITY}:{prefix}-{n:08d}"
            versions[listing_id] = 1
            open_ids.append(listing_id)
            kind = "listing.issued"
        else:
            listing_id = open_ids[rng.randrange(len(open_ids))]
            versions[listing_id] += 1
            kind = "listing.amended" if roll < 0.85 else "listing.revoked"
            if kind == "listing.revoked":
                open_ids.remove(listing_id)
        event = _event(listing_id, versions[listing_id], kind, n, rng, now)
        out.append((listing_id, json.dumps(event, separators=(",", ":")).encode()))
    return out


def signed(
    pairs: Sequence[tuple[str, bytes]], key: SigningKey, batch: int = SIGNED_BATCH, authority: str = AUTHORITY
) -> list[Record]:
    """Sign (listing_id, value) pairs as the outbox relay does: in turns of `batch`, one signature per partition
    of the listing topics (LISTING_TOPIC_PARTITIONS, as the bench topics have) in each turn."""
    return sign_records(key, authority, pairs, batch, listing_partition)


def in_force_term(now: datetime | None = None) -> tuple[str, str]:
    """A term in force now and for the next year, whatever day the bench runs."""
    now = now or datetime.now(UTC)
    return rfc3339(now - timedelta(days=1)), rfc3339(now + timedelta(days=365))


def flight_listings(
    count: int, prefix: str, subject_hash: Callable[[int], str], authority: str = AUTHORITY, start: int = 0
) -> list[tuple[str, bytes]]:
    """Listings start..start+count-1: distinct, issued, in force now, each banning FLIGHT, so the airline copy keeps all."""
    rng = random.Random(start)
    now = datetime.now(UTC)
    term = in_force_term(now)
    out = []
    for n in range(start, start + count):
        listing_id = f"{authority}:{prefix}-{n:08d}"
        codes = sorted({"FLIGHT", *rng.sample(CODES, rng.randint(0, 3))})
        event = _event(
            listing_id,
            1,
            "listing.issued",
            n,
            rng,
            now,
            codes=codes,
            subject_hash=subject_hash(n),
            authority=authority,
            term=term,
        )
        out.append((listing_id, json.dumps(event, separators=(",", ":")).encode()))
    return out


UNSTAMPED = b"0000-00-00T00:00:00.000000Z"  # as long as every stamp, so a value's size never changes


def unstamped(listing_id: str, n: int, rng: random.Random, hash_key: bytes) -> bytes:
    """One issued FLIGHT listing built ahead, its occurred_at left to stamp() at send time (latency benches)."""
    now = datetime.now(UTC)
    subject_hash = id_hash(hash_key, "person", f"9903031980{n:08d}")
    codes = sorted({"FLIGHT", *rng.sample(CODES, rng.randint(0, 3))})
    event = _event(listing_id, 1, "listing.issued", n, rng, now, codes=codes, subject_hash=subject_hash, term=in_force_term(now))
    event["occurred_at"] = UNSTAMPED.decode()
    return json.dumps(event, separators=(",", ":")).encode()


def stamp(value: bytes, moment: datetime) -> bytes:
    """The value with occurred_at set to `moment`, to the microsecond."""
    return value.replace(UNSTAMPED, moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode(), 1)
