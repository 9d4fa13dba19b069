"""One listing through the whole pipeline on real Kafka and PostgreSQL: API, outbox, topic, consumer, check."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from schemas.catalogue import CONSUMERS, schema_name
from services.scenario import TOKENS
from tests.conftest import Infra
from tests.integration.helpers import court_listing, fresh_person, publish, wait_caught_up, wait_for_answer

pytestmark = pytest.mark.integration


async def test_court_listing_blocks_boarding_then_revocation_allows_it(services: dict[str, str]) -> None:
    debtor = fresh_person()
    async with httpx.AsyncClient(timeout=10) as client:
        listing = await court_listing(client, services, debtor)
        refused = await wait_for_answer(client, services["airline"], debtor, "board_flight", allowed=False)
        assert [b["listing_id"] for b in refused["blocking"]] == [listing["listing_id"]]
        assert refused["blocking"][0]["restrictions"] == ["FLIGHT"]

        await publish(
            client,
            services["court"],
            TOKENS["court"],
            f"/v1/listings/{listing['listing_id']}/revoke",
            {"reason": "paid"},
            expect=200,
        )
        allowed = await wait_for_answer(client, services["airline"], debtor, "board_flight", allowed=True)
        assert allowed["blocking"] == []


async def test_court_listing_reaches_every_consumer_with_only_its_codes(services: dict[str, str]) -> None:
    debtor = fresh_person()
    async with httpx.AsyncClient(timeout=10) as client:
        await court_listing(client, services, debtor)
        first = await wait_for_answer(client, services["ticketing"], debtor, "buy_rail_ticket", allowed=False, seat_class="first")
        assert first["blocking"][0]["restrictions"] == ["RAIL_PREMIUM"]
        await wait_for_answer(client, services["ticketing"], debtor, "buy_rail_ticket", allowed=True, seat_class="second")
        await wait_for_answer(client, services["luxury-retail"], debtor, "buy_luxury_goods", allowed=False)
        await wait_for_answer(client, services["admissions"], debtor, "pay_private_tuition", allowed=False)


async def test_amendment_dropping_last_relevant_code_leaves_only_a_marker(services: dict[str, str], infra: Infra) -> None:
    debtor = fresh_person()
    async with httpx.AsyncClient(timeout=10) as client:
        listing = await court_listing(client, services, debtor)
        await wait_for_answer(client, services["admissions"], debtor, "pay_private_tuition", allowed=False)
        await publish(
            client,
            services["court"],
            TOKENS["court"],
            f"/v1/listings/{listing['listing_id']}/amend",
            {"restrictions": ["FLIGHT"]},
            expect=200,
        )
        await wait_for_answer(client, services["admissions"], debtor, "pay_private_tuition", allowed=True)
        await wait_for_answer(client, services["airline"], debtor, "board_flight", allowed=False)
    conn = await asyncpg.connect(infra.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM admissions.listings WHERE listing_id = $1", listing["listing_id"])
    finally:
        await conn.close()
    assert row is not None and row["version"] == 2
    assert all(row[c] is None for c in ("id_hash", "id_masked", "restrictions", "case_number", "authority"))


async def test_consumer_schemas_hold_no_raw_id_no_name_no_irrelevant_listing(services: dict[str, str], infra: Infra) -> None:
    debtor, rider = fresh_person(), fresh_person()
    name = "Unmistakable Name Qian"
    async with httpx.AsyncClient(timeout=10) as client:
        listing = await court_listing(client, services, debtor, subject={"kind": "person", "id": debtor, "name": name})
        rail = (
            await publish(
                client,
                services["transport"],
                TOKENS["railway"],
                "/v1/listings",
                {
                    "authority": "transport.railway",
                    "list": "transport.rail_ban",
                    "subject": {"kind": "person", "id": rider, "name": name},
                    "legal_basis": {"case_number": "RAIL-T-1"},
                },
            )
        )["listing"]
        await wait_for_answer(client, services["ticketing"], rider, "buy_rail_ticket", allowed=False, seat_class="second")
        await wait_for_answer(client, services["airline"], debtor, "board_flight", allowed=False)
    for consumer in CONSUMERS:
        await wait_caught_up(infra.bootstrap_servers, consumer, "transport.listings.v1")
        await wait_caught_up(infra.bootstrap_servers, consumer, "court.listings.v1")
    conn = await asyncpg.connect(infra.database_url)
    try:
        for consumer in CONSUMERS:
            schema = schema_name(consumer)
            dump = "\n".join(str(tuple(r)) for r in await conn.fetch(f'SELECT * FROM "{schema}".listings'))
            assert debtor not in dump and rider not in dump, f"{consumer} stores a raw id"
            assert name not in dump and "Qian" not in dump, f"{consumer} stores a name"
        airline_rail = await conn.fetchval("SELECT count(*) FROM airline.listings WHERE listing_id = $1", rail["listing_id"])
        assert airline_rail == 0, "airline keeps a rail ban it never applies"
        court_row = await conn.fetchrow("SELECT restrictions FROM airline.listings WHERE listing_id = $1", listing["listing_id"])
        assert court_row is not None and court_row["restrictions"] == ["FLIGHT"]
    finally:
        await conn.close()
