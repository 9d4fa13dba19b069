"""The HTTP edges: tokens (401/403), invalid input (422 naming the field), size limit, history."""

from __future__ import annotations

import httpx
import pytest

from services.scenario import TOKENS
from tests.integration.helpers import court_listing, fresh_person, publish

pytestmark = pytest.mark.integration


def listing_body(subject_id: str) -> dict[str, object]:
    return {
        "authority": "court.bj-1st-intermediate",
        "list": "court.dishonest_debtor",
        "subject": {"kind": "person", "id": subject_id, "name": "Api Test"},
        "legal_basis": {"case_number": "(2026) API 1"},
    }


async def test_publisher_refuses_missing_or_unknown_token_with_401(services: dict[str, str]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        missing = await client.post(f"{services['court']}/v1/listings", json=listing_body(fresh_person()))
        wrong = await client.post(
            f"{services['court']}/v1/listings", json=listing_body(fresh_person()), headers={"Authorization": "Bearer not-a-token"}
        )
    assert missing.status_code == 401
    assert wrong.status_code == 401


async def test_publisher_refuses_another_authoritys_token_with_403(services: dict[str, str]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        other_family = await client.post(
            f"{services['court']}/v1/listings",
            json=listing_body(fresh_person()),
            headers={"Authorization": f"Bearer {TOKENS['caac']}"},
        )
        railway_as_caac = await client.post(
            f"{services['transport']}/v1/listings",
            headers={"Authorization": f"Bearer {TOKENS['railway']}"},
            json={
                "authority": "transport.caac",
                "list": "transport.flight_ban",
                "subject": {"kind": "person", "id": fresh_person(), "name": "X"},
                "legal_basis": {"case_number": "C-1"},
            },
        )
    assert other_family.status_code == 403
    assert railway_as_caac.status_code == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"legal_basis": None}, "legal_basis"),
        ({"list": "transport.flight_ban"}, "list"),
        ({"subject": {"kind": "person", "id": "12345", "name": "X"}}, "subject.id"),
        ({"subject": {"kind": "person", "id": "110101201505051234", "name": "Minor"}}, "subject.id"),
        ({"term_days": 1000}, "term_days"),
        ({"restrictions": ["CITY_SUBSIDY"]}, "restrictions"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_publisher_invalid_input_is_422_naming_the_field_and_writes_nothing(
    services: dict[str, str], change: dict[str, object], field: str
) -> None:
    body = {k: v for k, v in (listing_body(fresh_person()) | change).items() if v is not None}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{services['court']}/v1/listings", json=body, headers={"Authorization": f"Bearer {TOKENS['court']}"}
        )
        assert response.status_code == 422, response.text
        assert response.json()["field"].startswith(field)
        listed = await client.get(f"{services['court']}/v1/listings", headers={"Authorization": f"Bearer {TOKENS['court']}"})
    assert listed.status_code == 200


async def test_oversized_body_is_413_and_malformed_json_is_422(services: dict[str, str]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        huge = await client.post(
            f"{services['airline']}/v1/checks", content=b"{" + b" " * 200_000 + b"}", headers={"content-type": "application/json"}
        )
        broken = await client.post(
            f"{services['airline']}/v1/checks", content=b"{nope", headers={"content-type": "application/json"}
        )
    assert huge.status_code == 413
    assert broken.status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subject": {"kind": "person", "id": "1"}, "action": "launch_rocket"}, "action"),
        ({"subject": {"kind": "person", "id": "1"}, "action": "buy_rail_ticket"}, "seat_class"),
        ({"subject": {"kind": "alien", "id": "1"}, "action": "board_flight"}, "subject.kind"),
        ({"action": "board_flight"}, "subject"),
        ({"subject": {"kind": "person", "id": "1"}, "action": "board_flight", "at": "yesterday"}, "at"),
    ],
)
async def test_check_invalid_input_is_422_naming_the_field(services: dict[str, str], body: dict[str, object], field: str) -> None:
    consumer = "ticketing" if body.get("action") == "buy_rail_ticket" else "airline"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{services[consumer]}/v1/checks", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


async def test_history_records_who_when_what_and_legal_basis_oldest_first(services: dict[str, str]) -> None:
    auth = {"Authorization": f"Bearer {TOKENS['court']}"}
    async with httpx.AsyncClient(timeout=10) as client:
        listing = await court_listing(client, services, fresh_person())
        path = f"/v1/listings/{listing['listing_id']}"
        await publish(client, services["court"], TOKENS["court"], f"{path}/amend", {"restrictions": ["FLIGHT"]}, expect=200)
        await publish(client, services["court"], TOKENS["court"], f"{path}/revoke", {"reason": "settled"}, expect=200)
        again = await client.post(f"{services['court']}{path}/revoke", json={"reason": "paid"}, headers=auth)
        history = (await client.get(f"{services['court']}{path}/history", headers=auth)).json()["history"]
        current = (await client.get(f"{services['court']}{path}", headers=auth)).json()["listing"]
        foreign = await client.get(f"{services['court']}{path}", headers={"Authorization": f"Bearer {TOKENS['caac']}"})
    assert again.status_code == 409
    assert [h["event_type"] for h in history] == ["listing.issued", "listing.amended", "listing.revoked"]
    assert [h["version"] for h in history] == [1, 2, 3]
    assert all(h["actor"] == "token:court.*" and h["at"] and h["legal_basis"]["case_number"] for h in history)
    assert history[1]["change"]["restrictions"]["to"] == ["FLIGHT"]
    assert history[2]["change"]["reason"] == "settled"
    assert current["status"] == "revoked" and current["version"] == 3
    assert foreign.status_code == 403
