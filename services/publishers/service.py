"""Publisher use cases: issue, amend and revoke a listing; each writes state, history and outbox atomically."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg

from schemas.catalogue import Family, may_publish
from schemas.events import EventType, LegalBasis, Listing, ListingEvent, Revocation, Status, Subject, SubjectKind
from services.kit.subjects import id_hash, mask_id, mask_name
from services.publishers import store
from services.publishers.requests import AmendRequest, IssueRequest, RevokeRequest
from services.publishers.rules import ListRules, RuleViolation, Terms

log = logging.getLogger(__name__)


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


@dataclass(frozen=True)
class Publisher:
    """One authority family's service: its topic, its legal rules, the subject hash key."""

    family: Family
    rules_for: Callable[[str], ListRules | None]
    subject_hash_key: bytes

    def rules(self, authority: str, list_id: str) -> ListRules:
        if not authority.startswith(self.family.authority_prefix):
            raise RuleViolation("authority", f"the {self.family.service} service does not host {authority}")
        rules = self.rules_for(list_id)
        if rules is None or not may_publish(authority, list_id):
            raise RuleViolation("list", f"{authority} may not publish list {list_id!r}")
        return rules

    def subject(self, kind: SubjectKind, raw_id: str, name: str) -> Subject:
        return Subject(
            kind=kind,
            id_hash=id_hash(self.subject_hash_key, kind.value, raw_id),
            id_masked=mask_id(raw_id),
            display_name=mask_name(name),
        )


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _event(event_type: EventType, listing: Listing, now: datetime) -> ListingEvent:
    return ListingEvent(event_id=uuid4(), event_type=event_type, schema_version=1, occurred_at=now, listing=listing)


def evolve(listing: Listing, **changes: Any) -> Listing:
    """A new state of the listing, validated like any record on the wire."""
    return Listing.model_validate(listing.model_dump() | changes)


def _with_terms(listing: Listing, terms: Terms, **changes: Any) -> Listing:
    return evolve(
        listing,
        restrictions=terms.restrictions,
        scope=terms.scope,
        effective_from=terms.effective_from,
        expires_at=terms.expires_at,
        **changes,
    )


def _summary_of(status: Status, terms: Terms) -> dict[str, Any]:
    return {
        "status": status.value,
        "restrictions": [r.value for r in terms.restrictions],
        "scope": terms.scope,
        "effective_from": terms.effective_from.isoformat(),
        "expires_at": terms.expires_at.isoformat(),
    }


def _summary(listing: Listing) -> dict[str, Any]:
    return _summary_of(listing.status, Terms(listing.restrictions, listing.scope, listing.effective_from, listing.expires_at))


def issued_history(terms: Terms) -> str:
    """The history entry of a listing issued on these terms, as JSON."""
    return json.dumps({"issued": _summary_of(Status.ACTIVE, terms)})


def _diff(before: Listing, after: Listing) -> dict[str, Any]:
    old, new = _summary(before), _summary(after)
    return {k: {"from": old[k], "to": new[k]} for k in new if old[k] != new[k]}


@dataclass(frozen=True)
class Planned:
    """An issue request that passed the rules: the subjects it lists (an organization's representative second)."""

    request: IssueRequest
    terms: Terms
    subjects: list[tuple[SubjectKind, str, str]]


def plan_issue(publisher: Publisher, request: IssueRequest, now: datetime) -> Planned:
    """Apply the list's legal rules to one request; raises RuleViolation before anything is written."""
    terms = publisher.rules(request.authority, request.list).issue(request, now)
    subjects = [(request.subject.kind, request.subject.id, request.subject.name)]
    if request.legal_representative is not None:
        rep = request.legal_representative
        subjects.append((SubjectKind.PERSON, rep.id, rep.name))
    return Planned(request, terms, subjects)


