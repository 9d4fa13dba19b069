"""Rehearsal data for the ops tools: signed listing records straight to Kafka, and the rebuild timing.

    python -m services.ops.bench --listings 100000 --consumer airline

produces that many court listings (signed in batches with the local court-dev key, as the relay does)
and then times `blacklist-sync ops replay CONSUMER --rebuild` as an operator would run it."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from schemas.catalogue import FAMILIES
from schemas.events import rfc3339
from services.kit.kafka import idempotent_producer
from services.kit.settings import Settings
from services.kit.signing import SignedRecord, SigningKey, sign_records
from services.kit.subjects import id_hash, mask_id
from services.publishers.partitioner import listing_partition

COURT = "court.ops-rehearsal"
SIGNED_BATCH = 500


def listing_event(
    listing_id: str,
    subject_id: str,
    hash_key: bytes,
    *,
    version: int = 1,
    authority: str = COURT,
    list_id: str = "court.dishonest_debtor",
    restrictions: Sequence[str] = ("FLIGHT", "RAIL_PREMIUM", "LUXURY_GOODS", "PRIVATE_SCHOOL_TUITION"),
    revoked: bool = False,
    scope: str = "national",
) -> bytes:
    """The value bytes of one listing event (CONTRACT section 4) for a person with a raw id we know."""
    event_type = "listing.revoked" if revoked else ("listing.issued" if version == 1 else "listing.amended")
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": rfc3339(datetime.now(UTC)),
        "listing": {
            "listing_id": listing_id,
            "version": version,
            "list": list_id,
            "authority": authority,
            "status": "revoked" if revoked else "active",
            "subject": {
                "kind": "person",
                "id_hash": id_hash(hash_key, "person", subject_id),
                "id_masked": mask_id(subject_id),
                "display_name": "Rehearsal *",
            },
            "restrictions": list(restrictions),
            "scope": scope,
            "legal_basis": {"case_number": f"(2026) Rehearsal {listing_id[-12:]}"},
            "effective_from": "2026-01-01T00:00:00Z",
            "expires_at": "2099-01-01T00:00:00Z",
            "revocation": {"reason": "paid", "at": "2026-06-01T00:00:00Z"} if revoked else None,
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


def signed(key: SigningKey, authority: str, pairs: Sequence[tuple[str, bytes]], batch: int = SIGNED_BATCH) -> list[SignedRecord]:
    """Signed as the relay signs: each turn of `batch` split by the partition each record goes to."""
    return sign_records(key, authority, pairs, batch, listing_partition)


async def produce(settings: Settings, topic: str, records: Sequence[SignedRecord]) -> None:
    """Send every record and wait until Kafka has acknowledged them all."""
    producer = idempotent_producer(settings, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        pending = [await producer.send(topic, r.value, key=r.key, headers=r.headers) for r in records]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def rehearsal_listings(settings: Settings, count: int) -> list[SignedRecord]:
    run = uuid.uuid4().hex[:8]
    pairs = [(f"{COURT}:{run}-{n:07d}", f"1101011980{n % 100_000_000:08d}") for n in range(count)]
    values = [(lid, listing_event(lid, subject, settings.subject_hash_key)) for lid, subject in pairs]
    return signed(SigningKey.load(settings.keys_dir, "court-dev"), COURT, values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.ops.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--consumer", default="airline")
    parser.add_argument("--skip-produce", action="store_true", help="time the rebuild of what the topics already hold")
    parser.add_argument("--skip-rebuild", action="store_true", help="only produce the listings")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if not args.skip_produce:
        started = time.monotonic()
        records = rehearsal_listings(settings, args.listings)
        signed_s = time.monotonic() - started
        asyncio.run(produce(settings, FAMILIES["court"].topic, records))
        print(f"produced {len(records):,} signed listings in {time.monotonic() - started:.1f}s (signing {signed_s:.1f}s)")
    if args.skip_rebuild:
        return 0
    command = [sys.executable, "-m", "services.cli", "ops", "replay", args.consumer, "--rebuild"]
    started = time.monotonic()
    finished = subprocess.run(command, check=False)
    took = time.monotonic() - started
    print(f"`blacklist-sync ops replay {args.consumer} --rebuild` took {took:.1f}s (exit {finished.returncode})")
    return finished.returncode


if __name__ == "__main__":
    sys.exit(main())
