"""The publisher's 201 bodies written by pydantic directly decode to exactly what encoding the dict gave."""

from __future__ import annotations

import json
from typing import Any

from schemas.events import Listing
from services.publishers.app import issued_json
from tests.events import court_event


def listing(listing_id: str, display_name: str, **extra: Any) -> Listing:
    document = court_event(listing_id, **extra)["listing"]
    document["subject"]["display_name"] = display_name
    return Listing.model_validate(document)


def test_issued_json_is_the_dict_answer_with_its_related_listings_in_order() -> None:
    company = listing("court.x:2026-000001", "张 *", legal_basis={"case_number": "(2026) 京01执 1", "decision_ref": None})
    representative = listing("court.x:2026-000002", "Li *")

    body = issued_json(company, [representative])

    assert json.loads(body) == {
        "listing": company.model_dump(mode="json"),
        "related_listings": [representative.model_dump(mode="json")],
    }
    assert list(json.loads(body)["listing"]) == list(company.model_dump(mode="json")), "field order changed"


def test_issued_json_without_related_listings_has_an_empty_list() -> None:
    person = listing("court.x:2026-000003", "Zhang *")

    assert json.loads(issued_json(person, [])) == {"listing": person.model_dump(mode="json"), "related_listings": []}