@dataclass
class _Shared:
    """What the items of one write share, built once: the items of a batch mostly share their authority, list and
    terms, and building the same thing again for each cost more than looking it up."""

    now: datetime
    histories: dict[Terms, str] = field(default_factory=dict)  # the history entry of each distinct terms, as JSON
    listings: dict[tuple[str, str, Terms], Listing] = field(default_factory=dict)  # a validated listing of each
    event: ListingEvent | None = None  # a validated listing.issued event of this write

    def listing(self, request: IssueRequest, terms: Terms, listing_id: str, subject: Subject) -> Listing:
        """A new listing: the first of its authority, list and terms fully validated, the others copied from it
        with their own id, subject and legal basis. What Listing's validation checks of those three (lengths, no
        NUL) already held when they were validated as a Subject and as the request; all it checks besides depends
        only on what they share (restrictions, scope, dates, status, version), so a copy is valid as the first is.
        Validating each again cost a tenth of an issue (tests/unit/test_publisher_batch_build.py compares)."""
        key = (request.authority, request.list, terms)
        template = self.listings.get(key)
        if template is None:
            template = self.listings[key] = Listing(
                listing_id=listing_id,
                version=1,
                list=request.list,
                authority=request.authority,
                status=Status.ACTIVE,
                subject=subject,
                restrictions=terms.restrictions,
                scope=terms.scope,
                legal_basis=request.legal_basis,
                effective_from=terms.effective_from,
                expires_at=terms.expires_at,
            )
            return template
        return template.model_copy(update={"listing_id": listing_id, "subject": subject, "legal_basis": request.legal_basis})

    def issued_event(self, listing: Listing) -> ListingEvent:
        """A listing.issued event of this write carrying `listing` (version 1, active, as every listing built here):
        the first validated, the others copied from it with their own id and listing."""
        if self.event is None:
            self.event = _event(EventType.ISSUED, listing, self.now)
            return self.event
        return self.event.model_copy(update={"event_id": uuid4(), "listing": listing})


def _issued(publisher: Publisher, plan: Planned, numbers: list[int], actor: str, shared: _Shared) -> list[store.Change]:
    """The changes one planned request writes."""
    request, terms, now = plan.request, plan.terms, shared.now
    changes: list[store.Change] = []
    for (kind, raw_id, name), number in zip(plan.subjects, numbers, strict=True):
        listing_id = f"{request.authority}:{now.year}-{number:06d}"
        listing = shared.listing(request, terms, listing_id, publisher.subject(kind, raw_id, name))
        if changes:
            of = changes[0].event.listing.listing_id
            history = json.dumps({"issued": _summary_of(Status.ACTIVE, terms), "legal_representative_of": of})
        elif (history := shared.histories.get(terms, "")) == "":
            history = shared.histories[terms] = issued_history(terms)
        stored = store.StoredListing(listing, raw_id.strip().upper(), name.strip(), 0)
        changes.append(store.Change(stored, shared.issued_event(listing), actor, history))
    return changes


@dataclass(frozen=True)
class Issued:
    """The listings one issue request wrote, as changes: the subject's first, then an organization's representative's."""

    changes: list[store.Change]

    @property
    def listing(self) -> Listing:
        return self.changes[0].event.listing

    @property
    def related(self) -> list[Listing]:
        return [c.event.listing for c in self.changes[1:]]


async def issue_planned(
    pool: asyncpg.Pool, publisher: Publisher, plans: Sequence[Planned], actor: str, now: datetime
) -> list[Issued]:
    """Write every planned issue at once, all or nothing: each listing, its history and its outbox record."""
    async with pool.acquire() as conn:
        numbers = await store.next_numbers(conn, sum(len(p.subjects) for p in plans))
        issued = build_issued(publisher, plans, numbers, actor, now)
        # One statement writes everything: atomic without a transaction block, and one round trip.
        await store.save_all(conn, [c for i in issued for c in i.changes], topic=publisher.family.topic)
    return issued


def build_issued(
    publisher: Publisher, plans: Sequence[Planned], numbers: Sequence[int], actor: str, now: datetime
) -> list[Issued]:
    """The listings, events and history entries planned issues write, numbered in order (nothing is written here)."""
    remaining = iter(numbers)
    shared = _Shared(now)
    return [Issued(_issued(publisher, p, [next(remaining) for _ in p.subjects], actor, shared)) for p in plans]


