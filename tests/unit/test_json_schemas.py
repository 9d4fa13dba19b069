"""The JSON Schemas and catalogue in schemas/json say what the models and tables enforce."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from schemas import generate
from schemas.catalogue import Restriction, may_publish
from schemas.events import DlqReason, Header, Listing

RENDERED = generate.json_schemas()  # the whole generated tree is compared in test_contract_documents.py


def schema(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(RENDERED[name])
    return document


def test_listing_schema_names_every_restriction_code() -> None:
    assert schema("listing.v1.schema.json")["$defs"]["Restriction"]["enum"] == [r.value for r in Restriction]


def test_listing_schema_carries_the_patterns_the_validators_enforce() -> None:
    props = schema("listing-event.v1.schema.json")["$defs"]["Listing"]["properties"]

    assert re.fullmatch(props["authority"]["pattern"], "court.bj-1st-intermediate")
    assert not re.fullmatch(props["authority"]["pattern"], "police.beijing")
    assert re.fullmatch(props["list"]["pattern"], "city.hangzhou.transit_fare_evasion")
    assert {"const": "national"} in props["scope"]["anyOf"]
    assert props["restrictions"]["uniqueItems"] is True


def test_listing_schema_requires_what_the_model_requires() -> None:
    required = set(schema("listing.v1.schema.json")["required"])

    assert required == {name for name, field in Listing.model_fields.items() if field.is_required()}


def test_headers_schema_requires_every_record_header_and_every_dlq_header() -> None:
    defs = schema("headers.v1.schema.json")["$defs"]
    dlq = {Header.DLQ_REASON, Header.DLQ_DETAIL, Header.DLQ_SOURCE}

    assert set(defs["RecordHeaders"]["required"]) == {h.value for h in Header if h not in dlq}
    assert set(defs["DeadLetterHeaders"]["required"]) == {h.value for h in dlq}
    assert defs["DeadLetterHeaders"]["properties"]["x-dlq-reason"]["enum"] == [r.value for r in DlqReason]


@pytest.mark.parametrize(
    ("header", "good", "bad"),
    [
        ("x-merkle-size", "17", "0"),
        ("x-merkle-index", "0", "01"),
        ("x-merkle-path", "", "not base64!"),
        ("x-authority", "transport.caac", "transport"),
    ],
)
def test_header_patterns_accept_and_refuse_what_a_consumer_does(header: str, good: str, bad: str) -> None:
    pattern = schema("headers.v1.schema.json")["$defs"]["RecordHeaders"]["properties"][header]["pattern"]

    assert re.fullmatch(pattern, good)
    assert not re.fullmatch(pattern, bad)


def test_catalogue_lists_every_topic_of_the_contract() -> None:
    topics = {t["name"]: t["config"]["cleanup.policy"] for t in schema("catalogue.v1.json")["topics"]}

    assert topics == {
        "court.listings.v1": "compact",
        "transport.listings.v1": "compact",
        "city-pilot.listings.v1": "compact",
        "airline.dlq.v1": "delete",
        "ticketing.dlq.v1": "delete",
        "luxury-retail.dlq.v1": "delete",
        "admissions.dlq.v1": "delete",
    }


def instances(pattern: str, city: str) -> str:
    return pattern.replace("*", "bj-1st-intermediate").replace("<city>", city).replace("<name>", "transit_fare_evasion")


@pytest.mark.parametrize("city", ["hangzhou", "chengdu"])
def test_catalogue_publishing_table_agrees_with_may_publish(city: str) -> None:
    rules = schema("catalogue.v1.json")["publishing"]
    pairs = [(instances(r["authority"], city), instances(r["list"], city)) for r in rules]

    for authority, _ in pairs:
        for _, list_id in pairs:
            assert may_publish(authority, list_id) is ((authority, list_id) in pairs), (authority, list_id)
