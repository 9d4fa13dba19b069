"""Hypothesis strategies of hostile records, each with the dead-letter reasons the contract allows for it."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from schemas.events import DlqReason
from tests.adversarial.records import (
    COURT,
    COURT_TOPIC,
    LOCAL_KEY_IDS,
    Keys,
    Record,
    encode,
    event_document,
    signed,
    with_changes,
)

INVALID_JSON = DlqReason.INVALID_JSON.value
INVALID_SCHEMA = DlqReason.INVALID_SCHEMA.value
BAD_SIGNATURE = DlqReason.BAD_SIGNATURE.value


@dataclass(frozen=True)
class Hostile:
    kind: str
    record: Record
    allowed: frozenset[str]  # the dead-letter reasons the contract allows for this record
    listing_id: str  # the listing it is about, which must never reach the copy


def fresh_id() -> str:
    return f"{COURT}:fuzz-{uuid.uuid4().hex}"


def court_record(kind: str, listing_id: str, value: bytes, keys: Keys, allowed: set[str], **sign: Any) -> Hostile:
    headers = signed(keys.signing_key(sign.get("key_id", "court-dev")), sign.get("authority", COURT), value)
    return Hostile(
        kind, Record(f"fuzz/{uuid.uuid4().hex}", COURT_TOPIC, listing_id.encode(), value, headers), frozenset(allowed), listing_id
    )


def valid_event(listing_id: str, subject: str) -> dict[str, Any]:
    return event_document(listing_id, subject)


# JSON values of every type; a path's wrong values are those whose type the contract never accepts there.
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6
)
NOT_TEXT = JSON_VALUES.filter(lambda v: not isinstance(v, str))
NOT_INT = JSON_VALUES.filter(lambda v: isinstance(v, bool) or not isinstance(v, int))
NOT_LIST = JSON_VALUES.filter(lambda v: not isinstance(v, list))
NOT_OBJECT = JSON_VALUES.filter(lambda v: not isinstance(v, dict))
TEXT_NOT_TIME = st.text(max_size=30).filter(lambda t: not t[:4].isdigit())
WRONG: dict[str, st.SearchStrategy[Any]] = {
    # 1.0 is the number 1 in JSON (and in the JSON Schema's const), so it is not a wrong version; true is.
    "schema_version": JSON_VALUES.filter(lambda v: v != 1 or isinstance(v, bool)),
    "event_id": NOT_TEXT,
    "event_type": JSON_VALUES.filter(lambda v: v not in ("listing.issued", "listing.amended", "listing.revoked")),
    "occurred_at": st.one_of(NOT_TEXT, TEXT_NOT_TIME),
    "listing": NOT_OBJECT,
    "listing.listing_id": NOT_TEXT,
    "listing.version": NOT_INT,
    "listing.status": JSON_VALUES.filter(lambda v: v not in ("active", "revoked")),
    "listing.subject": NOT_OBJECT,
    "listing.subject.id_hash": JSON_VALUES,  # any value but 64 lowercase hex characters
    "listing.restrictions": NOT_LIST,
    "listing.legal_basis": NOT_OBJECT,
    "listing.legal_basis.case_number": NOT_TEXT,
    "listing.effective_from": st.one_of(NOT_TEXT, TEXT_NOT_TIME),
    "listing.scope": NOT_TEXT,
}
LIMITS = {  # string fields and their maximum lengths (CONTRACT section 4 models)
    "listing.listing_id": 200,
    "listing.subject.id_masked": 64,
    "listing.subject.display_name": 128,
    "listing.legal_basis.case_number": 128,
    "listing.legal_basis.decision_ref": 256,
}


@st.composite
def random_bytes(draw: st.DrawFn, keys: Keys) -> Hostile:
    value = draw(st.binary(max_size=4096))
    return court_record("random_bytes", fresh_id(), value, keys, {INVALID_JSON, INVALID_SCHEMA})


@st.composite
def truncated(draw: st.DrawFn, keys: Keys, subject: str) -> Hostile:
    listing_id = fresh_id()
    full = encode(valid_event(listing_id, subject))
    return court_record("truncated", listing_id, full[: draw(st.integers(0, len(full) - 1))], keys, {INVALID_JSON})


@st.composite
def wrong_type(draw: st.DrawFn, keys: Keys, subject: str) -> Hostile:
    listing_id = fresh_id()
    path = draw(st.sampled_from(sorted(WRONG)))
    document = with_changes(valid_event(listing_id, subject), {path: draw(WRONG[path])})
    return court_record("wrong_type", listing_id, encode(document), keys, {INVALID_SCHEMA})


@st.composite
def huge(draw: st.DrawFn, keys: Keys, subject: str) -> Hostile:
    """A string past its limit or a restriction array past the number of codes, up to past the value size limit."""
    listing_id = fresh_id()
    document = valid_event(listing_id, subject)
    if draw(st.booleans()):
        path = draw(st.sampled_from(sorted(LIMITS)))
        text = draw(st.sampled_from("x中\u00e9")) * draw(st.integers(LIMITS[path] + 1, 300_000))
        document = with_changes(document, {path: text})
    else:
        document = with_changes(document, {"listing.restrictions": ["FLIGHT"] * draw(st.integers(11, 40_000))})
    return court_record("huge", listing_id, encode(document), keys, {INVALID_SCHEMA})


@st.composite
def deeply_nested(draw: st.DrawFn, keys: Keys, subject: str) -> Hostile:
    listing_id = fresh_id()
    depth = draw(st.integers(2, 100_000))
    closed = draw(st.booleans())
    placeholder = "$NEST"
    text = json.dumps(with_changes(valid_event(listing_id, subject), {"listing.restrictions": placeholder}))
    nest = "[" * depth + ("]" * depth if closed else "")
    value = text.replace(json.dumps(placeholder), nest, 1).encode()
    return court_record("deeply_nested", listing_id, value, keys, {INVALID_SCHEMA} if closed else {INVALID_JSON, INVALID_SCHEMA})


@st.composite
def tampered(draw: st.DrawFn, keys: Keys, subject: str, victim_id: str) -> Hostile:
    """A genuine court signature, then one byte of the value changed: on a fresh listing or a revocation of the victim."""
    about_victim = draw(st.booleans())
    listing_id = victim_id if about_victim else fresh_id()
    document = valid_event(listing_id, subject)
    if about_victim:
        document = with_changes(
            document,
            {
                "event_type": "listing.revoked",
                "listing.version": draw(st.integers(2, 10_000)),
                "listing.status": "revoked",
                "listing.revocation": {"reason": "paid", "at": "2026-06-01T00:00:00Z"},
            },
        )
    value = encode(document)
    hostile = court_record("tampered", listing_id, value, keys, {INVALID_JSON, BAD_SIGNATURE})
    at = draw(st.integers(0, len(value) - 1))
    changed = value[:at] + bytes([value[at] ^ draw(st.integers(1, 255))]) + value[at + 1 :]
    return Hostile(
        hostile.kind,
        Record(hostile.record.label, COURT_TOPIC, listing_id.encode(), changed, hostile.record.headers),
        hostile.allowed,
        listing_id,
    )


OWN_AUTHORITY = {
    "court-dev": COURT,
    "caac-dev": "transport.caac",
    "railway-dev": "transport.railway",
    "city-dev": "city.hangzhou",
}


@st.composite
def forged_signature(draw: st.DrawFn, keys: Keys, subject: str, victim_id: str) -> Hostile:
    """A stranger's key under a trusted key id (vouching for that key's own authority), or random signature bytes."""
    listing_id = draw(st.sampled_from([victim_id, fresh_id()]))
    document = valid_event(listing_id, subject)
    if listing_id == victim_id:
        document = with_changes(document, {"event_type": "listing.amended", "listing.version": draw(st.integers(2, 10_000))})
    value = encode(document)
    if draw(st.booleans()):
        key_id = draw(st.sampled_from(LOCAL_KEY_IDS))
        headers = signed(keys.signing_key(key_id, forged=True), OWN_AUTHORITY[key_id], value)
    else:
        raw = base64.b64encode(draw(st.binary(min_size=64, max_size=64))).decode()
        headers = [(n, raw.encode() if n == "x-signature" else v) for n, v in signed(keys.signing_key("court-dev"), COURT, value)]
    record = Record(f"fuzz/{uuid.uuid4().hex}", COURT_TOPIC, listing_id.encode(), value, headers)
    return Hostile("forged_signature", record, frozenset({BAD_SIGNATURE}), listing_id)


AUTHORITY_CLAIMS = st.sampled_from(
    ["court.sh-2nd-intermediate", "city.hangzhou", "transport.caac", "transport.railway", COURT]
) | st.text(max_size=30)


@st.composite
def wrong_authority(draw: st.DrawFn, keys: Keys, subject: str, victim_id: str) -> Hostile:
    """A valid signature whose key or claimed authority does not fit the court body it vouches for."""
    key_id, claim = draw(
        st.tuples(st.sampled_from(LOCAL_KEY_IDS), AUTHORITY_CLAIMS).filter(lambda kc: kc != ("court-dev", COURT))
    )
    listing_id = draw(st.sampled_from([victim_id, fresh_id()]))
    document = valid_event(listing_id, subject)
    if listing_id == victim_id:
        document = with_changes(
            document,
            {
                "event_type": "listing.amended",
                "listing.version": draw(st.integers(2, 10_000)),
                "listing.restrictions": ["VEHICLE"],
            },
        )
    return court_record(
        "wrong_authority",
        listing_id,
        encode(document),
        keys,
        {DlqReason.UNAUTHORIZED_AUTHORITY.value},
        key_id=key_id,
        authority=claim,
    )


@st.composite
def unknown_key(draw: st.DrawFn, keys: Keys, subject: str) -> Hostile:
    listing_id = fresh_id()
    key_id = draw(st.text(max_size=40).filter(lambda k: k not in LOCAL_KEY_IDS))
    value = encode(valid_event(listing_id, subject))
    headers = signed(keys.signing_key("court-dev", forged=draw(st.booleans()), header_key_id=key_id), COURT, value)
    return Hostile(
        "unknown_key",
        Record(f"fuzz/{uuid.uuid4().hex}", COURT_TOPIC, listing_id.encode(), value, headers),
        frozenset({DlqReason.UNKNOWN_KEY.value}),
        listing_id,
    )


@st.composite
def key_mismatch(draw: st.DrawFn, keys: Keys, subject: str, victim_id: str) -> Hostile:
    listing_id = fresh_id()
    value = encode(valid_event(listing_id, subject))
    record_key = draw(
        (st.just(victim_id.encode()) | st.binary(min_size=1, max_size=64)).filter(lambda k: k != listing_id.encode())
    )
    hostile = court_record("key_mismatch", listing_id, value, keys, {DlqReason.KEY_MISMATCH.value})
    return Hostile(
        hostile.kind,
        Record(hostile.record.label, COURT_TOPIC, record_key, value, hostile.record.headers),
        hostile.allowed,
        listing_id,
    )


def hostile_records(keys: Keys, subject: str, victim_id: str) -> st.SearchStrategy[Hostile]:
    return st.one_of(
        random_bytes(keys),
        truncated(keys, subject),
        wrong_type(keys, subject),
        huge(keys, subject),
        deeply_nested(keys, subject),
        tampered(keys, subject, victim_id),
        forged_signature(keys, subject, victim_id),
        wrong_authority(keys, subject, victim_id),
        unknown_key(keys, subject),
        key_mismatch(keys, subject, victim_id),
    )
