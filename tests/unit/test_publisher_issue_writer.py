"""The group commit of single POSTs: requests waiting together share one write, and a failed group fails only the
request whose own write fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.catalogue import FAMILIES
from services.publishers import service, store
from services.publishers.court.rules import rules_for
from services.publishers.requests import IssueRequest
from tests.integration.helpers import fresh_person

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
PUBLISHER = service.Publisher(FAMILIES["court"], rules_for, b"test-key")


class Register:
    """Stands in for PostgreSQL (the writer is under test, not the database): numbers from a counter, and each
    statement recorded, or refused when it holds a listing of a case marked bad."""

    def __init__(self, bad_cases: frozenset[str] = frozenset()) -> None:
        self.bad_cases = bad_cases
        self.next = 1
        self.statements: list[list[str]] = []

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Register]:
        await asyncio.sleep(0)  # a real acquire yields to the loop: requests arriving meanwhile queue up
        yield self

    async def next_numbers(self, _: object, count: int) -> list[int]:
        numbers = list(range(self.next, self.next + count))
        self.next += count
        return numbers

    async def save_all(self, _: object, changes: Sequence[store.Change], *, topic: str) -> None:
        cases = [c.event.listing.legal_basis.case_number for c in changes]
        if self.bad_cases & set(cases):
            raise RuntimeError("statement refused")
        self.statements.append(cases)


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Register:
    fake = Register(getattr(request, "param", frozenset()))
    monkeypatch.setattr(store, "next_numbers", fake.next_numbers)
    monkeypatch.setattr(store, "save_all", fake.save_all)
    return fake


def plan(case: str) -> service.Planned:
    body: dict[str, Any] = {
        "authority": "court.bj-1st-intermediate",
        "list": "court.dishonest_debtor",
        "subject": {"kind": "person", "id": fresh_person(), "name": "Writer Test"},
        "legal_basis": {"case_number": case},
    }
    return service.plan_issue(PUBLISHER, IssueRequest.model_validate(body), NOW)


async def test_requests_waiting_together_are_written_in_one_statement_each_with_its_own_listing(register: Register) -> None:
    writer = service.IssueWriter(register, PUBLISHER)  # the register stands in for a pool
    cases = [f"case {i}" for i in range(6)]

    issued = await asyncio.gather(*(writer.write(plan(c), "token:court.*", NOW) for c in cases))

    assert [i.listing.legal_basis.case_number for i in issued] == cases
    assert len({i.listing.listing_id for i in issued}) == len(cases)
    assert register.statements == [cases], "requests that arrived before the write began share one statement"


async def test_a_request_arriving_during_a_write_goes_into_the_next_one(register: Register) -> None:
    writer = service.IssueWriter(register, PUBLISHER)  # the register stands in for a pool
    first = asyncio.create_task(writer.write(plan("first"), "token:court.*", NOW))
    await asyncio.sleep(0)  # the write of "first" has begun (it waits for its connection)

    await asyncio.gather(first, *(writer.write(plan(c), "token:court.*", NOW) for c in ("second", "third")))

    assert register.statements == [["first"], ["second", "third"]]


@pytest.mark.parametrize("register", [frozenset({"case 2"})], indirect=True)
async def test_a_failed_group_fails_only_the_request_whose_own_write_fails(register: Register) -> None:
    writer = service.IssueWriter(register, PUBLISHER)  # the register stands in for a pool
    cases = [f"case {i}" for i in range(5)]

    outcomes = await asyncio.gather(*(writer.write(plan(c), "token:court.*", NOW) for c in cases), return_exceptions=True)

    assert [isinstance(o, RuntimeError) for o in outcomes] == [False, False, True, False, False]
    written = [case for statement in register.statements for case in statement]
    assert sorted(written) == ["case 0", "case 1", "case 3", "case 4"]


async def test_the_writer_is_ready_for_the_next_request_after_a_failure() -> None:
    fake = Register(frozenset({"bad"}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "next_numbers", fake.next_numbers)
        patch.setattr(store, "save_all", fake.save_all)
        writer = service.IssueWriter(fake, PUBLISHER)  # the register stands in for a pool
        with pytest.raises(RuntimeError):
            await writer.write(plan("bad"), "token:court.*", NOW)

        issued = await asyncio.wait_for(writer.write(plan("good"), "token:court.*", NOW), timeout=5)

    assert issued.listing.legal_basis.case_number == "good"


async def test_requests_arriving_while_every_group_write_is_busy_are_all_written_once(register: Register) -> None:
    writer = service.IssueWriter(register, PUBLISHER)  # the register stands in for a pool
    cases = [f"case {i}" for i in range(60)]

    async def arrive(index: int, case: str) -> service.Issued:
        for _ in range(index % 7):  # staggered: some arrive mid-write, some as a write ends
            await asyncio.sleep(0)
        return await writer.write(plan(case), "token:court.*", NOW)

    issued = await asyncio.wait_for(asyncio.gather(*(arrive(i, c) for i, c in enumerate(cases))), timeout=10)

    assert [i.listing.legal_basis.case_number for i in issued] == cases
    written = [case for statement in register.statements for case in statement]
    assert sorted(written) == sorted(cases), "each request written exactly once"
    assert len(register.statements) < len(cases), "requests were grouped"
