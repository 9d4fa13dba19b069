"""Admission of one record into a consumer: a verified event, or the contract's DLQ reason for each way a record can be bad."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

import pytest

from schemas.events import DlqReason, Header, ListingEvent
from services.kit.intake import MAX_VALUE_BYTES, Rejection, admit, headers_of
from services.kit.signing import Keyring, SigningKey, sign_batch

LISTING_ID = "court.bj-1st-intermediate:2026-000123"
COURT = "court.bj-1st-intermediate"


def value_of(document: Any) -> bytes:
    return json.dumps(document).encode()


def record_headers(
    key: SigningKey, authority: str, values: Sequence[bytes], event_type: str = "listing.issued"
) -> list[dict[str, bytes]]:
    """Headers a publisher sends with each value of one signed batch."""
    return [
        {Header.CONTENT_TYPE.value: b"application/json", Header.EVENT_TYPE.value: event_type.encode()}
        | {str(name): text.encode() for name, text in signed.items()}
        for signed in sign_batch(key, authority, values)
    ]


def signed_one(key: SigningKey, authority: str, value: bytes, event_type: str = "listing.issued") -> dict[str, bytes]:
    return record_headers(key, authority, [value], event_type)[0]


def rejected(key: bytes | None, value: bytes | None, headers: dict[str, bytes], keyring: Keyring) -> Rejection:
    with pytest.raises(Rejection) as caught:
        admit(key, value, headers, keyring)
    return caught.value


def as_city(
    document: dict[str, Any], authority: str = "city.hangzhou", list_id: str = "city.hangzhou.transit_fare_evasion"
) -> bytes:
    document["listing"] |= {
        "listing_id": f"{authority}:2026-000009",
        "authority": authority,
        "list": list_id,
        "restrictions": ["LUXURY_GOODS"],
        "scope": "CN-ZJ-HZ",
    }
    return value_of(document)


# --- accepted ---------------------------------------------------------------------------------------------------------


def test_valid_signed_record_is_admitted(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(contract_event)

    event = admit(LISTING_ID.encode(), value, signed_one(signing_keys["court-dev"], COURT, value), keyring)

    assert isinstance(event, ListingEvent)
    assert event.listing.listing_id == LISTING_ID
    assert event.listing.authority == COURT


def test_every_record_of_a_signed_batch_is_admitted_for_one_verification(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    values = []
    for n in range(1, 6):
        contract_event["listing"]["listing_id"] = f"{COURT}:2026-{n:06d}"
        values.append(value_of(contract_event))
    headers = record_headers(signing_keys["court-dev"], COURT, values)

    ids = [
        admit(json.loads(v)["listing"]["listing_id"].encode(), v, h, keyring).listing.listing_id
        for v, h in zip(values, headers, strict=True)
    ]

    assert ids == [f"{COURT}:2026-{n:06d}" for n in range(1, 6)]
    assert keyring.verifications == 1


def test_record_without_event_type_header_is_admitted(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(contract_event)
    headers = signed_one(signing_keys["court-dev"], COURT, value)
    del headers[Header.EVENT_TYPE.value]

    assert admit(LISTING_ID.encode(), value, headers, keyring).listing.listing_id == LISTING_ID


def test_city_list_signed_by_the_city_key_is_admitted(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = as_city(contract_event)

    event = admit(b"city.hangzhou:2026-000009", value, signed_one(signing_keys["city-dev"], "city.hangzhou", value), keyring)

    assert event.listing.scope == "CN-ZJ-HZ"


def test_repeated_header_keeps_its_first_value() -> None:
    assert headers_of([("x-key-id", b"court-dev"), ("x-key-id", b"city-dev")]) == {"x-key-id": b"court-dev"}


# --- invalid_json -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(random.Random(20261126).randbytes(256), id="random-bytes"),
        pytest.param(b"\xff\xfe\xfa garbage", id="not-utf8"),
        pytest.param(b"", id="empty"),
        pytest.param(None, id="tombstone"),
        pytest.param(b"{'single': 'quotes'}", id="not-json"),
    ],
)
def test_value_that_is_not_json_is_invalid_json(
    value: bytes | None, signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    headers = signed_one(signing_keys["court-dev"], COURT, value or b"")

    assert rejected(LISTING_ID.encode(), value, headers, keyring).reason is DlqReason.INVALID_JSON


def test_truncated_json_is_invalid_json(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(contract_event)[:-20]

    rejection = rejected(LISTING_ID.encode(), value, signed_one(signing_keys["court-dev"], COURT, value), keyring)

    assert rejection.reason is DlqReason.INVALID_JSON


def test_deeply_nested_but_unterminated_json_is_invalid_json(signing_keys: dict[str, SigningKey], keyring: Keyring) -> None:
    value = b'{"listing": ' + b"[" * 40

    rejection = rejected(LISTING_ID.encode(), value, signed_one(signing_keys["court-dev"], COURT, value), keyring)

    assert rejection.reason is DlqReason.INVALID_JSON


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_json_in_another_unicode_encoding_is_invalid_json(
    encoding: str, contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = json.dumps(contract_event).encode(encoding)

    rejection = rejected(LISTING_ID.encode(), value, signed_one(signing_keys["court-dev"], COURT, value), keyring)

    assert rejection.reason is DlqReason.INVALID_JSON


# --- invalid_schema (signed correctly, so only the shape can be wrong) ----------------------------------------------


def mutate(document: dict[str, Any], path: str, new: object) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = document
    for name in parents:
        node = node[name]
    node[last] = new
    return document


@pytest.mark.parametrize(
    ("path", "new"),
    [
        ("listing.version", "one"),
        ("listing.version", 1.5),
        ("listing.restrictions", "FLIGHT"),
        ("listing.subject", "Zhang San"),
        ("listing.legal_basis.case_number", 123),
        ("listing.effective_from", "yesterday"),
        ("event_id", "not-a-uuid"),
        ("schema_version", 2),
        ("listing.status", "suspended"),
        ("listing.restrictions", ["FLIGHT", "TELEPORTATION"]),
    ],
)
def test_signed_record_of_the_wrong_shape_is_invalid_schema(
    path: str, new: object, contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(mutate(contract_event, path, new))

    rejection = rejected(LISTING_ID.encode(), value, signed_one(signing_keys["court-dev"], COURT, value), keyring)

    assert rejection.reason is DlqReason.INVALID_SCHEMA
    assert path.split(".")[-1] in rejection.detail


@pytest.mark.parametrize("document", [[], "listing", 42, None, {}])
def test_json_that_is_not_an_event_object_is_invalid_schema(
    document: object, signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(document)

    assert rejected(b"k", value, signed_one(signing_keys["court-dev"], COURT, value), keyring).reason is DlqReason.INVALID_SCHEMA


def test_json_nested_100_levels_deep_is_invalid_schema(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    nested: Any = "bottom"
    for _ in range(100):
        nested = {"deeper": [nested]}
    value = value_of(contract_event | {"extension": nested})

    rejection = rejected(LISTING_ID.encode(), value, signed_one(signing_keys["court-dev"], COURT, value), keyring)

    assert rejection.reason is DlqReason.INVALID_SCHEMA
    assert keyring.verifications == 0


def test_brackets_inside_strings_do_not_count_as_nesting(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    contract_event["listing"]["legal_basis"]["decision_ref"] = '[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{{{{{{{{{{ \\" [[[['
    value = value_of(contract_event)

    assert admit(LISTING_ID.encode(), value, signed_one(signing_keys["court-dev"], COURT, value), keyring).listing.version == 1


def test_oversized_value_is_invalid_schema(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(contract_event | {"padding": "x" * MAX_VALUE_BYTES})

    rejection = rejected(LISTING_ID.encode(), value, signed_one(signing_keys["court-dev"], COURT, value), keyring)

    assert rejection.reason is DlqReason.INVALID_SCHEMA


def test_event_type_header_that_contradicts_the_body_is_invalid_schema(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(contract_event)
    headers = signed_one(signing_keys["court-dev"], COURT, value, event_type="listing.revoked")

    assert rejected(LISTING_ID.encode(), value, headers, keyring).reason is DlqReason.INVALID_SCHEMA


@pytest.mark.parametrize(
    ("path", "new"),
    [
        ("listing.version", "1"),
        ("occurred_at", 1795000000),
        ("schema_version", True),
    ],
)
def test_signed_record_with_a_coercible_wrong_type_is_invalid_schema(
    path: str, new: object, contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(mutate(contract_event, path, new))

    rejection = rejected(LISTING_ID.encode(), value, signed_one(signing_keys["court-dev"], COURT, value), keyring)

    assert rejection.reason is DlqReason.INVALID_SCHEMA


# --- bad_signature, unknown_key ---------------------------------------------------------------------------------------


def test_value_with_a_flipped_byte_after_signing_is_bad_signature(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(contract_event)
    headers = signed_one(signing_keys["court-dev"], COURT, value)
    tampered = bytearray(value)
    tampered[value.index(b"Zhi 123") + 6] ^= 0x01  # '3' -> '2': still valid JSON, still a valid event

    assert json.loads(tampered)["listing"]["legal_basis"]["case_number"] == "(2026) Jing 01 Zhi 122"
    assert rejected(LISTING_ID.encode(), bytes(tampered), headers, keyring).reason is DlqReason.BAD_SIGNATURE


def test_record_moved_to_another_batch_position_is_bad_signature(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    first = value_of(contract_event)
    second = first.replace(b"000123", b"000124")
    headers = record_headers(signing_keys["court-dev"], COURT, [first, second])

    assert rejected(LISTING_ID.encode(), first, headers[1], keyring).reason is DlqReason.BAD_SIGNATURE


def test_unsigned_record_is_bad_signature(contract_event: dict[str, Any], keyring: Keyring) -> None:
    headers = {
        Header.CONTENT_TYPE.value: b"application/json",
        Header.AUTHORITY.value: COURT.encode(),
        Header.KEY_ID.value: b"court-dev",
    }

    assert rejected(LISTING_ID.encode(), value_of(contract_event), headers, keyring).reason is DlqReason.BAD_SIGNATURE


def test_key_id_not_in_the_keyring_is_unknown_key(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(contract_event)
    stranger = SigningKey("court-prod", signing_keys["court-dev"].private_key)

    assert rejected(LISTING_ID.encode(), value, signed_one(stranger, COURT, value), keyring).reason is DlqReason.UNKNOWN_KEY


# --- unauthorized_authority -------------------------------------------------------------------------------------------


def test_body_authority_other_than_x_authority_is_unauthorized(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(contract_event)
    headers = signed_one(signing_keys["court-dev"], "court.sh-2nd-intermediate", value)

    rejection = rejected(LISTING_ID.encode(), value, headers, keyring)

    assert rejection.reason is DlqReason.UNAUTHORIZED_AUTHORITY
    assert "court.sh-2nd-intermediate" in rejection.detail


def test_city_key_signing_a_court_list_is_unauthorized(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(contract_event)

    rejection = rejected(LISTING_ID.encode(), value, signed_one(signing_keys["city-dev"], COURT, value), keyring)

    assert rejection.reason is DlqReason.UNAUTHORIZED_AUTHORITY


def test_city_key_claiming_a_city_authority_for_a_court_body_is_unauthorized(
    contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(contract_event)

    rejection = rejected(LISTING_ID.encode(), value, signed_one(signing_keys["city-dev"], "city.hangzhou", value), keyring)

    assert rejection.reason is DlqReason.UNAUTHORIZED_AUTHORITY


@pytest.mark.parametrize(
    ("key_id", "authority", "list_id"),
    [
        ("city-dev", "city.hangzhou", "city.chengdu.transit_fare_evasion"),
        ("city-dev", "city.hangzhou", "court.dishonest_debtor"),
        ("caac-dev", "transport.caac", "transport.rail_ban"),
        ("railway-dev", "transport.railway", "transport.flight_ban"),
        ("court-dev", COURT, "transport.flight_ban"),
    ],
)
def test_authority_publishing_a_list_it_may_not_is_unauthorized(
    key_id: str,
    authority: str,
    list_id: str,
    contract_event: dict[str, Any],
    signing_keys: dict[str, SigningKey],
    keyring: Keyring,
) -> None:
    contract_event["listing"] |= {"authority": authority, "list": list_id, "listing_id": f"{authority}:2026-000001"}
    value = value_of(contract_event)

    rejection = rejected(f"{authority}:2026-000001".encode(), value, signed_one(signing_keys[key_id], authority, value), keyring)

    assert rejection.reason is DlqReason.UNAUTHORIZED_AUTHORITY
    assert list_id in rejection.detail


# --- key_mismatch -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record_key",
    [b"court.bj-1st-intermediate:2026-000124", b"", None, b"court.bj-1st-intermediate:2026-000123 ", b"\xff"],
)
def test_record_key_other_than_listing_id_is_key_mismatch(
    record_key: bytes | None, contract_event: dict[str, Any], signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    value = value_of(contract_event)

    rejection = rejected(record_key, value, signed_one(signing_keys["court-dev"], COURT, value), keyring)

    assert rejection.reason is DlqReason.KEY_MISMATCH
