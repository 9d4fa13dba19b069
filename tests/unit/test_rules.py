"""Each authority's legal rules (court, transport, city pilot) and who may publish which list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.catalogue import NATIONAL, Restriction, may_publish
from schemas.events import LegalBasis, Listing, Status, Subject, SubjectKind
from services.publishers.city_pilot import rules as city_rules
from services.publishers.court import rules as court_rules
from services.publishers.requests import AmendRequest, IssueRequest
from services.publishers.rules import ListRules, RuleViolation, Terms, add_years, birth_date
from services.publishers.transport import rules as transport_rules

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
ADULT_ID = "110101199003071234"  # born 1990-03-07
CREDIT_CODE = "91110108MA01ABCD2X"
COURT = "court.bj-1st-intermediate"
HIGH_CONSUMPTION = {
    Restriction.FLIGHT,
    Restriction.RAIL_PREMIUM,
    Restriction.STAR_HOTEL,
    Restriction.REAL_ESTATE,
    Restriction.VEHICLE,
    Restriction.VACATION_TRAVEL,
    Restriction.LUXURY_GOODS,
    Restriction.PRIVATE_SCHOOL_TUITION,
}


def person_id(born: str) -> str:
    """An 18-character national id with the given birth date (YYYYMMDD)."""
    return f"110101{born}123X"


def issue_request(**overrides: Any) -> IssueRequest:
    body: dict[str, Any] = {
        "authority": COURT,
        "list": "court.dishonest_debtor",
        "subject": {"kind": "person", "id": ADULT_ID, "name": "Zhang San"},
        "legal_basis": {"case_number": "(2026) Jing 01 Zhi 123"},
    }
    return IssueRequest.model_validate(body | overrides)


def organization_request(credit_code: str = CREDIT_CODE, representative_id: str = ADULT_ID, **overrides: Any) -> IssueRequest:
    body: dict[str, Any] = {
        "subject": {"kind": "organization", "id": credit_code, "name": "Example Trading Co"},
        "legal_representative": {"id": representative_id, "name": "Li Si"},
    }
    return issue_request(**(body | overrides))


def rules(list_id: str) -> ListRules:
    found = court_rules.rules_for(list_id) or transport_rules.rules_for(list_id) or city_rules.rules_for(list_id)
    assert found is not None, f"no rules for {list_id}"
    return found


def listing_from(terms: Terms, list_id: str, authority: str) -> Listing:
    return Listing(
        listing_id=f"{authority}:2026-000001",
        version=1,
        list=list_id,
        authority=authority,
        status=Status.ACTIVE,
        subject=Subject(kind=SubjectKind.PERSON, id_hash="a" * 64, id_masked="110101********1234", display_name="Zhang *"),
        restrictions=terms.restrictions,
        scope=terms.scope,
        legal_basis=LegalBasis(case_number="(2026) Jing 01 Zhi 123"),
        effective_from=terms.effective_from,
        expires_at=terms.expires_at,
    )


def court_listing() -> Listing:
    return listing_from(rules("court.dishonest_debtor").issue(issue_request(), NOW), "court.dishonest_debtor", COURT)


def refused(call: Any, field: str) -> RuleViolation:
    with pytest.raises(RuleViolation) as caught:
        call()
    assert caught.value.field == field, caught.value.message
    return caught.value


# --- court.dishonest_debtor ------------------------------------------------------------------------------------------


def test_court_listing_defaults_to_the_eight_high_consumption_bans_for_two_years() -> None:
    terms = rules("court.dishonest_debtor").issue(issue_request(), NOW)

    assert set(terms.restrictions) == HIGH_CONSUMPTION
    assert len(terms.restrictions) == 8
    assert terms.scope == NATIONAL
    assert terms.effective_from == NOW
    assert terms.expires_at == datetime(2028, 11, 26, 10, 0, tzinfo=UTC)


def test_court_listing_may_name_a_subset_of_the_high_consumption_bans() -> None:
    terms = rules("court.dishonest_debtor").issue(issue_request(restrictions=["LUXURY_GOODS", "FLIGHT"]), NOW)

    assert terms.restrictions == (Restriction.FLIGHT, Restriction.LUXURY_GOODS)


@pytest.mark.parametrize("code", ["RAIL", "CITY_SUBSIDY"])
def test_court_listing_cannot_restrict_codes_outside_high_consumption(code: str) -> None:
    refused(lambda: rules("court.dishonest_debtor").issue(issue_request(restrictions=[code]), NOW), "restrictions")


def test_court_term_of_exactly_two_years_is_accepted() -> None:
    end = add_years(NOW, 2)

    terms = rules("court.dishonest_debtor").issue(issue_request(expires_at=end.isoformat()), NOW)

    assert terms.expires_at == end


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"term_days": 732}, "term_days"),
        ({"expires_at": "2028-11-26T10:00:01Z"}, "expires_at"),
        ({"expires_at": "2030-01-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_court_term_over_two_years_is_refused(overrides: dict[str, Any], field: str) -> None:
    refused(lambda: rules("court.dishonest_debtor").issue(issue_request(**overrides), NOW), field)


def test_court_term_given_both_as_days_and_as_expiry_is_refused() -> None:
    request = issue_request(term_days=100, expires_at="2027-01-01T00:00:00Z")

    refused(lambda: rules("court.dishonest_debtor").issue(request, NOW), "term_days")


def test_court_listing_is_national_only() -> None:
    refused(lambda: rules("court.dishonest_debtor").issue(issue_request(scope="CN-ZJ-HZ"), NOW), "scope")


def test_court_listing_without_a_case_number_is_refused() -> None:
    request = issue_request(legal_basis={"case_number": "   "})

    refused(lambda: rules("court.dishonest_debtor").issue(request, NOW), "legal_basis.case_number")


@pytest.mark.parametrize("years", [1, 2, 3])
def test_court_listing_can_be_extended_once_by_one_to_three_years(years: int) -> None:
    current = court_listing()
    new_end = add_years(current.expires_at, years)

    terms, extensions = rules("court.dishonest_debtor").amend(current, AmendRequest(expires_at=new_end), extensions=0)

    assert terms.expires_at == new_end
    assert extensions == 1
    assert terms.effective_from == current.effective_from


def test_court_listing_cannot_be_extended_a_second_time() -> None:
    current = court_listing()
    request = AmendRequest(expires_at=add_years(current.expires_at, 1))

    refused(lambda: rules("court.dishonest_debtor").amend(current, request, extensions=1), "expires_at")


@pytest.mark.parametrize("days", [1, 182, 364, 4 * 365 + 1, 5 * 365])
def test_court_extension_shorter_than_one_or_longer_than_three_years_is_refused(days: int) -> None:
    current = court_listing()
    request = AmendRequest(expires_at=current.expires_at + timedelta(days=days))

    refused(lambda: rules("court.dishonest_debtor").amend(current, request, extensions=0), "expires_at")


def test_court_listing_shortened_is_not_counted_as_an_extension() -> None:
    current = court_listing()
    earlier = current.expires_at - timedelta(days=100)

    terms, extensions = rules("court.dishonest_debtor").amend(current, AmendRequest(expires_at=earlier), extensions=0)

    assert (terms.expires_at, extensions) == (earlier, 0)


def test_court_amendment_may_drop_restrictions_but_not_add_foreign_ones() -> None:
    current = court_listing()
    court = rules("court.dishonest_debtor")

    terms, _ = court.amend(current, AmendRequest(restrictions=(Restriction.FLIGHT,)), extensions=0)

    assert terms.restrictions == (Restriction.FLIGHT,)
    assert terms.expires_at == current.expires_at
    refused(lambda: court.amend(current, AmendRequest(restrictions=(Restriction.RAIL,)), extensions=0), "restrictions")


# --- subjects: persons, minors, organizations ------------------------------------------------------------------------


def test_birth_date_is_read_from_characters_7_to_14_of_the_national_id() -> None:
    assert birth_date(ADULT_ID) == datetime(1990, 3, 7).date()


def test_person_who_turns_eighteen_today_can_be_listed() -> None:
    request = issue_request(subject={"kind": "person", "id": person_id("20081126"), "name": "Zhang San"})

    terms = rules("court.dishonest_debtor").issue(request, NOW)

    assert terms.effective_from == NOW


@pytest.mark.parametrize("born", ["20081127", "20150101", "20261126"])
def test_minor_cannot_be_listed(born: str) -> None:
    request = issue_request(subject={"kind": "person", "id": person_id(born), "name": "Zhang San"})

    violation = refused(lambda: rules("court.dishonest_debtor").issue(request, NOW), "subject.id")

    assert "minor" in violation.message


@pytest.mark.parametrize(
    ("list_id", "authority", "extra"),
    [
        ("court.dishonest_debtor", COURT, {}),
        ("transport.flight_ban", "transport.caac", {}),
        ("city.hangzhou.transit_fare_evasion", "city.hangzhou", {"term_days": 90}),
    ],
)
def test_minor_cannot_be_listed_with_a_future_effective_date(list_id: str, authority: str, extra: dict[str, Any]) -> None:
    # Seventeen today, eighteen by the requested effective date: the decision and its publication happen now.
    request = issue_request(
        authority=authority,
        list=list_id,
        subject={"kind": "person", "id": person_id("20081210"), "name": "Zhang San"},
        effective_from=(NOW + timedelta(days=30)).isoformat(),
        **extra,
    )

    refused(lambda: rules(list_id).issue(request, NOW), "subject.id")


def test_person_born_in_the_future_is_refused_as_malformed() -> None:
    request = issue_request(subject={"kind": "person", "id": person_id("20300101"), "name": "Zhang San"})

    violation = refused(lambda: rules("court.dishonest_debtor").issue(request, NOW), "subject.id")

    assert "malformed" in violation.message


@pytest.mark.parametrize(
    "bad_id",
    [
        "11010119900307123",  # 17 characters
        "1101011990030712345",  # 19 characters
        "11010119900307123A",  # check character neither digit nor X
        "1101011990030X1234",  # X before the end
        "110101199013071234",  # month 13
        "110101199002301234",  # 30 February
        "ABCDEF199003071234",  # letters in the region code
    ],
)
def test_malformed_national_id_is_refused(bad_id: str) -> None:
    request = issue_request(subject={"kind": "person", "id": bad_id, "name": "Zhang San"})

    violation = refused(lambda: rules("court.dishonest_debtor").issue(request, NOW), "subject.id")

    assert "malformed" in violation.message


def test_national_id_with_lowercase_x_check_character_is_accepted() -> None:
    request = issue_request(subject={"kind": "person", "id": " 11010119900307123x ", "name": "Zhang San"})

    assert rules("court.dishonest_debtor").issue(request, NOW).expires_at > NOW


def test_organization_with_credit_code_and_adult_legal_representative_is_listed() -> None:
    terms = rules("court.dishonest_debtor").issue(organization_request(), NOW)

    assert set(terms.restrictions) == HIGH_CONSUMPTION


def test_organization_without_legal_representative_is_refused() -> None:
    request = issue_request(subject={"kind": "organization", "id": CREDIT_CODE, "name": "Example Trading Co"})

    refused(lambda: rules("court.dishonest_debtor").issue(request, NOW), "legal_representative")


@pytest.mark.parametrize(
    "bad_code",
    [
        "91110108MA01ABCD2",  # 17 characters
        "91110108MA01ABCD2XX",  # 19 characters
        "91110108MA01ABCDIX",  # I is not used
        "91110108MA01ABCDOX",  # O is not used
        "91110108MA01ABCDSX",  # S is not used
        "91110108MA01ABCDVX",  # V is not used
        "91110108MA01ABCDZX",  # Z is not used
        "91110108MA01ABC-2X",
    ],
)
def test_organization_with_malformed_credit_code_is_refused(bad_code: str) -> None:
    request = organization_request(credit_code=bad_code)

    refused(lambda: rules("court.dishonest_debtor").issue(request, NOW), "subject.id")


def test_organization_whose_legal_representative_is_a_minor_is_refused() -> None:
    request = organization_request(representative_id=person_id("20100101"))

    refused(lambda: rules("court.dishonest_debtor").issue(request, NOW), "legal_representative.id")


def test_person_with_a_legal_representative_is_refused() -> None:
    request = issue_request(legal_representative={"id": ADULT_ID, "name": "Li Si"})

    refused(lambda: rules("court.dishonest_debtor").issue(request, NOW), "legal_representative")


# --- transport.flight_ban and transport.rail_ban ---------------------------------------------------------------------

TRAVEL_BANS = [
    pytest.param("transport.flight_ban", "transport.caac", Restriction.FLIGHT, 365, id="flight"),
    pytest.param("transport.rail_ban", "transport.railway", Restriction.RAIL, 180, id="rail"),
]


@pytest.mark.parametrize(("list_id", "authority", "code", "days"), TRAVEL_BANS)
def test_travel_ban_defaults_to_its_one_code_for_its_maximum_term(
    list_id: str, authority: str, code: Restriction, days: int
) -> None:
    terms = rules(list_id).issue(issue_request(authority=authority, list=list_id), NOW)

    assert terms.restrictions == (code,)
    assert terms.scope == NATIONAL
    assert terms.expires_at - terms.effective_from == timedelta(days=days)


@pytest.mark.parametrize(("list_id", "authority", "code", "days"), TRAVEL_BANS)
def test_travel_ban_term_over_its_maximum_is_refused(list_id: str, authority: str, code: Restriction, days: int) -> None:
    ok = rules(list_id).issue(issue_request(authority=authority, list=list_id, term_days=days), NOW)
    assert ok.expires_at == NOW + timedelta(days=days)

    refused(lambda: rules(list_id).issue(issue_request(authority=authority, list=list_id, term_days=days + 1), NOW), "term_days")


@pytest.mark.parametrize(
    ("list_id", "authority", "foreign"),
    [("transport.flight_ban", "transport.caac", "RAIL"), ("transport.rail_ban", "transport.railway", "FLIGHT")],
)
def test_travel_ban_cannot_carry_another_code(list_id: str, authority: str, foreign: str) -> None:
    request = issue_request(authority=authority, list=list_id, restrictions=[foreign])

    refused(lambda: rules(list_id).issue(request, NOW), "restrictions")


def test_travel_ban_lists_persons_only() -> None:
    request = organization_request(authority="transport.caac", list="transport.flight_ban")

    refused(lambda: rules("transport.flight_ban").issue(request, NOW), "subject.kind")


def test_travel_ban_is_national_only() -> None:
    request = issue_request(authority="transport.caac", list="transport.flight_ban", scope="CN-ZJ-HZ")

    refused(lambda: rules("transport.flight_ban").issue(request, NOW), "scope")


def test_travel_ban_of_a_minor_is_refused() -> None:
    request = issue_request(
        authority="transport.railway",
        list="transport.rail_ban",
        subject={"kind": "person", "id": person_id("20120505"), "name": "X"},
    )

    refused(lambda: rules("transport.rail_ban").issue(request, NOW), "subject.id")


def test_flight_ban_cannot_be_amended_beyond_365_days_from_its_start() -> None:
    flight = rules("transport.flight_ban")
    current = listing_from(
        flight.issue(issue_request(authority="transport.caac", list="transport.flight_ban", term_days=100), NOW),
        "transport.flight_ban",
        "transport.caac",
    )

    terms, _ = flight.amend(current, AmendRequest(expires_at=NOW + timedelta(days=365)), extensions=0)
    assert terms.expires_at == NOW + timedelta(days=365)
    refused(lambda: flight.amend(current, AmendRequest(expires_at=NOW + timedelta(days=366)), extensions=0), "expires_at")


# --- city.<city>.* ---------------------------------------------------------------------------------------------------

CITIES = [
    pytest.param("city.hangzhou", "CN-ZJ-HZ", id="hangzhou"),
    pytest.param("city.chengdu", "CN-SC-CD", id="chengdu"),
    pytest.param("city.rongcheng", "CN-SD-RC", id="rongcheng"),
]


def city_request(authority: str, **overrides: Any) -> IssueRequest:
    body: dict[str, Any] = {"authority": authority, "list": f"{authority}.transit_fare_evasion", "term_days": 90}
    return issue_request(**(body | overrides))


@pytest.mark.parametrize(("authority", "region"), CITIES)
def test_city_listing_is_scoped_to_its_city_region(authority: str, region: str) -> None:
    terms = rules(f"{authority}.transit_fare_evasion").issue(city_request(authority), NOW)

    assert terms.scope == region
    assert set(terms.restrictions) == {Restriction.LUXURY_GOODS, Restriction.CITY_SUBSIDY}
    assert terms.expires_at == NOW + timedelta(days=90)


@pytest.mark.parametrize(("authority", "region"), CITIES)
def test_city_listing_stating_its_own_region_keeps_it(authority: str, region: str) -> None:
    assert rules(f"{authority}.transit_fare_evasion").issue(city_request(authority, scope=region), NOW).scope == region


@pytest.mark.parametrize("scope", [NATIONAL, "CN-SC-CD"])
def test_city_listing_scoped_anywhere_else_is_refused(scope: str) -> None:
    refused(lambda: rules("city.hangzhou.transit_fare_evasion").issue(city_request("city.hangzhou", scope=scope), NOW), "scope")


@pytest.mark.parametrize("code", ["FLIGHT", "RAIL", "PRIVATE_SCHOOL_TUITION", "STAR_HOTEL"])
def test_city_listing_restricts_only_luxury_goods_and_city_subsidy(code: str) -> None:
    request = city_request("city.chengdu", restrictions=["CITY_SUBSIDY", code])

    refused(lambda: rules("city.chengdu.transit_fare_evasion").issue(request, NOW), "restrictions")


def test_city_listing_without_a_term_is_refused() -> None:
    request = issue_request(authority="city.rongcheng", list="city.rongcheng.credit_pilot")

    refused(lambda: rules("city.rongcheng.credit_pilot").issue(request, NOW), "term_days")


@pytest.mark.parametrize(("days", "accepted"), [(29, False), (30, True), (730, True), (731, False)])
def test_city_listing_term_is_between_30_and_730_days(days: int, accepted: bool) -> None:
    city = rules("city.hangzhou.transit_fare_evasion")
    request = city_request("city.hangzhou", term_days=days)

    if accepted:
        assert city.issue(request, NOW).expires_at == NOW + timedelta(days=days)
    else:
        refused(lambda: city.issue(request, NOW), "term_days")


def test_city_listing_cannot_be_amended_beyond_730_days() -> None:
    city = rules("city.hangzhou.transit_fare_evasion")
    current = listing_from(city.issue(city_request("city.hangzhou"), NOW), "city.hangzhou.transit_fare_evasion", "city.hangzhou")

    refused(lambda: city.amend(current, AmendRequest(expires_at=NOW + timedelta(days=731)), extensions=0), "expires_at")


@pytest.mark.parametrize("list_id", ["city.shanghai.transit_fare_evasion", "city.hangzhou", "court.dishonest_debtor"])
def test_city_rules_exist_only_for_lists_of_known_cities(list_id: str) -> None:
    assert city_rules.rules_for(list_id) is None


# --- who may publish which list (schemas.catalogue.may_publish) ------------------------------------------------------


@pytest.mark.parametrize(
    ("authority", "list_id", "allowed"),
    [
        (COURT, "court.dishonest_debtor", True),
        ("court.sh-2nd-intermediate", "court.dishonest_debtor", True),
        (COURT, "transport.flight_ban", False),
        (COURT, "transport.rail_ban", False),
        (COURT, "city.hangzhou.transit_fare_evasion", False),
        ("transport.caac", "transport.flight_ban", True),
        ("transport.caac", "transport.rail_ban", False),
        ("transport.caac", "court.dishonest_debtor", False),
        ("transport.railway", "transport.rail_ban", True),
        ("transport.railway", "transport.flight_ban", False),
        ("transport.shipping", "transport.flight_ban", False),
        ("city.hangzhou", "city.hangzhou.transit_fare_evasion", True),
        ("city.hangzhou", "city.chengdu.transit_fare_evasion", False),
        ("city.hang", "city.hangzhou.transit_fare_evasion", False),
        ("city.hangzhou", "city.hangzhou-east.transit_fare_evasion", False),
        ("city.hangzhou", "court.dishonest_debtor", False),
        ("city.hangzhou", "transport.flight_ban", False),
        ("court.", "court.dishonest_debtor", False),
        ("police.beijing", "court.dishonest_debtor", False),
    ],
)
def test_authority_may_publish_only_its_own_lists(authority: str, list_id: str, allowed: bool) -> None:
    assert may_publish(authority, list_id) is allowed