async def issue(
    pool: asyncpg.Pool, publisher: Publisher, request: IssueRequest, actor: str, now: datetime | None = None
) -> Issued:
    """Put a subject on a list; an organization's legal representative gets a listing of its own, same case."""
    now = now or utc_now()
    return await write_issue(pool, publisher, plan_issue(publisher, request, now), actor, now)


async def write_issue(pool: asyncpg.Pool, publisher: Publisher, plan: Planned, actor: str, now: datetime) -> Issued:
    """Write one request that passed the rules (plan_issue), and log each listing committed."""
    [issued] = await issue_planned(pool, publisher, [plan], actor, now)
    _log_issued(issued, actor)
    return issued


def _log_issued(issued: Issued, actor: str) -> None:
    for change in issued.changes:
        _log_committed(change.event, actor)


@dataclass(frozen=True)
class _Waiting:
    plan: Planned
    actor: str
    now: datetime
    done: asyncio.Future[Issued]


# Group writes in flight at once: one statement stalled in PostgreSQL must not hold every request back, and the
# pool (10 connections) keeps room for the relay and the other routes.
GROUP_WRITES = 3


class IssueWriter:
    """Writes the single issue requests that arrive while writes are in flight together, in one statement (a group
    commit): concurrent POSTs share its round trips, its commit and the relay's wake-up, and each still gets its
    own listings, its own history entry and its own answer. A group that fails is written again one request at a
    time, so that a request fails only for a fault of its own, as it would have alone."""

    def __init__(self, pool: asyncpg.Pool, publisher: Publisher) -> None:
        self.pool = pool
        self.publisher = publisher
        self._waiting: list[_Waiting] = []
        self._writing = 0  # flushers running; counted down in the same step as their last look at _waiting
        self._tasks: set[asyncio.Task[None]] = set()

    async def write(self, plan: Planned, actor: str, now: datetime) -> Issued:
        """Write one request that passed the rules; returns once it is committed. Logs each listing committed."""
        waiting = _Waiting(plan, actor, now, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._writing < GROUP_WRITES:
            self._writing += 1
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        issued = await waiting.done
        _log_issued(issued, actor)
        return issued

    async def _flush(self) -> None:
        group: list[_Waiting] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                await self._write_group(group)
        except BaseException as exc:  # cancelled at shutdown: no request may wait for an answer forever
            for waiting in [*group, *self._waiting]:
                _settle(waiting, exc)
            raise
        finally:
            self._writing -= 1

    async def _write_group(self, group: list[_Waiting]) -> None:
        try:
            written = await self._write(group)
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0], exc)
                return
            for waiting in group:
                await self._write_group([waiting])
            return
        for waiting, issued in zip(group, written, strict=True):
            _settle(waiting, issued)

    async def _write(self, group: list[_Waiting]) -> list[Issued]:
        async with self.pool.acquire() as conn:
            numbers = iter(await store.next_numbers(conn, sum(len(w.plan.subjects) for w in group)))
            shared: dict[datetime, _Shared] = {}  # requests of the same second share their event and listings' build
            written = [
                Issued(_issued(self.publisher, w.plan, [next(numbers) for _ in w.plan.subjects], w.actor, _shared(shared, w.now)))
                for w in group
            ]
            # One statement for the group: all of it or none of it, like one request's write.
            await store.save_all(conn, [c for issued in written for c in issued.changes], topic=self.publisher.family.topic)
        return written


def _shared(by_time: dict[datetime, _Shared], now: datetime) -> _Shared:
    if (found := by_time.get(now)) is None:
        found = by_time[now] = _Shared(now)
    return found


def _settle(waiting: _Waiting, outcome: Issued | BaseException) -> None:
    if waiting.done.done():  # the request was cancelled (its client left); what was written stays written
        return
    if isinstance(outcome, BaseException):
        waiting.done.set_exception(outcome)
    else:
        waiting.done.set_result(outcome)


def plan_many(publisher: Publisher, requests: Sequence[IssueRequest], now: datetime) -> list[Planned]:
    """Apply the rules to every item of a batch; a violation names the item: field `listings.<index>.<field>`."""
    plans = []
    for index, request in enumerate(requests):
        try:
            plans.append(plan_issue(publisher, request, now))
        except RuleViolation as exc:
            raise RuleViolation(f"listings.{index}.{exc.field}", exc.message) from exc
    return plans


