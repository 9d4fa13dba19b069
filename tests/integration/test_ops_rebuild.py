"""`ops replay CONSUMER --rebuild` on real Kafka and PostgreSQL: the same copy from nothing, and no wrong answer meanwhile."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest

from schemas.catalogue import FAMILIES
from services.ops.bench import COURT, listing_event
from tests.conftest import Infra
from tests.integration.helpers import ask, fresh_person, wait_for_answer
from tests.integration.test_ops_support import caught_up, copy_of, execute, fetch, hash_key, publish, run_cli

pytestmark = pytest.mark.integration
COURT_TOPIC = FAMILIES["court"].topic
RAILWAY = "transport.railway"
HANGZHOU = "city.hangzhou"
HAMMER_WORKERS = 4
FILLER_LISTINGS = 3000


async def publish_varied_history(infra: Infra, run: str) -> None:
    """Issues, amendments that drop codes, revocations, rail bans and a region-scoped city listing."""
    court: list[tuple[str, bytes]] = []
    for n in range(30):
        listing_id, subject = f"{COURT}:{run}-{n:03d}", fresh_person()
        court.append((listing_id, listing_event(listing_id, subject, hash_key())))
        if n % 3 == 1:  # amended: only codes no merchant but a hotel checks
            court.append((listing_id, listing_event(listing_id, subject, hash_key(), version=2, restrictions=["STAR_HOTEL"])))
        if n % 3 == 2:
            court.append((listing_id, listing_event(listing_id, subject, hash_key(), version=2, revoked=True)))
    await publish(infra, COURT_TOPIC, "court-dev", COURT, court)
    rail = [
        (
            lid,
            listing_event(
                lid, fresh_person(), hash_key(), authority=RAILWAY, list_id="transport.rail_ban", restrictions=["RAIL"]
            ),
        )
        for lid in (f"{RAILWAY}:{run}-{n:03d}" for n in range(10))
    ]
    await publish(infra, FAMILIES["transport"].topic, "railway-dev", RAILWAY, rail)
    city = [
        (
            lid,
            listing_event(
                lid,
                fresh_person(),
                hash_key(),
                authority=HANGZHOU,
                list_id="city.hangzhou.transit_fare_evasion",
                restrictions=["LUXURY_GOODS"],
                scope="CN-ZJ-HZ",
            ),
        )
        for lid in (f"{HANGZHOU}:{run}-{n:03d}" for n in range(5))
    ]
    await publish(infra, FAMILIES["city"].topic, "city-dev", HANGZHOU, city)


async def test_copy_wiped_entirely_and_rebuilt_equals_the_copy_before(services: dict[str, str], infra: Infra) -> None:
    run = uuid.uuid4().hex[:8]
    await publish_varied_history(infra, run)
    await caught_up(infra, "ticketing")
    before = await copy_of(infra, "ticketing")
    mine = [row for row in before if run in str(row[0])]
    assert any(row[5] is None for row in mine) and any(row[5] is not None for row in mine), "rows and markers both covered"

    await execute(infra, "DELETE FROM ticketing.listings")
    assert await copy_of(infra, "ticketing") == []
    rebuilt = await run_cli(infra, "ops", "replay", "ticketing", "--rebuild")

    assert rebuilt.code == 0, rebuilt.err
    assert await copy_of(infra, "ticketing") == before
    assert "rebuild ticketing [" in rebuilt.err and " rec/s" in rebuilt.err and "ETA" in rebuilt.err, rebuilt.err
    assert f"the copy now holds {sum(r[5] is not None for r in before):,} listings" in rebuilt.out
    groups = await run_cli(infra, "ops", "lag")
    assert "ticketing.rebuild." not in groups.out, "the temporary group is deleted"
    shadows = await fetch(infra, "SELECT nspname FROM pg_namespace WHERE nspname = 'ticketing_rebuild'")
    assert shadows == [], "the shadow schema is dropped"


@dataclass(frozen=True)
class Question:
    subject: str
    allowed: bool


async def arrange_known_answers(infra: Infra, run: str) -> list[Question]:
    """Subjects whose airline answer is known: listed, listed then revoked, listed without FLIGHT, never listed."""
    pairs: list[tuple[str, bytes]] = []
    questions: list[Question] = []
    for n in range(FILLER_LISTINGS):
        listing_id = f"{COURT}:{run}-fill-{n:05d}"
        pairs.append((listing_id, listing_event(listing_id, fresh_person(), hash_key())))
    for n in range(20):
        subject, listing_id = fresh_person(), f"{COURT}:{run}-listed-{n:02d}"
        pairs.append((listing_id, listing_event(listing_id, subject, hash_key(), restrictions=["FLIGHT"])))
        questions.append(Question(subject, allowed=False))
    for n in range(10):
        subject, listing_id = fresh_person(), f"{COURT}:{run}-revoked-{n:02d}"
        pairs.append((listing_id, listing_event(listing_id, subject, hash_key(), restrictions=["FLIGHT"])))
        pairs.append(
            (listing_id, listing_event(listing_id, subject, hash_key(), version=2, restrictions=["FLIGHT"], revoked=True))
        )
        questions.append(Question(subject, allowed=True))
    for n in range(10):
        subject, listing_id = fresh_person(), f"{COURT}:{run}-hotel-{n:02d}"
        pairs.append((listing_id, listing_event(listing_id, subject, hash_key(), restrictions=["STAR_HOTEL"])))
        questions.append(Question(subject, allowed=True))
    questions += [Question(fresh_person(), allowed=True) for _ in range(10)]
    await publish(infra, COURT_TOPIC, "court-dev", COURT, pairs)
    return questions


async def hammer(url: str, questions: list[Question], until: asyncio.Task[object]) -> tuple[int, list[str]]:
    """Ask every question over and over until `until` is done; return how many checks ran and the wrong answers."""
    wrong: list[str] = []
    asked = 0

    async def worker(offset: int) -> None:
        nonlocal asked
        async with httpx.AsyncClient(timeout=10) as client:
            n = offset
            while not until.done():
                question = questions[n % len(questions)]
                answer = await ask(client, url, question.subject, "board_flight")
                asked += 1
                if answer["allowed"] is not question.allowed:
                    wrong.append(f"{question.subject}: {answer}")
                n += HAMMER_WORKERS

    await asyncio.gather(*(worker(i) for i in range(HAMMER_WORKERS)))
    return asked, wrong


async def table_oid(infra: Infra) -> int:
    return int((await fetch(infra, "SELECT 'airline.listings'::regclass::oid AS oid"))[0]["oid"])


async def test_checks_hammered_during_a_rebuild_never_get_a_wrong_answer(services: dict[str, str], infra: Infra) -> None:
    run = uuid.uuid4().hex[:8]
    questions = await arrange_known_answers(infra, run)
    await caught_up(infra, "airline")
    async with httpx.AsyncClient(timeout=10) as client:
        for q in questions:
            await wait_for_answer(client, services["airline"], q.subject, "board_flight", allowed=q.allowed)
    old_table = await table_oid(infra)
    during, after = fresh_person(), fresh_person()

    started = time.monotonic()
    rebuild = asyncio.create_task(run_cli(infra, "ops", "replay", "airline", "--rebuild"))
    await asyncio.sleep(0.5)
    late = f"{COURT}:{run}-during"
    await publish(
        infra, COURT_TOPIC, "court-dev", COURT, [(late, listing_event(late, during, hash_key(), restrictions=["FLIGHT"]))]
    )
    asked, wrong = await hammer(services["airline"], questions, rebuild)
    rebuilt = await rebuild
    seconds = time.monotonic() - started

    assert rebuilt.code == 0, rebuilt.err
    assert wrong == [], f"{len(wrong)} wrong answers of {asked} during the rebuild: {wrong[:3]}"
    assert asked >= len(questions), f"only {asked} checks in {seconds:.1f}s"
    assert await table_oid(infra) != old_table, "the live table was replaced by the rebuilt one"
    last = f"{COURT}:{run}-after"
    await publish(
        infra, COURT_TOPIC, "court-dev", COURT, [(last, listing_event(last, after, hash_key(), restrictions=["FLIGHT"]))]
    )
    async with httpx.AsyncClient(timeout=10) as client:
        # Written by the live consumer during or after the swap: its cached statements reach the new table.
        await wait_for_answer(client, services["airline"], during, "board_flight", allowed=False)
        await wait_for_answer(client, services["airline"], after, "board_flight", allowed=False)
    held = await fetch(infra, "SELECT listing_id FROM airline.listings WHERE listing_id = ANY($1::text[])", [late, last])
    assert {r["listing_id"] for r in held} == {late, last}
