"""What a consumer applies: its actions, the restriction codes each checks, and the copy it may keep."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from schemas.catalogue import NATIONAL, Restriction
from schemas.events import Listing, Status


@dataclass(frozen=True)
class Action:
    """A thing a merchant asks about; which codes block it may depend on the seat class."""

    name: str
    checks: frozenset[Restriction] = frozenset()
    by_seat_class: Mapping[str, frozenset[Restriction]] = field(default_factory=dict)

    def restrictions(self, seat_class: str | None) -> frozenset[Restriction]:
        if not self.by_seat_class:
            return self.checks
        if seat_class is None or seat_class not in self.by_seat_class:
            raise KeyError(seat_class)
        return self.by_seat_class[seat_class]


class CopyRow(NamedTuple):
    """The minimum a consumer keeps of a listing it applies: no name, no raw id. A named tuple: one is built for
    every record a consumer admits, at under half the cost of a frozen dataclass."""

    listing_id: str
    version: int
    list: str
    authority: str
    subject_kind: str
    id_hash: str
    id_masked: str
    restrictions: tuple[str, ...]
    scope: str
    case_number: str
    effective_from: datetime
    expires_at: datetime


@dataclass(frozen=True)
class ConsumerPolicy:
    name: str
    port: int
    actions: Mapping[str, Action]
    # None: operates nationally, so region-scoped listings apply to checks made in their region.
    regions: frozenset[str] | None = None
    payer_only: bool = False

    @functools.cached_property
    def relevant(self) -> frozenset[Restriction]:
        codes: set[Restriction] = set()
        for action in self.actions.values():
            codes |= action.checks
            for by_seat in action.by_seat_class.values():
                codes |= by_seat
        return frozenset(codes)

    def operates_in(self, scope: str) -> bool:
        return scope == NATIONAL or self.regions is None or scope in self.regions

    def project(self, listing: Listing) -> CopyRow | None:
        """The row this consumer keeps for a listing, or None when it must keep only a version marker."""
        if listing.status is not Status.ACTIVE or not self.operates_in(listing.scope):
            return None
        kept = tuple(sorted(r.value for r in listing.restrictions if r in self.relevant))
        if not kept:
            return None
        return CopyRow(
            listing_id=listing.listing_id,
            version=listing.version,
            list=listing.list,
            authority=listing.authority,
            subject_kind=listing.subject.kind.value,
            id_hash=listing.subject.id_hash,
            id_masked=listing.subject.id_masked,
            restrictions=kept,
            scope=listing.scope,
            case_number=listing.legal_basis.case_number,
            effective_from=listing.effective_from,
            expires_at=listing.expires_at,
        )
