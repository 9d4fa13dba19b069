"""Wire models of CONTRACT section 4: what a valid listing event is, and when a listing is in force."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.catalogue import Restriction
from schemas.events import EventType, Listing, ListingEvent, Status, SubjectKind, to_wire


def wire(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def parse(document: dict[str, Any]) -> ListingEvent:
    return ListingEvent.model_validate_json(wire(document))


def invalid(document: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse(document)


def revoked(document: dict[str, Any]) -> dict[str, Any]:
    document["event_type"] = "listing.revoked"
    document["listing"]["version"] = 2
    document["listing"]["status"] = "revoked"
    document["listing"]["revocation"] = {"reason": "paid", "at": "2027-01-01T00:00:00Z"}
    return document


def test_contract_example_event_parses(contract_event: dict[str, Any]) -> None:
    event = parse(contract_event)

    assert event.event_type is EventType.ISSUED
    assert event.listing.listing_id == "court.bj-1st-intermediate:2026-000123"
    assert event.listing.subject.kind is SubjectKind.PERSON
    assert event.listing.restrictions == (
        Restriction.FLIGHT,
        Restriction.RAIL_PREMIUM,
        Restriction.LUXURY_GOODS,
        Restriction.PRIVATE_SCHOOL_TUITION,
    )
    assert event.listing.expires_at == datetime(2028, 11, 26, tzinfo=UTC)
    assert event.listing.authorized


def test_contract_example_with_its_placeholder_hash_is_invalid(contract_event: dict[str, Any]) -> None:
    contract_event["listing"]["subject"]["id_hash"] = "9f2c…64 hex chars…"

    invalid(contract_event)


def test_wire_bytes_parse_back_to_the_same_event(contract_event: dict[str, Any]) -> None:
    event = parse(contract_event)

    assert ListingEvent.model_validate_json(to_wire(event)) == event


def test_unknown_extra_fields_are_ignored_at_every_level(contract_event: dict[str, Any]) -> None:
    contract_event["trace_id"] = "abc"
    contract_event["listing"]["priority"] = 7
    contract_event["listing"]["subject"]["nationality"] = "CN"
    contract_event["listing"]["legal_basis"]["judge"] = {"name": "x"}

    event = parse(contract_event)

    assert event == parse(json.loads(to_wire(event)))
    assert "trace_id" not in event.model_dump()


@pytest.mark.parametrize(
    "path",
    [
        ("event_id",),
        ("event_type",),
        ("schema_version",),
        ("occurred_at",),
        ("listing",),
        ("listing", "listing_id"),
        ("listing", "version"),
        ("listing", "list"),
        ("listing", "authority"),
        ("listing", "status"),
        ("listing", "subject"),
        ("listing", "subject", "kind"),
        ("listing", "subject", "id_hash"),
        ("listing", "subject", "id_masked"),
        ("listing", "restrictions"),
        ("listing", "legal_basis"),
        ("listing", "legal_basis", "case_number"),
        ("listing", "effective_from"),
        ("listing", "expires_at"),
    ],
)
def test_missing_required_field_is_invalid(path: tuple[str, ...], contract_event: dict[str, Any]) -> None:
    parent = contract_event
    for name in path[:-1]:
        parent = parent[name]
    del parent[path[-1]]

    invalid(contract_event)


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_schema_version_other_than_1_is_invalid(version: object, contract_event: dict[str, Any]) -> None:
    contract_event["schema_version"] = version

    invalid(contract_event)


def test_schema_version_true_is_invalid(contract_event: dict[str, Any]) -> None:
    contract_event["schema_version"] = True

    invalid(contract_event)


def test_revoked_listing_parses_with_its_revocation(contract_event: dict[str, Any]) -> None:
    event = parse(revoked(contract_event))

    assert event.listing.status is Status.REVOKED
    assert event.listing.revocation is not None
    assert event.listing.revocation.reason.value == "paid"


def test_revoked_status_without_revocation_is_invalid(contract_event: dict[str, Any]) -> None:
    document = revoked(contract_event)
    document["listing"]["revocation"] = None

    invalid(document)


def test_active_status_with_a_revocation_is_invalid(contract_event: dict[str, Any]) -> None:
    contract_event["listing"]["revocation"] = {"reason": "paid", "at": "2027-01-01T00:00:00Z"}

    invalid(contract_event)


@pytest.mark.parametrize("reason", ["forgiven", "", None])
def test_unknown_revocation_reason_is_invalid(reason: object, contract_event: dict[str, Any]) -> None:
    document = revoked(contract_event)
    document["listing"]["revocation"]["reason"] = reason

    invalid(document)


@pytest.mark.parametrize(
    ("event_type", "status"),
    [("listing.revoked", "active"), ("listing.amended", "revoked"), ("listing.issued", "revoked")],
)
def test_event_type_must_match_the_listing_status(event_type: str, status: str, contract_event: dict[str, Any]) -> None:
    document = revoked(contract_event) if status == "revoked" else contract_event
    document["event_type"] = event_type
    document["listing"]["version"] = 2

    invalid(document)


def test_issued_event_carries_version_1(contract_event: dict[str, Any]) -> None:
    contract_event["listing"]["version"] = 2

    invalid(contract_event)
    contract_event["event_type"] = "listing.amended"
    assert parse(contract_event).listing.version == 2


@pytest.mark.parametrize("expires_at", ["2026-11-26T00:00:00Z", "2026-11-25T23:59:59Z", "2025-01-01T00:00:00Z"])
def test_expiry_not_after_effective_from_is_invalid(expires_at: str, contract_event: dict[str, Any]) -> None:
    contract_event["listing"]["expires_at"] = expires_at

    invalid(contract_event)


@pytest.mark.parametrize(
    "path",
    [("occurred_at",), ("listing", "effective_from"), ("listing", "expires_at")],
)
def test_naive_datetime_is_invalid(path: tuple[str, ...], contract_event: dict[str, Any]) -> None:
    parent = contract_event
    for name in path[:-1]:
        parent = parent[name]
    parent[path[-1]] = parent[path[-1]].removesuffix("Z")

    invalid(contract_event)


def test_naive_revocation_time_is_invalid(contract_event: dict[str, Any]) -> None:
    document = revoked(contract_event)
    document["listing"]["revocation"]["at"] = "2027-01-01T00:00:00"

    invalid(document)


@pytest.mark.parametrize(
    "restrictions",
    [["FLIGHT", "SPACE_TRAVEL"], ["flight"], [], ["FLIGHT", "FLIGHT"], "FLIGHT", None],
)
def test_unknown_empty_or_repeated_restrictions_are_invalid(restrictions: object, contract_event: dict[str, Any]) -> None:
    contract_event["listing"]["restrictions"] = restrictions

    invalid(contract_event)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("authority", "police.beijing"),
        ("authority", "Court.BJ"),
        ("list", "court.watchlist"),
        ("scope", "hangzhou"),
        ("scope", "cn-zj-hz"),
        ("version", 0),
        ("version", 2**31),
        ("status", "suspended"),
    ],
)
def test_invalid_listing_field_is_invalid(field: str, value: object, contract_event: dict[str, Any]) -> None:
    contract_event["listing"][field] = value

    invalid(contract_event)


@pytest.mark.parametrize("id_hash", ["A" * 64, "a" * 63, "a" * 65, "g" * 64, ""])
def test_id_hash_must_be_64_lowercase_hex(id_hash: str, contract_event: dict[str, Any]) -> None:
    contract_event["listing"]["subject"]["id_hash"] = id_hash

    invalid(contract_event)


def test_region_scoped_listing_parses(contract_event: dict[str, Any]) -> None:
    contract_event["listing"]["scope"] = "CN-ZJ-HZ"

    assert parse(contract_event).listing.scope == "CN-ZJ-HZ"


def test_scope_defaults_to_national_and_revocation_to_null(contract_event: dict[str, Any]) -> None:
    del contract_event["listing"]["scope"]
    del contract_event["listing"]["revocation"]

    listing = parse(contract_event).listing

    assert (listing.scope, listing.revocation) == ("national", None)


# --- Listing.is_in_force ---------------------------------------------------------------------------------------------


def listing(contract_event: dict[str, Any]) -> Listing:
    return parse(contract_event).listing


def test_listing_is_in_force_from_effective_from_inclusive(contract_event: dict[str, Any]) -> None:
    subject = listing(contract_event)
    start = datetime(2026, 11, 26, tzinfo=UTC)

    assert not subject.is_in_force(start - timedelta(microseconds=1))
    assert subject.is_in_force(start)


def test_listing_is_not_in_force_from_expires_at(contract_event: dict[str, Any]) -> None:
    subject = listing(contract_event)
    end = datetime(2028, 11, 26, tzinfo=UTC)

    assert subject.is_in_force(end - timedelta(microseconds=1))
    assert not subject.is_in_force(end)
    assert not subject.is_in_force(end + timedelta(days=1))


def test_listing_in_force_compares_instants_not_wall_clocks(contract_event: dict[str, Any]) -> None:
    subject = listing(contract_event)
    cst = timezone(timedelta(hours=8))

    # 2026-11-26T08:00+08:00 is exactly effective_from; 07:59:59+08:00 is a second before it.
    assert subject.is_in_force(datetime(2026, 11, 26, 8, 0, tzinfo=cst))
    assert not subject.is_in_force(datetime(2026, 11, 26, 7, 59, 59, tzinfo=cst))


def test_revoked_listing_is_never_in_force(contract_event: dict[str, Any]) -> None:
    subject = listing(revoked(contract_event))

    for at in (datetime(2026, 11, 26, tzinfo=UTC), datetime(2027, 6, 1, tzinfo=UTC), datetime(2028, 11, 25, tzinfo=UTC)):
        assert not subject.is_in_force(at)
