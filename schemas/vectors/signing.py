"""Signing test vectors (CONTRACT section 4) from fixed keys and values, by an RFC 6962 reference independent of services/."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from schemas.events import Header, ListingEvent

CONTEXT = b"blacklist-sync.v1.batch:"
SUBJECT_HASH_KEY = b"dev-only-subject-key"  # CONTRACT section 2's local default; the vectors' id_hash values use it
NAMESPACE = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")  # RFC 4122's URL namespace, for stable event ids
WARNING = "TEST KEYS ONLY: these private keys are public; never trust them outside tests."


@dataclass(frozen=True)
class VectorKey:
    key_id: str
    authorities: tuple[str, ...]
    label: str  # the seed is SHA-256 of this label, so anyone can re-derive it

    @property
    def seed(self) -> bytes:
        return hashlib.sha256(self.label.encode()).digest()

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def keyring_entry(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "authorities": list(self.authorities), "public_key": _b64(self.public_raw)}


COURT_KEY = VectorKey("vectors-court", ("court.*",), "blacklist-sync.v1 test vector key: vectors-court")
CAAC_KEY = VectorKey("vectors-caac", ("transport.caac",), "blacklist-sync.v1 test vector key: vectors-caac")
KEYS = (COURT_KEY, CAAC_KEY)


@dataclass(frozen=True)
class BatchSpec:
    name: str
    size: int
    authority: str
    list_id: str
    restrictions: tuple[str, ...]
    key: VectorKey


COURT = (
    "court.bj-1st-intermediate",
    "court.dishonest_debtor",
    ("FLIGHT", "RAIL_PREMIUM", "LUXURY_GOODS", "PRIVATE_SCHOOL_TUITION"),
)
CAAC = ("transport.caac", "transport.flight_ban", ("FLIGHT",))
BATCHES = (
    BatchSpec("court-1", 1, *COURT, COURT_KEY),
    BatchSpec("caac-2", 2, *CAAC, CAAC_KEY),
    BatchSpec("court-3", 3, *COURT, COURT_KEY),
    BatchSpec("court-5", 5, *COURT, COURT_KEY),
    BatchSpec("court-8", 8, *COURT, COURT_KEY),
    BatchSpec("court-13", 13, *COURT, COURT_KEY),
)


# RFC 6962 section 2.1, written as the RFC defines it (recursive split at the largest power of two below n), so the
# vectors do not share an implementation with services/kit/signing.py, which builds the tree level by level.
def leaf_hash(value: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + value).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def tree_hash(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(tree_hash(leaves[:k]), tree_hash(leaves[k:]))


def audit_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]): sibling hashes from the leaf up to the root."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return [*audit_path(m, leaves[:k]), tree_hash(leaves[k:])]
    return [*audit_path(m - k, leaves[k:]), tree_hash(leaves[:k])]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def subject_id(n: int) -> str:
    """A synthetic national id number: test data, nobody's."""
    return f"11010119900307{n:04d}"


def subject_hash(kind: str, raw_id: str) -> str:
    """CONTRACT section 2: HMAC-SHA256 keyed with SUBJECT_HASH_KEY over `kind:ID` (trimmed, upper case)."""
    return hmac.new(SUBJECT_HASH_KEY, f"{kind}:{raw_id.strip().upper()}".encode(), hashlib.sha256).hexdigest()


def _subject(n: int) -> dict[str, str]:
    # Every other name is not ASCII, so that a producer must sign UTF-8 bytes, not characters.
    return {
        "kind": "person",
        "id_hash": subject_hash("person", subject_id(n)),
        "id_masked": f"110101********{n:04d}",
        "display_name": "张 *" if n % 2 else "Zhang *",
    }


# An organization code in lower case: the hash is over the upper-cased id, as a check request's id is hashed.
ORGANIZATION_ID = "91110000ma01abcd2x"


def subject_hashes(batches: list[dict[str, Any]]) -> list[dict[str, str]]:
    people = [{"kind": "person", "id": r["subject_id"]} for b in batches for r in b["records"]]
    return [
        {**s, "id_hash": subject_hash(s["kind"], s["id"])} for s in [*people, {"kind": "organization", "id": ORGANIZATION_ID}]
    ]


def _subject_number(spec: BatchSpec, index: int) -> int:
    return spec.size * 100 + index


