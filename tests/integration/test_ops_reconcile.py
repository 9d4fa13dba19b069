"""`ops reconcile` against the compacted listing topics: hand-made drift is found, and `--repair` undoes it."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from schemas.catalogue import FAMILIES
from services.ops.bench import COURT, listing_event
from tests.conftest import Infra
from tests.integration.helpers import ask, fresh_person, wait_for_answer
from tests.integration.test_ops_support import caught_up, copy_of, execute, fetch, hash_key, publish, run_cli

pytestmark = pytest.mark.integration
COURT_TOPIC = FAMILIES["court"].topic
CONSUMER = "luxury-retail"


async def test_reconcile_finds_hand_made_drift_and_repair_restores_the_copy(services: dict[str, str], infra: Infra) -> None:
    run = uuid.uuid4().hex[:8]
    deleted, edited, revoked = (f"{COURT}:{run}-{name}" for name in ("deleted", "edited", "revoked"))
    debtor, other, payer = fresh_person(), fresh_person(), fresh_person()
    await publish(
        infra,
        COURT_TOPIC,
        "court-dev",
        COURT,
        [
            (deleted, listing_event(deleted, debtor, hash_key())),
            (edited, listing_event(edited, other, hash_key())),
            (revoked, listing_event(revoked, payer, hash_key())),
            (revoked, listing_event(revoked, payer, hash_key(), version=2, revoked=True)),
        ],
    )
    await caught_up(infra, CONSUMER)
    baseline = await run_cli(infra, "ops", "reconcile", CONSUMER, "--repair")  # whatever earlier tests left
    assert baseline.code == 0, baseline.out + baseline.err
    before = await copy_of(infra, CONSUMER)
    invented = f"{COURT}:{run}-invented"
    await execute(infra, "DELETE FROM luxury_retail.listings WHERE listing_id = $1", deleted)
    await execute(infra, "UPDATE luxury_retail.listings SET restrictions = '{LUXURY_GOODS,FLIGHT}' WHERE listing_id = $1", edited)
    await execute(
        infra,
        "UPDATE luxury_retail.listings AS t SET list = s.list, authority = s.authority, subject_kind = s.subject_kind,"
        " id_hash = s.id_hash, id_masked = s.id_masked, restrictions = s.restrictions, scope = s.scope,"
        " case_number = s.case_number, effective_from = s.effective_from, expires_at = s.expires_at"
        " FROM luxury_retail.listings AS s WHERE t.listing_id = $1 AND s.listing_id = $2",
        revoked,
        edited,
    )
    await execute(
        infra,
        "INSERT INTO luxury_retail.listings SELECT $1, 1, list, authority, subject_kind, id_hash, id_masked, restrictions,"
        " scope, case_number, effective_from, expires_at FROM luxury_retail.listings WHERE listing_id = $2",
        invented,
        edited,
    )
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await ask(client, services[CONSUMER], debtor, "buy_luxury_goods"))["allowed"] is True, "the drift is real"

    found = await run_cli(infra, "ops", "reconcile", CONSUMER, "--json")
    shown = await run_cli(infra, "ops", "reconcile", CONSUMER)
    repaired = await run_cli(infra, "ops", "reconcile", CONSUMER, "--repair")
    clean = await run_cli(infra, "ops", "reconcile", CONSUMER)

    assert found.code != 0
    drift = {(d["kind"], d["listing_id"]) for d in json.loads(found.out)["drift"]}
    assert drift == {("missing", deleted), ("stale", edited), ("extra", revoked), ("extra", invented)}
    assert shown.err.strip().splitlines()[-1] == (
        f"blacklist-sync: drift in {CONSUMER}: 1 missing, 2 extra, 1 stale; `ops reconcile {CONSUMER} --repair` fixes it"
    )
    assert f"stale    {edited}" in shown.out and "(restrictions)" in shown.out
    assert repaired.code == 0, repaired.out + repaired.err
    assert "drift now: 0 missing, 0 extra, 0 stale" in repaired.out
    assert clean.code == 0, clean.out + clean.err
    after = await copy_of(infra, CONSUMER)
    assert [row for row in after if row[0] != invented] == before
    marker = await fetch(
        infra, "SELECT version, id_hash, restrictions FROM luxury_retail.listings WHERE listing_id = $1", invented
    )
    assert [tuple(r) for r in marker] == [(1, None, None)], "an extra row with no record behind it keeps only a marker"
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_for_answer(client, services[CONSUMER], debtor, "buy_luxury_goods", allowed=False, timeout=5)
        assert (await ask(client, services[CONSUMER], payer, "buy_luxury_goods"))["allowed"] is True
