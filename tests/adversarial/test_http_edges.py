"""Every HTTP route at its edges: 401 without a valid token, 403 with another's, 413 over the limit, 422 naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.kit.http import MAX_BODY_BYTES
from services.scenario import TOKENS
from tests.integration.helpers import court_listing, fresh_person, publish

pytestmark = pytest.mark.integration

FAMILY_TOKEN = {"court": TOKENS["court"], "transport": TOKENS["caac"], "city-pilot": TOKENS["city"]}
OTHER_FAMILY_TOKENS = {
    "court": [TOKENS["caac"], TOKENS["railway"], TOKENS["city"]],
    "transport": [TOKENS["court"], TOKENS["city"]],
    "city-pilot": [TOKENS["court"], TOKENS["caac"], TOKENS["railway"]],
}
CONSUMERS = ("airline", "ticketing", "luxury-retail", "admissions")
ACTIONS = {
    "airline": "board_flight",
    "ticketing": "buy_flight_ticket",
    "luxury-retail": "buy_luxury_goods",
    "admissions": "pay_private_tuition",
}


def routes(listing_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every publisher route with a body it would accept from the right caller."""
    return [
        ("POST", "/v1/listings", {"authority": "x", "list": "x", "subject": {}, "legal_basis": {}}),
        ("POST", f"/v1/listings/{listing_id}/amend", {"restrictions": ["FLIGHT"]}),
        ("POST", f"/v1/listings/{listing_id}/revoke", {"reason": "paid"}),
        ("GET", f"/v1/listings/{listing_id}", None),
        ("GET", f"/v1/listings/{listing_id}/history", None),
        ("GET", "/v1/listings", None),
    ]


def person(name: str = "Edge Case") -> dict[str, str]:
    return {"kind": "person", "id": fresh_person(), "name": name}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def listings(services: dict[str, str], client: httpx.AsyncClient) -> dict[str, str]:
    """One live listing per publisher, so that routes with a listing id reach their token checks on a real listing."""
    court = await court_listing(client, services, fresh_person())
    caac = await publish(
        client,
        services["transport"],
        TOKENS["caac"],
        "/v1/listings",
        {
            "authority": "transport.caac",
            "list": "transport.flight_ban",
            "subject": person(),
            "legal_basis": {"case_number": "E-1"},
        },
    )
    city = await publish(
        client,
        services["city-pilot"],
        TOKENS["city"],
        "/v1/listings",
        {
            "authority": "city.hangzhou",
            "list": "city.hangzhou.transit_fare_evasion",
            "subject": person(),
            "legal_basis": {"case_number": "E-2"},
            "term_days": 90,
        },
    )
    return {"court": court["listing_id"], "transport": caac["listing"]["listing_id"], "city-pilot": city["listing"]["listing_id"]}


