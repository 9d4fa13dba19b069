"""Consumer policies: which restriction codes each consumer keeps, what it stores of a listing, and what a check asks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from schemas.catalogue import Restriction
from schemas.events import Listing, ListingEvent
from services.consumers.checks import CheckRefused, CheckRequest, codes_for
from services.consumers.policy import ConsumerPolicy, CopyRow
from services.consumers.registry import POLICIES

AIRLINE = POLICIES["airline"]
TICKETING = POLICIES["ticketing"]
LUXURY_RETAIL = POLICIES["luxury-retail"]
ADMISSIONS = POLICIES["admissions"]
ALL_CODES = [r.value for r in Restriction]


def listing(event: dict[str, Any], **changes: Any) -> Listing:
    event["listing"] |= changes
    return ListingEvent.model_validate(event).listing


def revoked(event: dict[str, Any]) -> Listing:
    event["event_type"] = "listing.revoked"
    return listing(event, version=2, status="revoked", revocation={"reason": "settled", "at": "2027-01-01T00:00:00Z"})


def check(policy: ConsumerPolicy, action: str, seat_class: str | None = None) -> list[str]:
    body: dict[str, Any] = {"subject": {"kind": "person", "id": "110101199003071234"}, "action": action, "seat_class": seat_class}
    return codes_for(policy, CheckRequest.model_validate(body))


def test_registry_holds_the_four_consumers_of_the_contract_on_their_ports() -> None:
    assert {name: p.port for name, p in POLICIES.items()} == {
        "airline": 8101,
        "ticketing": 8102,
        "luxury-retail": 8103,
        "admissions": 8104,
    }


@pytest.mark.parametrize(
    ("name", "relevant"),
    [
        ("airline", {"FLIGHT"}),
        ("ticketing", {"FLIGHT", "RAIL", "RAIL_PREMIUM"}),
        ("luxury-retail", {"LUXURY_GOODS"}),
        ("admissions", {"PRIVATE_SCHOOL_TUITION"}),
    ],
)
def test_each_consumer_keeps_only_the_codes_its_actions_check(
    name: str, relevant: set[str], contract_event: dict[str, Any]
) -> None:
    row = POLICIES[name].project(listing(contract_event, restrictions=ALL_CODES))

    assert row is not None
    assert set(row.restrictions) == relevant
    assert list(row.restrictions) == sorted(row.restrictions)


def test_court_listing_projected_for_airline_keeps_only_flight_and_no_name(contract_event: dict[str, Any]) -> None:
    court = listing(contract_event)

    row = AIRLINE.project(court)

    assert row == CopyRow(
        listing_id="court.bj-1st-intermediate:2026-000123",
        version=1,
        list="court.dishonest_debtor",
        authority="court.bj-1st-intermediate",
        subject_kind="person",
        id_hash=court.subject.id_hash,
        id_masked="110101********1234",
        restrictions=("FLIGHT",),
        scope="national",
        case_number="(2026) Jing 01 Zhi 123",
        effective_from=court.effective_from,
        expires_at=court.expires_at,
    )


def test_copy_row_has_no_field_for_a_name_or_a_raw_id() -> None:
    fields = set(CopyRow._fields)

    assert not fields & {"display_name", "name", "subject_name", "id", "subject_id", "decision_ref"}


@pytest.mark.parametrize(
    ("name", "codes"),
    [
        ("airline", ["RAIL", "LUXURY_GOODS"]),
        ("ticketing", ["LUXURY_GOODS", "STAR_HOTEL"]),
        ("luxury-retail", ["FLIGHT", "CITY_SUBSIDY"]),
        ("admissions", ["FLIGHT", "RAIL_PREMIUM", "LUXURY_GOODS"]),
    ],
)
def test_listing_without_a_relevant_code_projects_to_a_version_marker(
    name: str, codes: list[str], contract_event: dict[str, Any]
) -> None:
    assert POLICIES[name].project(listing(contract_event, restrictions=codes)) is None


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_revoked_listing_projects_to_a_version_marker(name: str, contract_event: dict[str, Any]) -> None:
    assert POLICIES[name].project(revoked(contract_event)) is None


def test_region_scoped_city_listing_is_kept_with_its_scope_by_a_national_retailer(contract_event: dict[str, Any]) -> None:
    city = listing(
        contract_event,
        listing_id="city.hangzhou:2026-000009",
        list="city.hangzhou.transit_fare_evasion",
        authority="city.hangzhou",
        restrictions=["CITY_SUBSIDY", "LUXURY_GOODS"],
        scope="CN-ZJ-HZ",
    )

    row = LUXURY_RETAIL.project(city)

    assert row is not None
    assert (row.scope, row.restrictions) == ("CN-ZJ-HZ", ("LUXURY_GOODS",))


def test_ticketing_keeps_rail_premium_of_a_court_listing(contract_event: dict[str, Any]) -> None:
    row = TICKETING.project(listing(contract_event))

    assert row is not None
    assert row.restrictions == ("FLIGHT", "RAIL_PREMIUM")


def test_admissions_keeps_only_private_school_tuition(contract_event: dict[str, Any]) -> None:
    row = ADMISSIONS.project(listing(contract_event))

    assert row is not None
    assert row.restrictions == ("PRIVATE_SCHOOL_TUITION",)
    assert ADMISSIONS.payer_only


# --- which codes an action checks (services/consumers/checks.py codes_for) -------------------------------------------


@pytest.mark.parametrize("seat_class", ["first", "business", "soft_sleeper"])
def test_premium_rail_seat_checks_rail_and_rail_premium(seat_class: str) -> None:
    assert check(TICKETING, "buy_rail_ticket", seat_class) == ["RAIL", "RAIL_PREMIUM"]


@pytest.mark.parametrize("seat_class", ["second", "hard_seat", "hard_sleeper"])
def test_standard_rail_seat_checks_rail_only(seat_class: str) -> None:
    assert check(TICKETING, "buy_rail_ticket", seat_class) == ["RAIL"]


def test_flight_ticket_checks_flight() -> None:
    assert check(TICKETING, "buy_flight_ticket") == ["FLIGHT"]


@pytest.mark.parametrize(
    ("policy", "action", "codes"),
    [
        (AIRLINE, "board_flight", ["FLIGHT"]),
        (LUXURY_RETAIL, "buy_luxury_goods", ["LUXURY_GOODS"]),
        (ADMISSIONS, "pay_private_tuition", ["PRIVATE_SCHOOL_TUITION"]),
    ],
)
def test_single_action_consumers_check_their_one_code(policy: ConsumerPolicy, action: str, codes: list[str]) -> None:
    assert check(policy, action) == codes


@pytest.mark.parametrize("seat_class", ["deluxe", "FIRST", "", None])
def test_rail_ticket_with_unknown_or_missing_seat_class_is_refused_naming_seat_class(seat_class: str | None) -> None:
    with pytest.raises(CheckRefused) as caught:
        check(TICKETING, "buy_rail_ticket", seat_class)

    assert caught.value.field == "seat_class"


def test_unknown_seat_class_raises_key_error_in_the_action_itself() -> None:
    with pytest.raises(KeyError):
        TICKETING.actions["buy_rail_ticket"].restrictions("deluxe")


@pytest.mark.parametrize(
    ("policy", "action"),
    [
        (AIRLINE, "buy_rail_ticket"),
        (TICKETING, "board_flight"),
        (LUXURY_RETAIL, "pay_private_tuition"),
        (ADMISSIONS, "apply_for_admission"),
    ],
)
def test_action_a_consumer_does_not_handle_is_refused_naming_action(policy: ConsumerPolicy, action: str) -> None:
    with pytest.raises(CheckRefused) as caught:
        check(policy, action)

    assert caught.value.field == "action"
    assert action in caught.value.message


def test_projection_remembered_per_restriction_tuple_equals_the_projection_worked_out(
    contract_event: dict[str, Any],
) -> None:
    codes = [Restriction.FLIGHT, Restriction.RAIL, Restriction.RAIL_PREMIUM, Restriction.LUXURY_GOODS]
    tuples = [tuple(codes[i:j]) for i in range(len(codes)) for j in range(i + 1, len(codes) + 1)]
    for restrictions in [*tuples, *tuples]:  # the second round is answered from what the first remembered
        for policy in (AIRLINE, TICKETING, LUXURY_RETAIL, ADMISSIONS):
            worked_out = tuple(sorted(r.value for r in restrictions if r in policy.relevant))

            assert policy.kept(restrictions) == worked_out
            row = policy.project(listing(copy.deepcopy(contract_event), restrictions=[r.value for r in restrictions]))
            assert (row.restrictions if row else ()) == worked_out


def test_remembered_projections_stay_bounded_whatever_the_records_carry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.consumers.policy.PROJECTIONS_HELD", 3)
    policy = ConsumerPolicy("bounded", 1, AIRLINE.actions)
    codes = list(Restriction)

    for n in range(1, len(codes)):
        assert policy.kept((codes[n], codes[0])) == (("FLIGHT",) if Restriction.FLIGHT in (codes[n], codes[0]) else ())
        assert len(policy._projections) <= 3
