"""The public register's JSON API on the running court service: what it finds, what it never shows, what it refuses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.conftest import Published

pytestmark = pytest.mark.integration


async def lookup(court: str, query: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"{court}/v1/register", params={"q": query})


def names(response: httpx.Response) -> list[str]:
    return [entry["name"] for entry in response.json()["results"]]


async def test_name_search_is_case_insensitive_substring_and_shows_only_listings_in_force(
    services: dict[str, str], register_listings: Published
) -> None:
    response = await lookup(services["court"], register_listings.family.lower())
    assert response.status_code == 200, response.text
    found = names(response)
    assert register_listings.debtor_name in found
    assert register_listings.company_name in found
    assert register_listings.revoked_name not in found  # revoked: off the register at once
    assert register_listings.expired_name not in found  # expiry needs no event


async def test_id_search_matches_exactly_and_never_returns_the_raw_id(
    services: dict[str, str], register_listings: Published
) -> None:
    response = await lookup(services["court"], f"  {register_listings.debtor_id.lower()} ")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["match"] == "id"
    assert [e["listing_id"] for e in body["results"]] == [register_listings.debtor["listing_id"]]
    entry: dict[str, Any] = body["results"][0]
    assert entry["id_masked"] == register_listings.debtor["subject"]["id_masked"]
    assert register_listings.debtor_id not in response.text
    assert entry["case_number"] == register_listings.debtor["legal_basis"]["case_number"]
    assert entry["court"] == "court.sh-2nd-intermediate"
    assert entry["expires_at"] == register_listings.debtor["expires_at"][:10]


async def test_revoked_subject_searched_by_id_is_not_found(services: dict[str, str], register_listings: Published) -> None:
    response = await lookup(services["court"], register_listings.revoked_id)
    assert response.status_code == 200
    assert response.json()["results"] == []


async def test_company_and_its_legal_representative_are_each_on_the_register(
    services: dict[str, str], register_listings: Published
) -> None:
    response = await lookup(services["court"], register_listings.family)
    by_id = {e["listing_id"]: e for e in response.json()["results"]}
    assert by_id[register_listings.company["listing_id"]]["subject_kind"] == "organization"
    assert by_id[register_listings.representative["listing_id"]]["subject_kind"] == "person"


async def test_like_wildcards_in_a_name_search_match_only_themselves(
    services: dict[str, str], register_listings: Published
) -> None:
    response = await lookup(services["court"], "%_")
    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("", "Enter a name"),
        ("   ", "Enter a name"),
        ("x", "at least 2"),
        ("a" * 65, "too long"),
        ("Wang\x00Li", "control"),
        ("Wang\u200bLi", "invisible"),
    ],
)
async def test_bad_search_is_422_naming_q_with_a_clear_message(services: dict[str, str], query: str, says: str) -> None:
    response = await lookup(services["court"], query)
    assert response.status_code == 422
    assert response.json()["field"] == "q"
    assert says in response.json()["error"]


async def test_register_needs_no_token_while_the_publisher_api_still_does(services: dict[str, str]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(f"{services['court']}/register")
        listings = await client.get(f"{services['court']}/v1/listings")
    assert page.status_code == 200
    assert "How to request a correction" in page.text
    assert listings.status_code == 401
