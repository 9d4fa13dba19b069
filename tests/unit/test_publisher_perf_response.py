"""Listings serialized once: the state column, the history entry and the 201 bodies are exactly what writing each again gave."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.catalogue import FAMILIES
from schemas.events import EventType, Listing, ListingEvent, to_wire
from services.publishers import service, store
from services.publishers.app import issued_batch_json, issued_json
from services.publishers.court.rules import rules_for
from services.publishers.requests import IssueRequest
from tests.events import court_event

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
PUBLISHER = service.Publisher(FAMILIES["court"], rules_for, b"test-key")
COURT = "court.bj-1st-intermediate"


def person_request(name: str = "Zhang San", **extra: Any) -> IssueRequest:
    return IssueRequest.model_validate(
        {
            "authority": COURT,
            "list": "court.dishonest_debtor",
            "subject": {"kind": "person", "id": "110101198001011234", "name": name},
            "legal_basis": {"case_number": "(2026) 京01执 1"},
            **extra,
        }
    )


def company_request() -> IssueRequest:
    return IssueRequest.model_validate(
        {
            "authority": COURT,
            "list": "court.dishonest_debtor",
            "subject": {"kind": "organization", "id": "91110000600037341L", "name": "北京 某公司"},
            "legal_representative": {"id": "110101197502021234", "name": "Li Si"},
            "legal_basis": {"case_number": "(2026) 京01执 2", "decision_ref": "D-7"},
            "restrictions": ["FLIGHT", "LUXURY_GOODS"],
        }
    )


def build(*requests: IssueRequest) -> list[service.Issued]:
    plans = [service.plan_issue(PUBLISHER, r, NOW) for r in requests]
    return service.build_issued(PUBLISHER, plans, range(1, 100), "token:court.*", NOW)


def dict_answer(issued: service.Issued) -> dict[str, Any]:
    return {
        "listing": issued.listing.model_dump(mode="json"),
        "related_listings": [r.model_dump(mode="json") for r in issued.related],
    }


def test_issued_json_is_the_dict_answer_with_its_related_listings_in_order() -> None:
    [company] = build(company_request())

    body = issued_json(company)

    assert json.loads(body) == dict_answer(company)
    assert list(json.loads(body)["listing"]) == list(company.listing.model_dump(mode="json")), "field order changed"
    assert json.loads(body)["related_listings"][0]["subject"]["kind"] == "person"


def test_issued_batch_json_answers_each_item_in_request_order() -> None:
    issued = build(person_request("Wang Wu"), company_request(), person_request("Zhao Liu"))

    body = json.loads(issued_batch_json(issued))

    assert body == {"listings": [dict_answer(i) for i in issued]}
    assert [len(i["related_listings"]) for i in body["listings"]] == [0, 1, 0]


@pytest.mark.parametrize(
    "listing_changes",
    [
        {},
        {"subject": {"kind": "person", "id_hash": "a" * 64, "id_masked": "110101****1234", "display_name": "张 *"}},
        {"legal_basis": {"case_number": 'Case "listing": {}', "decision_ref": "listing"}},
        {"status": "revoked", "version": 2, "revocation": {"reason": "paid", "at": "2026-12-01T00:00:00Z"}},
    ],
    ids=["issued", "unicode name", "case number quoting the field name", "revoked"],
)
def test_listing_json_taken_from_the_wire_bytes_is_the_listing_serialized_alone(listing_changes: dict[str, Any]) -> None:
    document = court_event("court.x:2026-000001")
    document["listing"] |= listing_changes
    if listing_changes.get("status") == "revoked":
        document["event_type"] = EventType.REVOKED.value
    event = ListingEvent.model_validate(document)

    assert store.listing_json(to_wire(event)) == event.listing.model_dump_json().encode()


def test_listing_json_refuses_bytes_that_do_not_end_with_the_listing() -> None:
    value = to_wire(ListingEvent.model_validate(court_event("court.x:2026-000002")))

    with pytest.raises(ValueError, match="end with the listing"):
        store.listing_json(value + b" ")


def summary(listing: Listing) -> dict[str, Any]:
    return {
        "status": listing.status.value,
        "restrictions": [r.value for r in listing.restrictions],
        "scope": listing.scope,
        "effective_from": listing.effective_from.isoformat(),
        "expires_at": listing.expires_at.isoformat(),
    }


def test_history_entries_shared_by_a_batch_describe_each_listing_written() -> None:
    issued = build(person_request("A B"), person_request("C D", term_days=30), company_request(), person_request("E F"))

    for item in issued:
        first, *related = item.changes
        assert json.loads(first.change_json) == {"issued": summary(first.event.listing)}
        for change in related:
            assert json.loads(change.change_json) == {
                "issued": summary(change.event.listing),
                "legal_representative_of": first.event.listing.listing_id,
            }
    assert issued[0].changes[0].change_json is issued[3].changes[0].change_json, "same terms, one JSON"
    assert issued[1].changes[0].change_json != issued[0].changes[0].change_json
