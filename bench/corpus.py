"""Signed listing records for benchmarks: a mix of issue, amend and revoke, about 500-600 bytes each."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from services.kit.settings import DEFAULT_SUBJECT_HASH_KEY
from services.kit.signing import SigningKey, sign_batch
from services.kit.subjects import id_hash

AUTHORITY = "court.bench-intermediate"
SIGNED_BATCH = 500  # what the relay signs at once under load
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


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def _event(
    listing_id: str, version: int, kind: str, subject: int, rng: random.Random, occurred_at: datetime
) -> dict[str, object]:
    revoked = kind == "listing.revoked"
    codes = rng.sample(CODES, rng.randint(1, 4))
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "event_type": kind,
        "schema_version": 1,
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "listing": {
            "listing_id": listing_id,
            "version": version,
            "list": "court.dishonest_debtor",
            "authority": AUTHORITY,
            "status": "revoked" if revoked else "active",
            "subject": {
                "kind": "person",
                "id_hash": id_hash(DEFAULT_SUBJECT_HASH_KEY.encode(), "person", f"1101011980010{subject:05d}"),
                "id_masked": f"110101********{subject % 10000:04d}",
                "display_name": "Bench *",
            },
            "restrictions": sorted(codes),
            "scope": "national",
            "legal_basis": {"case_number": f"(2026) Bench {listing_id[-6:]}"},
            "effective_from": "2026-01-01T00:00:00Z",
            "expires_at": "2028-01-01T00:00:00Z",
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


def signed(pairs: list[tuple[str, bytes]], key: SigningKey, batch: int = SIGNED_BATCH) -> list[Record]:
    records = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        for (listing_id, value), headers in zip(chunk, sign_batch(key, AUTHORITY, [v for _, v in chunk]), strict=True):
            records.append(
                Record(
                    listing_id.encode(),
                    value,
                    [("content-type", b"application/json"), *((str(k), v.encode()) for k, v in headers.items())],
                )
            )
    return records