async def call(client: httpx.AsyncClient, method: str, url: str, body: Any = None, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await client.request(method, url, json=body, headers=headers)


@pytest.mark.parametrize("service", ["court", "transport", "city-pilot"])
async def test_every_publisher_route_answers_401_without_a_token_or_with_an_unknown_one(
    service: str, services: dict[str, str], listings: dict[str, str], client: httpx.AsyncClient
) -> None:
    for method, path, body in routes(listings[service]):
        for authorization in (None, "Bearer not-a-token", "Bearer", "Basic Y291cnQ=", f"Bearer {FAMILY_TOKEN[service]}x"):
            headers = {"Authorization": authorization} if authorization else {}
            response = await client.request(method, f"{services[service]}{path}", json=body, headers=headers)
            assert response.status_code == 401, (method, path, authorization, response.text)


@pytest.mark.parametrize("service", ["court", "transport", "city-pilot"])
async def test_every_publisher_route_answers_403_to_another_familys_token(
    service: str, services: dict[str, str], listings: dict[str, str], client: httpx.AsyncClient
) -> None:
    for method, path, body in routes(listings[service]):
        for token in OTHER_FAMILY_TOKENS[service]:
            response = await call(client, method, f"{services[service]}{path}", body, token)
            assert response.status_code == 403, (method, path, response.text)


async def test_railway_token_is_refused_403_on_every_route_touching_a_caac_listing(
    services: dict[str, str], listings: dict[str, str], client: httpx.AsyncClient
) -> None:
    url, caac_listing = services["transport"], listings["transport"]
    issue = {
        "authority": "transport.caac",
        "list": "transport.flight_ban",
        "subject": person(),
        "legal_basis": {"case_number": "E-3"},
    }
    for method, path, body in [*routes(caac_listing)[1:5], ("POST", "/v1/listings", issue)]:
        response = await call(client, method, f"{url}{path}", body, TOKENS["railway"])
        assert response.status_code == 403, (method, path, response.text)
    current = await call(client, "GET", f"{url}/v1/listings/{caac_listing}", token=TOKENS["caac"])
    assert current.json()["listing"]["version"] == 1, "a refused amendment or revocation changed the listing"


def oversized() -> bytes:
    return b'{"padding": "' + b"x" * (MAX_BODY_BYTES + 1024) + b'"}'


async def chunks() -> AsyncIterator[bytes]:
    """The same oversized body without a Content-Length: the limit must hold on the bytes actually read."""
    body = oversized()
    for i in range(0, len(body), 8192):
        yield body[i : i + 8192]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_every_post_route_refuses_a_body_over_the_size_limit_with_413(
    chunked: bool, services: dict[str, str], listings: dict[str, str], client: httpx.AsyncClient
) -> None:
    targets: list[tuple[str, str, str | None]] = [
        (services[s], path, FAMILY_TOKEN[s]) for s in listings for m, path, _ in routes(listings[s]) if m == "POST"
    ]
    targets += [(services[c], "/v1/checks", None) for c in CONSUMERS]
    for base, path, token in targets:
        headers = {"content-type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
        response = await client.post(f"{base}{path}", content=chunks() if chunked else oversized(), headers=headers)
        assert response.status_code == 413, (base, path, response.status_code)
        assert response.json()["field"] == "body"


PUBLISHER_422 = [
    ("POST", "/v1/listings", {"subject": person("Nul\u0000Byte")}, "subject.name"),
    ("POST", "/v1/listings", {"legal_basis": {"case_number": "(2026) \u0000"}}, "legal_basis.case_number"),
    ("POST", "/v1/listings", {"legal_basis": {"case_number": "C", "decision_ref": "\u0000"}}, "legal_basis.decision_ref"),
    ("POST", "/v1/listings", {"effective_from": "9999-12-01T00:00:00Z"}, "effective_from"),
    ("POST", "/v1/listings", {"effective_from": "0001-01-01T00:00:00+01:00"}, "effective_from"),
    ("POST", "/v1/listings", {"expires_at": "2027-01-01T00:00:00"}, "expires_at"),
    ("POST", "/v1/listings", {"restrictions": "FLIGHT"}, "restrictions"),
    ("POST", "/v1/listings", {"term_days": -1}, "term_days"),
    ("POST", "{listing}/amend", {"expires_at": "soon"}, "expires_at"),
    ("POST", "{listing}/amend", {"restrictions": ["TELEPORTATION"]}, "restrictions"),
    ("POST", "{listing}/amend", {"legal_basis": {"case_number": "\u0000"}}, "legal_basis.case_number"),
    ("POST", "{listing}/revoke", {"reason": "bored"}, "reason"),
    ("POST", "{listing}/revoke", {"reason": "paid", "legal_basis": {"case_number": "x\u0000"}}, "legal_basis.case_number"),
    ("GET", "/v1/listings?page=0", None, "page"),
    ("GET", "/v1/listings?status=deleted", None, "status"),
    ("GET", "/v1/listings/court.x%00y", None, "listing_id"),
    ("GET", "/v1/listings/court.x%00y/history", None, "listing_id"),
    ("POST", "/v1/listings/court.x%00y/revoke", {"reason": "paid"}, "listing_id"),
    ("POST", "/v1/listings/court.x%00y/amend", {"restrictions": ["FLIGHT"]}, "listing_id"),
]


@pytest.mark.parametrize(
    ("method", "path", "change", "field"),
    PUBLISHER_422,
    ids=[f"{m} {p} {f} #{i}" for i, (m, p, _, f) in enumerate(PUBLISHER_422)],
)
async def test_publisher_refuses_malformed_input_with_422_naming_the_field_and_changes_nothing(
    method: str,
    path: str,
    change: dict[str, Any] | None,
    field: str,
    services: dict[str, str],
    listings: dict[str, str],
    client: httpx.AsyncClient,
) -> None:
    url, listing_id = services["court"], listings["court"]
    body = change
    if path == "/v1/listings" and method == "POST":
        body = {
            "authority": "court.bj-1st-intermediate",
            "list": "court.dishonest_debtor",
            "subject": person(),
            "legal_basis": {"case_number": "(2026) Edge 1"},
        } | (change or {})
    response = await call(client, method, url + path.replace("{listing}", f"/v1/listings/{listing_id}"), body, TOKENS["court"])

    assert response.status_code == 422, response.text
    named = response.json()["field"]
    assert named == field or named.startswith(f"{field}."), response.json()
    current = await call(client, "GET", f"{url}/v1/listings/{listing_id}", token=TOKENS["court"])
    assert current.json()["listing"]["version"] == 1


CHECK_422 = [
    ({"at": "0001-01-01T00:00:00+01:00"}, "at"),
    ({"at": "9999-12-31T23:59:59-01:00"}, "at"),
    ({"at": "2026-11-26T10:00:00"}, "at"),
    ({"region": "CN_ZJ"}, "region"),
    ({"subject": {"kind": "person"}}, "subject.id"),
    ({"subject": {"kind": "person", "id": ""}}, "subject.id"),
    ({"subject": {"kind": "person", "id": "1" * 65}}, "subject.id"),
    ({"action": "teleport"}, "action"),
    ({"seat_class": "x" * 33}, "seat_class"),
]


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize(("change", "field"), CHECK_422, ids=[f"{f} #{i}" for i, (_, f) in enumerate(CHECK_422)])
async def test_check_refuses_malformed_input_with_422_naming_the_field(
    consumer: str, change: dict[str, Any], field: str, services: dict[str, str], client: httpx.AsyncClient
) -> None:
    body = {"subject": {"kind": "person", "id": fresh_person()}, "action": ACTIONS[consumer]} | change

    response = await client.post(f"{services[consumer]}/v1/checks", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize(
    "body", [b"[]", b'"check"', b"null", b"{", b"\xff\xfe"], ids=["array", "string", "null", "truncated", "not-utf8"]
)
async def test_check_refuses_a_body_that_is_no_json_object_with_422(
    consumer: str, body: bytes, services: dict[str, str], client: httpx.AsyncClient
) -> None:
    response = await client.post(f"{services[consumer]}/v1/checks", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 422, response.text
    assert response.json()["field"]