def event(spec: BatchSpec, index: int) -> dict[str, Any]:
    """One valid event: issued, amended or revoked in turn, every field fixed."""
    version = index % 3 + 1
    event_type = ("listing.issued", "listing.amended", "listing.revoked")[version - 1]
    revoked = event_type == "listing.revoked"
    listing = {
        "listing_id": f"{spec.authority}:vectors-{spec.name}-{index:02d}",
        "version": version,
        "list": spec.list_id,
        "authority": spec.authority,
        "status": "revoked" if revoked else "active",
        "subject": _subject(_subject_number(spec, index)),
        "restrictions": list(spec.restrictions),
        "scope": "national",
        "legal_basis": {"case_number": f"(2026) Vectors {spec.name} {index}", "decision_ref": None},
        "effective_from": "2026-11-26T00:00:00Z",
        "expires_at": "2028-11-26T00:00:00Z",
        "revocation": {"reason": "paid", "at": "2027-01-15T09:30:00Z"} if revoked else None,
    }
    return {
        "event_id": str(uuid.uuid5(NAMESPACE, f"blacklist-sync.v1 vectors {spec.name} {index}")),
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": f"2026-11-26T10:00:{index:02d}Z",
        "listing": listing,
    }


def value_bytes(document: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON. Any serialization is fine on the wire: what is signed is whatever bytes are sent."""
    value = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    ListingEvent.model_validate_json(value, strict=True)  # a vector a consumer would refuse is no vector
    return value


def batch(spec: BatchSpec) -> dict[str, Any]:
    events = [event(spec, i) for i in range(spec.size)]
    values = [value_bytes(e) for e in events]
    leaves = [leaf_hash(v) for v in values]
    root = tree_hash(leaves)
    signature = _b64(spec.key.private_key.sign(CONTEXT + root))
    records = [_record(spec, i, e, v, leaves, signature) for i, (e, v) in enumerate(zip(events, values, strict=True))]
    return {
        "name": spec.name,
        "size": spec.size,
        "authority": spec.authority,
        "key_id": spec.key.key_id,
        "root_hex": root.hex(),
        "signed_message_hex": (CONTEXT + root).hex(),
        "signature_base64": signature,
        "records": records,
    }


def _record(
    spec: BatchSpec, index: int, doc: dict[str, Any], value: bytes, leaves: list[bytes], signature: str
) -> dict[str, Any]:
    path = audit_path(index, leaves)
    headers = {
        Header.CONTENT_TYPE.value: "application/json",
        Header.EVENT_TYPE.value: doc["event_type"],
        Header.AUTHORITY.value: spec.authority,
        Header.KEY_ID.value: spec.key.key_id,
        Header.MERKLE_SIZE.value: str(spec.size),
        Header.MERKLE_INDEX.value: str(index),
        Header.MERKLE_PATH.value: _b64(b"".join(path)),
        Header.SIGNATURE.value: signature,
    }
    return {
        "index": index,
        "key_text": doc["listing"]["listing_id"],
        "subject_id": subject_id(_subject_number(spec, index)),
        "value_text": value.decode(),
        "value_base64": _b64(value),
        "leaf_hex": leaves[index].hex(),
        "audit_path_hex": [p.hex() for p in path],
        "headers": headers,
    }


@dataclass(frozen=True)
class Negative:
    name: str
    source: tuple[str, int]  # (batch name, record index) the case is made from
    change: Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]
    reason: str  # the DLQ reason code a consumer gives (CONTRACT section 6)
    failure: str


def _tamper(value: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return value.replace(b'"expires_at":"2028-', b'"expires_at":"2029-', 1), headers


def _header(name: str, new: Callable[[str], str]) -> Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]:
    return lambda value, headers: (value, {**headers, name: new(headers[name])})


def _flip_first_path_byte(path: str) -> str:
    raw = bytearray(base64.b64decode(path))
    raw[0] ^= 0x01
    return _b64(bytes(raw))


def _resign_with_caac_key(value: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """A batch of one (its root is its leaf) signed by another authority's key, headers still naming the court key."""
    assert headers[Header.MERKLE_SIZE.value] == "1", "made from a batch of one"
    signature = CAAC_KEY.private_key.sign(CONTEXT + leaf_hash(value))
    return value, {**headers, Header.SIGNATURE.value: _b64(signature)}


NEGATIVES = (
    Negative(
        "tampered_value",
        ("court-3", 1),
        _tamper,
        "bad_signature",
        "expires_at changed after signing: the recomputed root differs",
    ),
    Negative(
        "wrong_index",
        ("court-8", 2),
        _header(Header.MERKLE_INDEX.value, lambda _: "3"),
        "bad_signature",
        "index 3 with the value and path of index 2: the recomputed root differs",
    ),
    Negative(
        "wrong_path",
        ("court-5", 4),
        _header(Header.MERKLE_PATH.value, _flip_first_path_byte),
        "bad_signature",
        "one bit of the audit path flipped: the recomputed root differs",
    ),
    Negative(
        "wrong_size",
        ("court-13", 12),
        _header(Header.MERKLE_SIZE.value, lambda _: "12"),
        "bad_signature",
        "size 12 instead of 13: the index is outside the batch or the path does not fit it",
    ),
    Negative(
        "wrong_key",
        ("court-1", 0),
        _resign_with_caac_key,
        "bad_signature",
        "signed by vectors-caac's private key while x-key-id names vectors-court: the signature does not verify",
    ),
    Negative(
        "unknown_key_id",
        ("court-3", 0),
        _header(Header.KEY_ID.value, lambda _: "vectors-unknown"),
        "unknown_key",
        "x-key-id is not in the keyring",
    ),
    Negative(
        "key_does_not_cover_authority",
        ("caac-2", 0),
        _header(Header.AUTHORITY.value, lambda _: "transport.railway"),
        "unauthorized_authority",
        "vectors-caac covers transport.caac only, and x-authority names transport.railway",
    ),
)


def negative(case: Negative, batches: dict[str, dict[str, Any]]) -> dict[str, Any]:
    record = batches[case.source[0]]["records"][case.source[1]]
    value, headers = case.change(base64.b64decode(record["value_base64"]), dict(record["headers"]))
    return {
        "name": case.name,
        "made_from": {"batch": case.source[0], "index": case.source[1]},
        "key_text": record["key_text"],
        "value_base64": _b64(value),
        "headers": headers,
        "expected_reason": case.reason,
        "expected_failure": case.failure,
    }


def key_document(key: VectorKey) -> dict[str, Any]:
    pem = key.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return {
        "key_id": key.key_id,
        "authorities": list(key.authorities),
        "seed_label": key.label,
        "seed_hex": key.seed.hex(),
        "private_key_pkcs8_pem": pem,
        "public_key_base64": _b64(key.public_raw),
        "keyring_entry": key.keyring_entry(),
    }


def document() -> dict[str, Any]:
    """Everything another implementation needs to check its hashing, tree, signing and verification."""
    batches = {spec.name: batch(spec) for spec in BATCHES}
    return {
        "description": "Signed batches of CONTRACT section 4 and records a consumer must refuse. " + WARNING,
        "hash": "SHA-256",
        "leaf": "SHA-256(0x00 || value bytes)",
        "node": "SHA-256(0x01 || left || right)",
        "tree": "RFC 6962 section 2.1 (RFC 9162 section 2.1.1): split at the largest power of two smaller than n",
        "signature": "Ed25519 (RFC 8032) over signature_context || 32-byte root",
        "signature_context_text": CONTEXT.decode(),
        "signature_context_hex": CONTEXT.hex(),
        "subject_hash_key_text": SUBJECT_HASH_KEY.decode(),
        "keys": [key_document(k) for k in KEYS],
        "keyring": {"keys": [k.keyring_entry() for k in KEYS]},
        "batches": list(batches.values()),
        "subject_hashes": subject_hashes(list(batches.values())),
        "negative": [negative(case, batches) for case in NEGATIVES],
    }


def _fields(value_base64: str, headers: dict[str, str]) -> str:
    return " ".join([f"value={value_base64}", *(f"{name}={text}" for name, text in headers.items())])


def lines(vectors: dict[str, Any]) -> str:
    """The same vectors, one item a line, for readers without a JSON parser (docs/examples/java/VerifyVectors.java)."""
    out = [
        "# Blacklist Sync signing vectors v1, the same as signing-v1.json. " + WARNING,
        "# Fields are separated by one space; base64, hex, ids and header values here never contain one.",
        "# key <key id> <authorities, comma-separated> <public key, raw 32 bytes, base64> <private seed, hex>",
        "# batch <name> <size> <root hex> <signature base64>",
        "# record <batch> <index> <leaf hex> value=<base64> <header>=<value>...   (must verify)",
        "# subject <kind> <id> <id_hash hex>   (CONTRACT section 2, keyed with the subject_hash_key line)",
        "# negative <name> <expected reason> value=<base64> <header>=<value>...   (must be refused with that reason)",
        f"context {vectors['signature_context_hex']}",
    ]
    out += [f"key {k['key_id']} {','.join(k['authorities'])} {k['public_key_base64']} {k['seed_hex']}" for k in vectors["keys"]]
    out.append(f"subject_hash_key {vectors['subject_hash_key_text']}")
    out += [f"subject {s['kind']} {s['id']} {s['id_hash']}" for s in vectors["subject_hashes"]]
    for b in vectors["batches"]:
        out.append(f"batch {b['name']} {b['size']} {b['root_hex']} {b['signature_base64']}")
        out += [
            f"record {b['name']} {r['index']} {r['leaf_hex']} {_fields(r['value_base64'], r['headers'])}" for r in b["records"]
        ]
    out += [
        f"negative {n['name']} {n['expected_reason']} {_fields(n['value_base64'], n['headers'])}" for n in vectors["negative"]
    ]
    return "\n".join(out) + "\n"
