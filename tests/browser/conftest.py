"""Fixtures of the public register tests: listings published through the court service, each with a unique name."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.scenario import TOKENS
from tests.integration.helpers import fresh_person, publish


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real headless Chromium (Debian's chromium + playwright-core)")


@dataclass(frozen=True)
class Published:
    """Listings this module put on the register, and the raw ids only the court knows."""

    family: str  # a word in every name below, unique to this test run
    debtor_id: str
    debtor_name: str
    debtor: dict[str, Any]
    revoked_id: str
    revoked_name: str
    expired_name: str
    company_name: str
    company: dict[str, Any]
    representative: dict[str, Any]


def court_body(subject: dict[str, object], **extra: object) -> dict[str, object]:
    return {
        "authority": "court.sh-2nd-intermediate",
        "list": "court.dishonest_debtor",
        "subject": subject,
        "legal_basis": {"case_number": f"(2026) Hu 02 Zhi {secrets.randbelow(10**5)}"},
        **extra,
    }


async def _issue(client: httpx.AsyncClient, court: str, body: dict[str, object]) -> dict[str, Any]:
    return await publish(client, court, TOKENS["court"], "/v1/listings", body)


@pytest.fixture(scope="module")
async def register_listings(services: dict[str, str]) -> AsyncIterator[Published]:
    """A listed person, a revoked one, an expired one, and a company with its legal representative."""
    family = "Reg" + secrets.token_hex(3)
    court = services["court"]
    debtor_id, revoked_id, expired_id, rep_id = (fresh_person() for _ in range(4))
    long_ago = datetime.now(UTC) - timedelta(days=3 * 365)
    company_code = "91" + "".join(secrets.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(16))
    async with httpx.AsyncClient(timeout=15) as client:
        debtor = await _issue(client, court, court_body({"kind": "person", "id": debtor_id, "name": f"Wang {family} Li"}))
        revoked = await _issue(client, court, court_body({"kind": "person", "id": revoked_id, "name": f"Paid {family}"}))
        await publish(
            client, court, TOKENS["court"], f"/v1/listings/{revoked['listing']['listing_id']}/revoke", {"reason": "paid"}, 200
        )
        await _issue(
            client,
            court,
            court_body(
                {"kind": "person", "id": expired_id, "name": f"Expired {family}"},
                effective_from=long_ago.isoformat(),
                term_days=365,
            ),
        )
        company = await _issue(
            client,
            court,
            court_body(
                {"kind": "organization", "id": company_code, "name": f"{family} Trading Co"},
                legal_representative={"id": rep_id, "name": f"Chen {family}"},
            ),
        )
    yield Published(
        family=family,
        debtor_id=debtor_id,
        debtor_name=f"Wang {family} Li",
        debtor=debtor["listing"],
        revoked_id=revoked_id,
        revoked_name=f"Paid {family}",
        expired_name=f"Expired {family}",
        company_name=f"{family} Trading Co",
        company=company["listing"],
        representative=company["related_listings"][0],
    )
