"""What every authority's legal rules share: terms, subject id checks, the violation they raise."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from schemas.catalogue import Restriction
from schemas.events import Listing
from services.publishers.requests import AmendRequest, IssueRequest

ADULT_AGE = 18
PERSON_ID_LENGTH = 18
_PERSON_ID_CHARS = set("0123456789")
_ORG_ID_CHARS = set("0123456789ABCDEFGHJKLMNPQRTUWXY")


class RuleViolation(ValueError):
    """A request the law does not allow; `field` names what is wrong, for the 422 answer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Terms:
    """What a listing restricts, where, and for how long."""

    restrictions: tuple[Restriction, ...]
    scope: str
    effective_from: datetime
    expires_at: datetime

    def __hash__(self) -> int:
        # Terms key the lookups an issue shares with the rest of its batch. Enum members are singletons, so their
        # ids hash the restrictions as their values do for equality; hashing a member itself is a Python call each.
        return hash((tuple(map(id, self.restrictions)), self.scope, self.effective_from, self.expires_at))


class ListRules(Protocol):
    def issue(self, request: IssueRequest, now: datetime) -> Terms: ...

    def amend(self, current: Listing, request: AmendRequest, extensions: int) -> tuple[Terms, int]: ...


def add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


def requested_term(request: IssueRequest, now: datetime) -> tuple[datetime, datetime | None]:
    """effective_from and the requested expiry (None when the request leaves it to the list's default)."""
    start = request.effective_from or now
    if request.term_days is not None and request.expires_at is not None:
        raise RuleViolation("term_days", "give term_days or expires_at, not both")
    if request.term_days is not None:
        return start, start + timedelta(days=request.term_days)
    if request.expires_at is not None:
        if request.expires_at <= start:
            raise RuleViolation("expires_at", "expires_at must be after effective_from")
        return start, request.expires_at
    return start, None


def check_term(field: str, start: datetime, end: datetime, min_days: int, max_days: int | None) -> None:
    if end <= start:
        raise RuleViolation(field, "the term must end after it starts")
    if end - start < timedelta(days=min_days):
        raise RuleViolation(field, f"the term must be at least {min_days} days")
    if max_days is not None and end - start > timedelta(days=max_days):
        raise RuleViolation(field, f"the term must be at most {max_days} days")


def choose_restrictions(
    field: str, requested: Iterable[Restriction] | None, allowed: frozenset[Restriction], default: Iterable[Restriction]
) -> tuple[Restriction, ...]:
    """The restrictions a listing gets: those requested, or the list's default; each allowed, none twice, sorted."""
    chosen = requested if requested is not None else default
    # A frozenset (a list's default) keeps its hash: the lookup is then nearly free.
    return _chosen(field, chosen if isinstance(chosen, frozenset) else tuple(chosen), allowed)


# Requests mostly repeat the same few choices (most give none and get the default); hashing an enum member is a
# Python call, so the sets and the sort cost more than a lookup keyed by them. A refusal is not cached.
@functools.lru_cache(maxsize=256)
def _chosen(
    field: str, chosen: tuple[Restriction, ...] | frozenset[Restriction], allowed: frozenset[Restriction]
) -> tuple[Restriction, ...]:
    if len(set(chosen)) != len(chosen):
        raise RuleViolation(field, "restrictions must not repeat")
    outside = sorted(set(chosen) - allowed)
    if outside:
        raise RuleViolation(field, f"this list cannot restrict {', '.join(outside)}; allowed: {', '.join(sorted(allowed))}")
    return tuple(sorted(chosen))


def birth_date(person_id: str) -> date:
    """Birth date inside an 18-character national id (characters 7 to 14, YYYYMMDD)."""
    value = person_id.strip().upper()
    if len(value) != PERSON_ID_LENGTH or not set(value[:17]) <= _PERSON_ID_CHARS or value[17] not in "0123456789X":
        raise ValueError("a person id is an 18-character national id: 17 digits and a digit or X")
    digits = value[6:14]
    return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))


def age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def check_person(field: str, person_id: str, at: datetime) -> None:
    """A person must be identified by a well-formed national id and be an adult: minors are never listed."""
    try:
        born = birth_date(person_id)
    except ValueError as exc:
        raise RuleViolation(field, f"malformed national id: {exc}") from exc
    if born > at.date():
        raise RuleViolation(field, "malformed national id: birth date in the future")
    if age_on(born, at.date()) < ADULT_AGE:
        raise RuleViolation(field, "minors cannot be listed")


def check_organization(field: str, credit_code: str) -> None:
    value = credit_code.strip().upper()
    if len(value) != PERSON_ID_LENGTH or not set(value) <= _ORG_ID_CHARS:
        raise RuleViolation(field, "malformed unified social credit code: 18 characters of 0-9 and A-Y without I, O, S, V, Z")


def persons_only(request: IssueRequest, now: datetime) -> None:
    if request.subject.kind != "person":
        raise RuleViolation("subject.kind", f"{request.list} lists persons only")
    if request.legal_representative is not None:
        raise RuleViolation("legal_representative", "only an organization on a court list has a legal representative")
    # Age is judged on the day of the decision: a future start cannot list someone who is a minor today.
    check_person("subject.id", request.subject.id, min(request.effective_from or now, now))
