"""Checks waiting at the same moment share one query: who goes together, who waits, and what a failure or a leaver does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.consumers import checks
from services.consumers.checks import AskBatches
from services.consumers.store import Ask

AT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def ask(subject: str, *codes: str) -> Ask:
    return Ask(subject, "person", codes or ("FLIGHT",), AT, None)


class ScriptedCopy:
    """The database side of the check query, in memory: one listing per listed subject hash. Records the asks of
    each query, and holds queries back while `gate` is closed, so that a test decides when a query finishes."""

    def __init__(self, listed: dict[str, tuple[str, ...]]) -> None:
        self.listed = listed
        self.queries: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = 0
        self.most_running = 0
        self.fail_next: Exception | None = None

    async def fetch(self, query: str, *args: object) -> list[tuple[object, ...]]:
        hashes, codes = args[0], args[2]
        assert isinstance(hashes, list) and isinstance(codes, list)
        self.queries.append(list(hashes))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
            if self.fail_next is not None:
                failure, self.fail_next = self.fail_next, None
                raise failure
        finally:
            self.running -= 1
        rows: list[tuple[object, ...]] = []
        for n, (subject, wanted) in enumerate(zip(hashes, codes, strict=True), start=1):
            held = self.listed.get(subject)
            if held is not None and set(held) & set(wanted.split(",")):
                expires = AT + timedelta(days=1)
                rows.append((n, f"listing-of-{subject}", "court.dishonest_debtor", "court.x", list(held), "(2026) 1", expires))
        return rows


async def until_queries(copy: ScriptedCopy, count: int) -> None:
    """Let the event loop turn until `count` queries have started (a few turns at most; bounded all the same)."""
    for _ in range(100):
        if len(copy.queries) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(copy.queries)} queries started, not {count}")


async def test_checks_asked_in_the_same_turn_go_in_one_query_and_each_gets_its_own_answer() -> None:
    copy = ScriptedCopy({"listed-a": ("FLIGHT",), "listed-b": ("FLIGHT", "RAIL")})
    batches = AskBatches(copy, limit=2)

    answers = await asyncio.gather(
        batches.ask(ask("listed-a")), batches.ask(ask("unlisted")), batches.ask(ask("listed-b", "RAIL", "RAIL_PREMIUM"))
    )

    assert copy.queries == [["listed-a", "unlisted", "listed-b"]]
    assert [[b.listing_id for b in found] for found in answers] == [["listing-of-listed-a"], [], ["listing-of-listed-b"]]
    assert answers[2][0].restrictions == ["RAIL"]  # only the codes this check asked about


async def test_checks_arriving_while_every_slot_is_busy_wait_and_then_go_together() -> None:
    copy = ScriptedCopy({"s1": ("FLIGHT",), "s4": ("FLIGHT",)})
    copy.gate.clear()
    batches = AskBatches(copy, limit=2)
    first = asyncio.create_task(batches.ask(ask("s1")))
    await until_queries(copy, 1)
    second = asyncio.create_task(batches.ask(ask("s2")))
    await until_queries(copy, 2)

    later = [asyncio.create_task(batches.ask(ask(s))) for s in ("s3", "s4", "s5")]
    for _ in range(10):
        await asyncio.sleep(0)
    held_back = len(copy.queries)
    copy.gate.set()
    answers = await asyncio.gather(first, second, *later)

    assert held_back == 2
    assert copy.queries == [["s1"], ["s2"], ["s3", "s4", "s5"]]
    assert copy.most_running == 2
    assert [len(found) for found in answers] == [1, 0, 0, 1, 0]


async def test_a_failed_query_fails_every_check_of_its_batch_and_the_next_batch_still_runs() -> None:
    copy = ScriptedCopy({"s1": ("FLIGHT",)})
    copy.fail_next = ConnectionResetError("database went away")
    batches = AskBatches(copy, limit=1)

    failed = await asyncio.gather(batches.ask(ask("s1")), batches.ask(ask("s2")), return_exceptions=True)
    after = await batches.ask(ask("s1"))

    assert [type(f) for f in failed] == [ConnectionResetError, ConnectionResetError]
    assert [b.listing_id for b in after] == ["listing-of-s1"]


async def test_a_check_given_up_while_waiting_leaves_the_others_of_its_batch_answered() -> None:
    copy = ScriptedCopy({"s1": ("FLIGHT",), "s2": ("FLIGHT",)})
    copy.gate.clear()
    batches = AskBatches(copy, limit=1)
    leaver = asyncio.create_task(batches.ask(ask("s1")))
    stayer = asyncio.create_task(batches.ask(ask("s2")))
    await until_queries(copy, 1)

    leaver.cancel()
    copy.gate.set()

    assert [b.listing_id for b in await stayer] == ["listing-of-s2"]
    with pytest.raises(asyncio.CancelledError):
        await leaver


async def test_a_crowd_larger_than_a_batch_is_split_into_batches_of_at_most_max_batch() -> None:
    copy = ScriptedCopy({})
    batches = AskBatches(copy, limit=1)
    crowd = [f"s{n}" for n in range(checks.MAX_BATCH * 2 + 3)]

    answers = await asyncio.gather(*(batches.ask(ask(s)) for s in crowd))

    assert [len(q) for q in copy.queries] == [checks.MAX_BATCH, checks.MAX_BATCH, 3]
    assert [s for q in copy.queries for s in q] == crowd
    assert answers == [[] for _ in crowd]
