"""Hand-built listing events for tests: one valid court issue by default, fields overridable, signed as a batch of one."""

from __future__ import annotations

import json
import uuid
from typing import Any

from services.kit.settings import DEFAULT_SUBJECT_HASH_KEY
from services.kit.signing import SigningKey, record_headers
from services.kit.subjects import id_hash

COURT = "court.bj-1st-intermediate"


def court_event(
    listing_id: str,
    subject_id: str = "110101198001011234",
    *,
    authority: str = COURT,
    effective_from: str = "2026-01-01T00:00:00Z",
    expires_at: str = "2099-01-01T00:00:00Z",
    **listing: Any,
) -> dict[str, Any]:
    """A valid `listing.issued` event (CONTRACT section 4) of a person on the court list, restricting FLIGHT."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "listing.issued",
        "schema_version": 1,
        "occurred_at": "2026-11-26T10:00:00Z",
        "listing": {
            "listing_id": listing_id,
            "version": 1,
            "list": "court.dishonest_debtor",
            "authority": authority,
            "status": "active",
            "subject": {
                "kind": "person",
                "id_hash": id_hash(DEFAULT_SUBJECT_HASH_KEY.encode(), "person", subject_id),
                "id_masked": "110101********0000",
                "display_name": "Test *",
            },
            "restrictions": ["FLIGHT"],
            "scope": "national",
            "legal_basis": {"case_number": "(2026) Test 1"},
            "effective_from": effective_from,
            "expires_at": expires_at,
            "revocation": None,
            **listing,
        },
    }


def value_of(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def signed(key: SigningKey, authority: str, value: bytes) -> list[tuple[str, bytes]]:
    """Record headers for `value` signed as a batch of one, as the relay (or `blacklist-sync sign`) would send them."""
    return record_headers(key, authority, [value], ["listing.issued"])[0]
