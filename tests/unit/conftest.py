"""Unit-test fixtures shared by several modules: the contract's example event, authority keys and a keyring trusting them."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.kit.signing import Keyring, SigningKey
from services.kit.subjects import id_hash

DEV_SUBJECT_KEY = b"dev-only-subject-key"
SUBJECT_ID = "110101199003071234"

# CONTRACT section 4, verbatim except for a real id_hash in place of the "9f2c…" placeholder.
CONTRACT_EVENT: dict[str, Any] = {
    "event_id": "0b6c3a1e-6f0e-4c59-9d43-2b7c1e0b8e11",
    "event_type": "listing.issued",
    "schema_version": 1,
    "occurred_at": "2026-11-26T10:00:00Z",
    "listing": {
        "listing_id": "court.bj-1st-intermediate:2026-000123",
        "version": 1,
        "list": "court.dishonest_debtor",
        "authority": "court.bj-1st-intermediate",
        "status": "active",
        "subject": {
            "kind": "person",
            "id_hash": id_hash(DEV_SUBJECT_KEY, "person", SUBJECT_ID),
            "id_masked": "110101********1234",
            "display_name": "Zhang *",
        },
        "restrictions": ["FLIGHT", "RAIL_PREMIUM", "LUXURY_GOODS", "PRIVATE_SCHOOL_TUITION"],
        "scope": "national",
        "legal_basis": {"case_number": "(2026) Jing 01 Zhi 123", "decision_ref": "optional"},
        "effective_from": "2026-11-26T00:00:00Z",
        "expires_at": "2028-11-26T00:00:00Z",
        "revocation": None,
    },
}

# The local keys of CONTRACT section 10 and the authorities each covers.
KEY_AUTHORITIES: dict[str, list[str]] = {
    "court-dev": ["court.*"],
    "caac-dev": ["transport.caac"],
    "railway-dev": ["transport.railway"],
    "city-dev": ["city.*"],
}


@pytest.fixture
def contract_event() -> dict[str, Any]:
    """A fresh, mutable copy of the contract's example event."""
    return copy.deepcopy(CONTRACT_EVENT)


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    return {key_id: SigningKey(key_id, Ed25519PrivateKey.generate()) for key_id in KEY_AUTHORITIES}


def public_key_b64(key: SigningKey) -> str:
    return base64.b64encode(key.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


@pytest.fixture
def keyring(signing_keys: dict[str, SigningKey]) -> Keyring:
    """A fresh keyring (empty verification cache, zero counter) trusting every local key."""
    return Keyring.from_json(
        {
            "keys": [
                {"key_id": key_id, "authorities": authorities, "public_key": public_key_b64(signing_keys[key_id])}
                for key_id, authorities in KEY_AUTHORITIES.items()
            ]
        }
    )
