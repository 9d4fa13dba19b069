"""The check API's fast path answers exactly as the FastAPI route does, on the running services and their real copies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.helpers import court_listing, fresh_person, wait_for_answer

pytestmark = pytest.mark.integration

# An explicit time, so that checked_at is the same in both answers; an hour ahead, inside the listing's term.
AT = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def both_ways(client: httpx.AsyncClient, url: str, body: bytes) -> tuple[httpx.Response, httpx.Response]:
    """The same bytes through the fast path (plain application/json) and through the route (a `+json` type,
    which FastAPI reads as JSON but the fast path leaves alone)."""
    fast = await client.post(f"{url}/v1/checks", content=body, headers={"content-type": "application/json"})
    route = await client.post(f"{url}/v1/checks", content=body, headers={"content-type": "application/check+json"})
    return fast, route


def check_body(subject_id: str, action: str, **extra: Any) -> bytes:
    return json.dumps({"subject": {"kind": "person", "id": subject_id}, "action": action, "at": AT, **extra}).encode()


def same(fast: httpx.Response, route: httpx.Response) -> None:
    assert (fast.status_code, fast.content) == (route.status_code, route.content)
    assert fast.headers["content-type"] == route.headers["content-type"]


async def test_fast_path_and_route_give_the_same_answers_for_listed_and_unlisted_subjects(services: dict[str, str]) -> None:
    listed, unlisted = fresh_person(), fresh_person()
    async with httpx.AsyncClient(timeout=10) as client:
        listing = await court_listing(client, services, listed)
        # Every copy asked holds the listing before the comparison: a copy changing between the two asks is no difference.
        await wait_for_answer(client, services["airline"], listed, "board_flight", allowed=False, at=AT)
        await wait_for_answer(client, services["ticketing"], listed, "buy_rail_ticket", allowed=False, seat_class="first", at=AT)
        await wait_for_answer(client, services["admissions"], listed, "pay_private_tuition", allowed=False, at=AT)
        asked = [
            (services["airline"], check_body(listed, "board_flight")),
            (services["airline"], check_body(unlisted, "board_flight")),
            (services["airline"], check_body(f" {listed.lower()} ", "board_flight", region="CN-ZJ-HZ")),
            (services["ticketing"], check_body(listed, "buy_rail_ticket", seat_class="first")),
            (services["ticketing"], check_body(listed, "buy_rail_ticket", seat_class="second")),
            (services["admissions"], check_body(listed, "pay_private_tuition")),
        ]
        answers = [await both_ways(client, url, body) for url, body in asked]

    for fast, route in answers:
        same(fast, route)
    blocked = answers[0][0].json()
    assert blocked["allowed"] is False
    assert [b["listing_id"] for b in blocked["blocking"]] == [listing["listing_id"]]
    assert answers[1][0].json() == {"allowed": True, "action": "board_flight", "blocking": [], "checked_at": AT}
    assert answers[3][0].json()["allowed"] is False
    assert answers[4][0].json()["allowed"] is True


@pytest.mark.parametrize(
    "body",
    [
        b'{"subject":{"kind":"person","id":"1"},"action":"launch_rocket"}',
        b'{"subject":{"kind":"person","id":"1"},"action":"buy_rail_ticket"}',
        b'{"subject":{"kind":"alien","id":"1"},"action":"board_flight"}',
        b'{"subject":{"kind":"person"},"action":"board_flight"}',
        b'{"subject":{"kind":"person","id":"1"},"action":"board_flight","at":"2026-11-26T10:00:00"}',
        b'{"subject":{"kind":"person","id":"1"},"action":"board_flight","region":"CN_ZJ"}',
        b'{"subject":{"kind":"person","id":"1"},"action":"board_flight"} trailing',
        b"{nope",
        b"[]",
        b"",
    ],
    ids=["action", "seat_class", "kind", "no-id", "naive-at", "region", "trailing", "truncated", "array", "empty"],
)
async def test_fast_path_and_route_refuse_a_bad_check_with_the_same_status_and_body(
    services: dict[str, str], body: bytes
) -> None:
    url = services["ticketing"]  # handles both actions, so seat_class is the field named when it is missing
    async with httpx.AsyncClient(timeout=10) as client:
        fast, route = await both_ways(client, url, body)

    same(fast, route)
    assert fast.status_code == 422, fast.text
    assert fast.json()["field"]
