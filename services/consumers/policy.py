"""What a consumer applies: its actions, the restriction codes each checks, and the copy it may keep."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from schemas.catalogue import NATIONAL, Restriction
from schemas.events import Listing, Status, SubjectKind

PROJECTIONS_HELD = 4096  # distinct restriction tuples remembered; hostile records must not grow it without bound
_ACTIVE = Status.ACTIVE
_KIND = {kind: kind.value for kind in SubjectKind}  # the plain text of each kind, without an enum lookup per record


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

    @functools.cached_property
    def _projections(self) -> dict[tuple[Restriction, ...], tuple[str, ...]]:
        return {}

    def kept(self, restrictions: tuple[Restriction, ...]) -> tuple[str, ...]:
        """The codes of `restrictions` this consumer checks, sorted; remembered per tuple, as few distinct ones occur."""
        projections = self._projections
        kept = projections.get(restrictions)
        if kept is None:
            kept = tuple(sorted(r.value for r in restrictions if r in self.relevant))
            if len(projections) >= PROJECTIONS_HELD:
                projections.clear()
            projections[restrictions] = kept
        return kept

    def operates_in(self, scope: str) -> bool:
        return scope == NATIONAL or self.regions is None or scope in self.regions

    def project(self, listing: Listing) -> CopyRow | None:
        """The row this consumer keeps for a listing, or None when it must keep only a version marker."""
        if listing.status is not _ACTIVE or not self.operates_in(listing.scope):
            return None
        kept = self.kept(listing.restrictions)
        if not kept:
            return None
        subject = listing.subject
        # Positional, in CopyRow's field order: this runs for every record a consumer admits.
        return CopyRow(
            listing.listing_id,
            listing.version,
            listing.list,
            listing.authority,
            _KIND[subject.kind],
            subject.id_hash,
            subject.id_masked,
            kept,
            listing.scope,
            listing.legal_basis.case_number,
            listing.effective_from,
            listing.expires_at,
        )
