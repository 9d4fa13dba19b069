"""Publisher use cases: issue, amend and revoke a listing; each writes state, history and outbox atomically."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


def _summary(listing: Listing) -> dict[str, Any]:
    return {
        "status": listing.status.value,
        "restrictions": [r.value for r in listing.restrictions],
        "scope": listing.scope,
        "effective_from": listing.effective_from.isoformat(),
        "expires_at": listing.expires_at.isoformat(),
    }


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


def _issued(publisher: Publisher, plan: Planned, numbers: list[int], actor: str, now: datetime) -> list[store.Change]:
    request, terms = plan.request, plan.terms
    changes: list[store.Change] = []
    for (kind, raw_id, name), number in zip(plan.subjects, numbers, strict=True):
        listing = Listing(
            listing_id=f"{request.authority}:{now.year}-{number:06d}",
            version=1,
            list=request.list,
            authority=request.authority,
            status=Status.ACTIVE,
            subject=publisher.subject(kind, raw_id, name),
            restrictions=terms.restrictions,
            scope=terms.scope,
            legal_basis=request.legal_basis,
            effective_from=terms.effective_from,
            expires_at=terms.expires_at,
        )
        change: dict[str, Any] = {"issued": _summary(listing)}
        if changes:
            change["legal_representative_of"] = changes[0].event.listing.listing_id
        stored = store.StoredListing(listing, raw_id.strip().upper(), name.strip(), 0)
        changes.append(store.Change(stored, _event(EventType.ISSUED, listing, now), actor, change))
    return changes


async def issue_planned(
    pool: asyncpg.Pool, publisher: Publisher, plans: Sequence[Planned], actor: str, now: datetime
) -> list[list[ListingEvent]]:
    """Write every planned issue at once, all or nothing: each listing, its history and its outbox record.
    Returns the events written, per plan (an organization's listing first, then its representative's)."""
    async with pool.acquire() as conn:
        numbers = iter(await store.next_numbers(conn, sum(len(p.subjects) for p in plans)))
        per_plan = [_issued(publisher, p, [next(numbers) for _ in p.subjects], actor, now) for p in plans]
        changes = [c for group in per_plan for c in group]
        # One statement writes everything: atomic without a transaction block, and one round trip.
        await store.save_all(conn, changes, topic=publisher.family.topic)
    return [[c.event for c in group] for group in per_plan]


def _created(events: list[ListingEvent]) -> tuple[Listing, list[Listing]]:
    return events[0].listing, [e.listing for e in events[1:]]


async def issue(
    pool: asyncpg.Pool, publisher: Publisher, request: IssueRequest, actor: str, now: datetime | None = None
) -> tuple[Listing, list[Listing]]:
    """Put a subject on a list; an organization's legal representative gets a listing of its own, same case."""
    now = now or utc_now()
    [events] = await issue_planned(pool, publisher, [plan_issue(publisher, request, now)], actor, now)
    for event in events:
        _log_committed(event, actor)
    return _created(events)


async def issue_many(
    pool: asyncpg.Pool, publisher: Publisher, requests: Sequence[IssueRequest], actor: str, now: datetime | None = None
) -> list[tuple[Listing, list[Listing]]]:
    """Issue a batch, all or nothing; a rule violation names the item: field `listings.<index>.<field>`."""
    now = now or utc_now()
    plans = []
    for index, request in enumerate(requests):
        try:
            plans.append(plan_issue(publisher, request, now))
        except RuleViolation as exc:
            raise RuleViolation(f"listings.{index}.{exc.field}", exc.message) from exc
    written = await issue_planned(pool, publisher, plans, actor, now)
    events = [e for group in written for e in group]
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
    return [_created(group) for group in written]


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
