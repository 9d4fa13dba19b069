"""The issue routes at their edges: a full batch fits its own body limit, a larger body is a 413, and concurrent
single POSTs written together each get their own listing, history and outbox record."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from services.publishers.app import BATCH_MAX_BODY_BYTES
from services.publishers.requests import MAX_BATCH_LISTINGS
from services.scenario import TOKENS
from tests.conftest import Infra
from tests.integration.helpers import fresh_person

pytestmark = pytest.mark.integration
COURT = "court.bj-1st-intermediate"
HEADERS = {"Authorization": f"Bearer {TOKENS['court']}", "content-type": "application/json"}


def person(case: str) -> dict[str, Any]:
    return {
        "authority": COURT,
        "list": "court.dishonest_debtor",
        "subject": {"kind": "person", "id": fresh_person(), "name": "Limit Person"},
        "legal_basis": {"case_number": case},
    }


async def count_written(infra: Infra, cases: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(infra.database_url, server_settings={"search_path": "court"})
    try:
        row = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM listings WHERE state->'legal_basis'->>'case_number' = ANY($1)) AS listings,
                   (SELECT count(*) FROM listing_history WHERE legal_basis->>'case_number' = ANY($1)) AS history,
                   (SELECT count(*) FROM outbox o JOIN listings l ON l.listing_id = o.key
                     WHERE l.state->'legal_basis'->>'case_number' = ANY($1)) AS outbox
            """,
            cases,
        )
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


async def test_a_full_batch_over_the_single_routes_64_kib_is_issued(services: dict[str, str], infra: Infra) -> None:
    cases = [f"(2026) Full batch {uuid.uuid4().hex}" for _ in range(MAX_BATCH_LISTINGS)]
    body = json.dumps({"listings": [person(c) for c in cases]}).encode()
    assert 64 * 1024 < len(body) <= BATCH_MAX_BODY_BYTES, len(body)

    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(f"{services['court']}/v1/listings/batch", content=body, headers=HEADERS)

    assert response.status_code == 201, response.text[:300]
    assert [i["listing"]["legal_basis"]["case_number"] for i in response.json()["listings"]] == cases
    n = MAX_BATCH_LISTINGS
    assert await count_written(infra, cases) == {"listings": n, "history": n, "outbox": n}


def padded_batch(size: int, case: str) -> bytes:
    """A valid-looking batch padded past `size` bytes by a long case number (the limit must bind before parsing)."""
    item = person(case) | {"legal_basis": {"case_number": case + "x" * size}}
    return json.dumps({"listings": [item]}).encode()


async def in_chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 16384):
        yield body[i : i + 16384]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_batch_body_over_its_limit_is_a_413_and_writes_nothing(
    chunked: bool, services: dict[str, str], infra: Infra
) -> None:
    case = f"(2026) Oversized {uuid.uuid4().hex}"
    body = padded_batch(BATCH_MAX_BODY_BYTES, case)

    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{services['court']}/v1/listings/batch", content=in_chunks(body) if chunked else body, headers=HEADERS
        )

    assert response.status_code == 413
    assert response.json() == {"error": f"request body over {BATCH_MAX_BODY_BYTES} bytes", "field": "body"}
    assert (await count_written(infra, [case + "x" * BATCH_MAX_BODY_BYTES]))["listings"] == 0


async def test_the_single_route_keeps_the_64_kib_limit(services: dict[str, str]) -> None:
    body = json.dumps(person("(2026) Single " + "x" * 70_000)).encode()

    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{services['court']}/v1/listings", content=body, headers=HEADERS)

    assert response.status_code == 413
    assert response.json()["error"] == "request body over 65536 bytes"


async def test_concurrent_single_posts_each_get_their_own_listing_and_a_refused_one_writes_nothing(
    services: dict[str, str], infra: Infra
) -> None:
    cases = [f"(2026) Concurrent {uuid.uuid4().hex}" for _ in range(40)]
    minor_case = f"(2026) Concurrent minor {uuid.uuid4().hex}"
    minor = person(minor_case) | {"subject": {"kind": "person", "id": "110101201505051234", "name": "Minor"}}

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20)) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"{services['court']}/v1/listings", json=body, headers=HEADERS)
                for body in [*map(person, cases), minor]
            )
        )

    *issued, refused = answers
    assert [a.status_code for a in issued] == [201] * len(cases), [a.text for a in issued if a.status_code != 201][:3]
    assert [a.json()["listing"]["legal_basis"]["case_number"] for a in issued] == cases
    assert len({a.json()["listing"]["listing_id"] for a in issued}) == len(cases)
    assert refused.status_code == 422
    assert refused.json() == {"error": "subject.id: minors cannot be listed", "field": "subject.id"}
    n = len(cases)
    assert await count_written(infra, cases) == {"listings": n, "history": n, "outbox": n}
    assert await count_written(infra, [minor_case]) == {"listings": 0, "history": 0, "outbox": 0}