async def issue_many(
    pool: asyncpg.Pool, publisher: Publisher, requests: Sequence[IssueRequest], actor: str, now: datetime | None = None
) -> list[Issued]:
    """Issue a batch, all or nothing; a rule violation names the item: field `listings.<index>.<field>`."""
    now = now or utc_now()
    return await write_many(pool, publisher, plan_many(publisher, requests, now), actor, now)


async def write_many(
    pool: asyncpg.Pool, publisher: Publisher, plans: Sequence[Planned], actor: str, now: datetime
) -> list[Issued]:
    """Write a batch that passed the rules (plan_many), all or nothing, and log it in one line."""
    written = await issue_planned(pool, publisher, plans, actor, now)
    events = [c.event for issued in written for c in issued.changes]
    # One line for the batch, naming every listing and event: a line per listing cost more than writing it.
    log.info(
        "%d listing.issued committed with their outbox records (batch)",
        len(events),
        extra={
            "listing_ids": [e.listing.listing_id for e in events],
            "event_ids": [str(e.event_id) for e in events],
            "actor": actor,
        },
    )
    return written


async def _change(
    pool: asyncpg.Pool,
    publisher: Publisher,
    listing_id: str,
    may_act: Callable[[str], bool],
    make: Callable[[store.StoredListing], tuple[Listing, int, EventType]],
    actor: str,
    now: datetime,
) -> Listing:
    async with pool.acquire() as conn, conn.transaction():
        current = await store.get(conn, listing_id, for_update=True)
        if current is None:
            raise NotFound(listing_id)
        if not may_act(current.listing.authority):
            raise PermissionError(f"this token does not act for {current.listing.authority}")
        if current.listing.status is Status.REVOKED:
            raise Conflict(f"{listing_id} is revoked; a revoked listing does not change again")
        updated, extensions, event_type = make(current)
        event = _event(event_type, updated, now)
        await store.save(
            conn,
            store.StoredListing(updated, current.subject_id, current.subject_name, extensions),
            event,
            topic=publisher.family.topic,
            actor=actor,
            change=_diff(current.listing, updated) | ({"reason": updated.revocation.reason.value} if updated.revocation else {}),
        )
    _log_committed(event, actor)
    return updated


def _log_committed(event: ListingEvent, actor: str) -> None:
    log.info(
        "%s %s v%d committed with its outbox record",
        event.event_type.value,
        event.listing.listing_id,
        event.listing.version,
        extra={"event_id": str(event.event_id), "listing_id": event.listing.listing_id, "actor": actor},
    )


async def amend(
    pool: asyncpg.Pool,
    publisher: Publisher,
    listing_id: str,
    request: AmendRequest,
    may_act: Callable[[str], bool],
    actor: str,
    now: datetime | None = None,
) -> Listing:
    if request.expires_at is None and request.restrictions is None:
        raise RuleViolation("expires_at", "an amendment changes expires_at and/or restrictions")
    moment = now or utc_now()

    def make(current: store.StoredListing) -> tuple[Listing, int, EventType]:
        old = current.listing
        terms, extensions = publisher.rules(old.authority, old.list).amend(old, request, current.extensions)
        basis: LegalBasis = request.legal_basis or old.legal_basis
        return _with_terms(old, terms, version=old.version + 1, legal_basis=basis), extensions, EventType.AMENDED

    return await _change(pool, publisher, listing_id, may_act, make, actor, moment)


async def revoke(
    pool: asyncpg.Pool,
    publisher: Publisher,
    listing_id: str,
    request: RevokeRequest,
    may_act: Callable[[str], bool],
    actor: str,
    now: datetime | None = None,
) -> Listing:
    moment = now or utc_now()

    def make(current: store.StoredListing) -> tuple[Listing, int, EventType]:
        old = current.listing
        updated = evolve(
            old,
            version=old.version + 1,
            status=Status.REVOKED,
            revocation=Revocation(reason=request.reason, at=moment),
            legal_basis=request.legal_basis or old.legal_basis,
        )
        return updated, current.extensions, EventType.REVOKED

    return await _change(pool, publisher, listing_id, may_act, make, actor, moment)
