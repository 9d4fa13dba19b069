"""POST /v1/listings/batch: many listings in one request, all or nothing, each item judged like POST /v1/listings."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from services.scenario import TOKENS
from tests.conftest import Infra
from tests.integration.helpers import fresh_person

pytestmark = pytest.mark.integration
COURT = "court.bj-1st-intermediate"


def person(case: str) -> dict[str, Any]:
    return {
        "authority": COURT,
        "list": "court.dishonest_debtor",
        "subject": {"kind": "person", "id": fresh_person(), "name": "Batch Person"},
        "legal_basis": {"case_number": case},
    }


def company(case: str) -> dict[str, Any]:
    return {
        **person(case),
        "subject": {
            "kind": "organization",
            "id": "91110000" + uuid.uuid4().hex[:10].upper().replace("I", "A"),
            "name": "Batch Ltd",
        },
        "legal_representative": {"id": fresh_person(), "name": "Batch Boss"},
    }


async def post_batch(url: str, items: list[dict[str, Any]], token: str = TOKENS["court"]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{url}/v1/listings/batch", json={"listings": items}, headers={"Authorization": f"Bearer {token}"}
        )


async def written(infra: Infra, cases: list[str]) -> dict[str, int]:
    """Rows of each table of the court's register that carry one of these case numbers."""
    conn = await asyncpg.connect(infra.database_url, server_settings={"search_path": "court"})
    try:
        return {
            "listings": await conn.fetchval(
                "SELECT count(*) FROM listings WHERE state->'legal_basis'->>'case_number' = ANY($1)", cases
            ),
            "history": await conn.fetchval(
                "SELECT count(*) FROM listing_history WHERE legal_basis->>'case_number' = ANY($1)", cases
            ),
            "outbox": await conn.fetchval(
                "SELECT count(*) FROM outbox o JOIN listings l ON l.listing_id = o.key"
                " WHERE l.state->'legal_basis'->>'case_number' = ANY($1)",
                cases,
            ),
        }
    finally:
        await conn.close()


async def test_a_batch_is_issued_in_request_order_and_queued_for_kafka_in_that_order(
    services: dict[str, str], infra: Infra
) -> None:
    cases = [f"(2026) Batch {uuid.uuid4().hex[:8]}" for _ in range(3)]
    response = await post_batch(services["court"], [person(cases[0]), company(cases[1]), person(cases[2])])

    assert response.status_code == 201, response.text
    issued = response.json()["listings"]
    assert [i["listing"]["legal_basis"]["case_number"] for i in issued] == cases
    assert [len(i["related_listings"]) for i in issued] == [0, 1, 0]
    assert issued[1]["related_listings"][0]["subject"]["kind"] == "person"
    ids = [i["listing"]["listing_id"] for i in issued]
    ids.insert(2, issued[1]["related_listings"][0]["listing_id"])
    conn = await asyncpg.connect(infra.database_url, server_settings={"search_path": "court"})
    try:
        queued = [r["key"] for r in await conn.fetch("SELECT key FROM outbox WHERE key = ANY($1) ORDER BY id", ids)]
    finally:
        await conn.close()
    assert queued == ids, "the outbox does not hold the batch's records in request order"
    async with httpx.AsyncClient(timeout=10) as client:
        stored = await client.get(
            f"{services['court']}/v1/listings/{ids[0]}", headers={"Authorization": f"Bearer {TOKENS['court']}"}
        )
    assert stored.json()["listing"] == issued[0]["listing"]


async def test_one_item_breaking_a_rule_refuses_the_whole_batch_naming_its_index(services: dict[str, str], infra: Infra) -> None:
    cases = [f"(2026) Refused {uuid.uuid4().hex[:8]}" for _ in range(3)]
    minor = person(cases[1]) | {"subject": {"kind": "person", "id": "110101201505051234", "name": "Minor"}}

    response = await post_batch(services["court"], [person(cases[0]), minor, person(cases[2])])

    assert response.status_code == 422
    assert response.json() == {"error": "listings.1.subject.id: minors cannot be listed", "field": "listings.1.subject.id"}
    assert await written(infra, cases) == {"listings": 0, "history": 0, "outbox": 0}


async def test_a_malformed_item_is_a_422_naming_its_index_and_field(services: dict[str, str], infra: Infra) -> None:
    cases = [f"(2026) Malformed {uuid.uuid4().hex[:8]}" for _ in range(2)]
    broken = person(cases[1]) | {"restrictions": ["NOT_A_RESTRICTION"]}

    response = await post_batch(services["court"], [person(cases[0]), broken])

    assert response.status_code == 422
    assert response.json()["field"].startswith("listings.1.restrictions")
    assert await written(infra, cases) == {"listings": 0, "history": 0, "outbox": 0}


async def test_an_item_for_an_authority_the_token_does_not_act_for_is_a_403_and_nothing_is_written(
    services: dict[str, str], infra: Infra
) -> None:
    cases = [f"(2026) Foreign {uuid.uuid4().hex[:8]}" for _ in range(2)]
    flight_ban = {
        "authority": "transport.caac",
        "list": "transport.flight_ban",
        "subject": {"kind": "person", "id": fresh_person(), "name": "Flyer"},
        "legal_basis": {"case_number": cases[0]},
    }
    rail_ban = flight_ban | {
        "authority": "transport.railway",
        "list": "transport.rail_ban",
        "legal_basis": {"case_number": cases[1]},
    }

    response = await post_batch(services["transport"], [flight_ban, rail_ban], token=TOKENS["caac"])

    assert response.status_code == 403
    assert "listings.1" in response.text
    conn = await asyncpg.connect(infra.database_url, server_settings={"search_path": "transport"})
    try:
        count = await conn.fetchval("SELECT count(*) FROM listings WHERE state->'legal_basis'->>'case_number' = ANY($1)", cases)
    finally:
        await conn.close()
    assert count == 0


async def test_an_empty_batch_is_a_422(services: dict[str, str]) -> None:
    response = await post_batch(services["court"], [])

    assert response.status_code == 422
    assert response.json()["field"] == "listings"
