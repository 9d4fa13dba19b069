"""Time from a 201 on the court API to the airline refusing boarding, and from a revoke to it allowing again."""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.harness import Figure, progress, summary_ms
from services.scenario import TOKENS, People

NAMES = ("201 on court API -> airline refuses (median)", "revoke on court API -> airline allows (median)")
COURT_BODY = {
    "authority": "court.bj-1st-intermediate",
    "list": "court.dishonest_debtor",
    "legal_basis": {"case_number": "(2026) Bench 1"},
}


async def _until(client: httpx.AsyncClient, airline: str, subject: str, allowed: bool, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    body = {"subject": {"kind": "person", "id": subject}, "action": "board_flight"}
    while (await client.post(f"{airline}/v1/checks", json=body)).json()["allowed"] is not allowed:
        if time.monotonic() > deadline:
            raise TimeoutError(f"airline did not answer allowed={allowed} within {timeout}s")


async def measure(court: str, airline: str, runs: int) -> tuple[list[float], list[float]]:
    """`runs` listings, each published, awaited at the airline, revoked, awaited again; seconds each way."""
    listed, revoked = [], []
    auth = {"Authorization": f"Bearer {TOKENS['court']}"}
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(runs):
            subject = People.make().debtor
            body = COURT_BODY | {"subject": {"kind": "person", "id": subject, "name": "Bench Person"}}
            response = await client.post(f"{court}/v1/listings", json=body, headers=auth)
            started = time.perf_counter()
            response.raise_for_status()
            await _until(client, airline, subject, allowed=False)
            listed.append(time.perf_counter() - started)
            listing_id = response.json()["listing"]["listing_id"]
            response = await client.post(f"{court}/v1/listings/{listing_id}/revoke", json={"reason": "paid"}, headers=auth)
            started = time.perf_counter()
            response.raise_for_status()
            await _until(client, airline, subject, allowed=True)
            revoked.append(time.perf_counter() - started)
            if (i + 1) % 5 == 0:
                progress(f"  propagation: {i + 1}/{runs} runs")
    return listed, revoked


def figures(court: str, airline: str, runs: int) -> list[Figure]:
    listed, revoked = asyncio.run(measure(court, airline, runs))
    a, b = summary_ms(listed), summary_ms(revoked)
    return [
        Figure(NAMES[0], a["median_ms"], "ms", notes=a),
        Figure(NAMES[1], b["median_ms"], "ms", notes=b),
    ]
