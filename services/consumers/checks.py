"""The check API of CONTRACT section 5: may this subject do this action, here, at this time?"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from schemas.catalogue import REGION
from schemas.events import SubjectKind, UtcDatetime
from services.consumers import store
from services.consumers.policy import ConsumerPolicy
from services.kit.db import create_pool
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


CHECK_CONNECTIONS = 4  # enough to keep PostgreSQL busy on a small box; more only queue there instead of here


class CheckConnections:
    """Connections taken from a pool once and kept for checks: a check then costs one round trip and none of the
    pool's per-use bookkeeping (acquire, release and its reset query, a second round trip: ~50-80 µs of CPU a
    check here), and apply batches on the service's main pool never make a check wait. A connection found closed
    goes back to the pool for a new one."""

    def __init__(self, pool: asyncpg.Pool, size: int = CHECK_CONNECTIONS) -> None:
        self.pool = pool
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)  # taken from the pool on first use

    @classmethod
    async def open(cls, database_url: str, service: str, size: int = CHECK_CONNECTIONS) -> CheckConnections:
        """On a pool of their own, `size` connections at most: the service's main pool stays the apply path's."""
        return cls(await create_pool(database_url, service, max_size=size), size)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await self._idle.get()
        try:
            if not _reusable(conn):
                _drop(conn)
                conn = None
                conn = await self.pool.acquire()
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        except BaseException:
            _drop(conn)  # a query cut short leaves the protocol in an unknown state: never reuse it
            self._idle.put_nowait(None)
            raise
        self._idle.put_nowait(conn)
        return rows

    async def close(self, timeout: float = 5.0) -> None:
        """Give the idle connections back and close the pool; one a check still holds is cut after `timeout`."""
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if _reusable(conn):
                await self.pool.release(conn)
        try:
            await asyncio.wait_for(self.pool.close(), timeout)
        except TimeoutError:
            self.pool.terminate()


def _reusable(conn: Any) -> bool:
    try:
        return conn is not None and not conn.is_closed()
    except asyncpg.InterfaceError:  # its socket closed and the pool has taken it back already
        return False


def _drop(conn: Any) -> None:
    """Hand a connection's slot back to the pool, which opens a fresh one on the next acquire."""
    if conn is not None:
        with contextlib.suppress(asyncpg.InterfaceError):  # the pool may have taken it back already
            conn.terminate()


def codes_for(policy: ConsumerPolicy, request: CheckRequest) -> list[str]:
    action = policy.actions.get(request.action)
    if action is None:
        raise CheckRefused("action", f"{policy.name} does not handle {request.action!r}; it handles {', '.join(policy.actions)}")
    try:
        return sorted(r.value for r in action.restrictions(request.seat_class))
    except KeyError:
        raise CheckRefused("seat_class", f"{request.action} needs seat_class, one of {', '.join(action.by_seat_class)}") from None


async def check(db: store.Fetcher, policy: ConsumerPolicy, hash_key: bytes, request: CheckRequest) -> dict[str, Any]:
    codes = codes_for(policy, request)
    at = request.at or datetime.now(UTC)
    subject_hash = id_hash(hash_key, request.subject.kind.value, request.subject.id)
    found = await store.blocking(db, subject_hash, request.subject.kind.value, codes, at, request.region)
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
                "expires_at": b.expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            }
            for b in found
        ],
        "checked_at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
