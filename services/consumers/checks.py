"""The check API of CONTRACT section 5: may this subject do this action, here, at this time?"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from schemas.catalogue import REGION
from schemas.events import SubjectKind, UtcDatetime, rfc3339
from services.consumers import store
from services.consumers.policy import ConsumerPolicy
from services.kit.db import create_pool, drop, reusable
from services.kit.subjects import id_hash


class SubjectRef(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    kind: SubjectKind
    id: str = Field(min_length=1, max_length=64)


class CheckRequest(BaseModel):
    # Unknown fields are ignored: admissions, for one, never looks at an applicant field.
    model_config = ConfigDict(extra="ignore", frozen=True)
    subject: SubjectRef
    action: str = Field(min_length=1, max_length=64)
    seat_class: str | None = Field(default=None, max_length=32)
    region: str | None = Field(default=None, max_length=16, pattern=REGION.pattern)
    at: UtcDatetime | None = None


class Blocking(BaseModel):
    listing_id: str
    list_id: str = Field(alias="list")  # `list` on the wire; another name here, where `list[...]` is a type
    authority: str
    restrictions: list[str]
    case_number: str
    expires_at: str


class CheckAnswer(BaseModel):
    """The answer of CONTRACT section 5 (documented in OpenAPI; the route writes it as plain JSON)."""

    allowed: bool
    action: str
    blocking: list[Blocking]
    checked_at: str


class CheckRefused(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# Queries at once: while one runs, the checks arriving meanwhile gather for the next. One query at a time measured
# best on a two-core box (bench --only check-api, same-run A/B against two and four): the largest batches, and the
# fewest wake-ups of a PostgreSQL backend, each of which may take the core this process was running on.
CHECK_CONNECTIONS = 1
MAX_BATCH = 64  # asks in one query: the wait of a check stays bounded however many arrive together
# PostgreSQL plans a statement with array parameters anew at every run (~130 µs here, more than the query itself):
# the plan it would cache assumes 100 elements per array, costlier than a plan made for the few of each batch. The
# cached plan is the right one anyway (index lookups per ask), so the check connections always use it.
GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan"


class CheckConnections:
    """Connections taken from a pool once and kept for checks: a check then costs no pool bookkeeping (acquire,
    release and its reset query, a second round trip: ~50-80 µs of CPU a check here), and apply batches on the
    service's main pool never make a check wait. Checks that wait at the same moment go to PostgreSQL together as
    one query (`blocking`): one round trip, one wake-up of a backend and one protocol exchange for all of them,
    where each used to pay its own. A connection found closed goes back to the pool for a new one."""

    def __init__(self, pool: asyncpg.Pool, size: int = CHECK_CONNECTIONS) -> None:
        self.pool = pool
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)  # taken from the pool on first use
        self._batches = AskBatches(self, size)

    @classmethod
    async def open(cls, database_url: str, service: str, size: int = CHECK_CONNECTIONS) -> CheckConnections:
        """On a pool of their own, `size` connections at most: the service's main pool stays the apply path's."""
        return cls(await create_pool(database_url, service, max_size=size), size)

    async def blocking(self, ask: store.Ask) -> list[store.Blocking]:
        """The listings blocking `ask`, asked together with the checks waiting at the same moment."""
        return await self._batches.ask(ask)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await self._idle.get()
        try:
            if not reusable(conn):
                drop(conn)
                conn = None
                conn = await self.pool.acquire()
                await conn.execute(GENERIC_PLANS)
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        except BaseException:
            drop(conn)  # a query cut short leaves the protocol in an unknown state: never reuse it
            self._idle.put_nowait(None)
            raise
        self._idle.put_nowait(conn)
        return rows

    async def close(self, timeout: float = 5.0) -> None:
        """Give the idle connections back and close the pool; one a check still holds is cut after `timeout`."""
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if reusable(conn):
                await self.pool.release(conn)
        try:
            await asyncio.wait_for(self.pool.close(), timeout)
        except TimeoutError:
            self.pool.terminate()


class AskBatches:
    """Asks waiting for a query, sent together as soon as one of `limit` query slots is free. A batch leaves on the
    next turn of the event loop, not at once, so every check that arrived in the same turn joins it; no timer
    holds a check back when the slots are free."""

    def __init__(self, db: store.Fetcher, limit: int) -> None:
        self.db = db
        self.limit = limit
        self.waiting: list[tuple[store.Ask, asyncio.Future[list[store.Blocking]]]] = []
        self.running: set[asyncio.Task[None]] = set()
        self.scheduled = False

    async def ask(self, ask: store.Ask) -> list[store.Blocking]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[store.Blocking]] = loop.create_future()
        self.waiting.append((ask, answer))
        self._schedule(loop)
        return await answer

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.waiting and not self.scheduled and len(self.running) < self.limit:
            self.scheduled = True
            loop.call_soon(self._send)

    def _send(self) -> None:
        self.scheduled = False
        while self.waiting and len(self.running) < self.limit:
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            task = asyncio.get_running_loop().create_task(self._query(batch))
            self.running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        self._schedule(task.get_loop())

    async def _query(self, batch: list[tuple[store.Ask, asyncio.Future[list[store.Blocking]]]]) -> None:
        try:
            answers = await store.blocking_many(self.db, [ask for ask, _ in batch])
        except asyncio.CancelledError:
            for _, answer in batch:
                answer.cancel()
            raise
        except Exception as exc:  # every check of the batch fails as its own query would have
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, answer), found in zip(batch, answers, strict=True):
            if not answer.done():  # a check given up meanwhile (its client left) wants no answer
                answer.set_result(found)


def codes_for(policy: ConsumerPolicy, request: CheckRequest) -> list[str]:
    action = policy.actions.get(request.action)
    if action is None:
        raise CheckRefused("action", f"{policy.name} does not handle {request.action!r}; it handles {', '.join(policy.actions)}")
    try:
        return sorted(r.value for r in action.restrictions(request.seat_class))
    except KeyError:
        raise CheckRefused("seat_class", f"{request.action} needs seat_class, one of {', '.join(action.by_seat_class)}") from None


async def check(db: CheckConnections, policy: ConsumerPolicy, hash_key: bytes, request: CheckRequest) -> dict[str, Any]:
    codes = codes_for(policy, request)
    at = request.at or datetime.now(UTC)
    kind = request.subject.kind.value
    found = await db.blocking(store.Ask(id_hash(hash_key, kind, request.subject.id), kind, tuple(codes), at, request.region))
    return {
        "allowed": not found,
        "action": request.action,
        "blocking": [
            {
                "listing_id": b.listing_id,
                "list": b.list_id,
                "authority": b.authority,
                "restrictions": b.restrictions,
                "case_number": b.case_number,
                "expires_at": rfc3339(b.expires_at),
            }
            for b in found
        ],
        "checked_at": rfc3339(at),
    }
