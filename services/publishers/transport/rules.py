"""Transport rules: CAAC flight bans (FLIGHT, 365 days) and railway bans (RAIL, 180 days), persons only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.catalogue import NATIONAL, Restriction
from schemas.events import Listing
from services.publishers.requests import AmendRequest, IssueRequest
from services.publishers.rules import (
    ListRules,
    RuleViolation,
    Terms,
    check_term,
    choose_restrictions,
    persons_only,
    requested_term,
)


@dataclass(frozen=True)
class TravelBanRules:
    restriction: Restriction
    term_days: int

    def issue(self, request: IssueRequest, now: datetime) -> Terms:
        persons_only(request, now)
        if request.scope not in (None, NATIONAL):
            raise RuleViolation("scope", "travel bans are national")
        start, end = requested_term(request, now)
        end = end or start + timedelta(days=self.term_days)
        check_term("term_days" if request.term_days else "expires_at", start, end, 1, self.term_days)
        allowed = frozenset({self.restriction})
        return Terms(choose_restrictions("restrictions", request.restrictions, allowed, allowed), NATIONAL, start, end)

    def amend(self, current: Listing, request: AmendRequest, extensions: int) -> tuple[Terms, int]:
        allowed = frozenset({self.restriction})
        restrictions = choose_restrictions("restrictions", request.restrictions, allowed, current.restrictions)
        end = request.expires_at or current.expires_at
        check_term("expires_at", current.effective_from, end, 1, self.term_days)
        return Terms(restrictions, NATIONAL, current.effective_from, end), extensions


RULES: dict[str, ListRules] = {
    "transport.flight_ban": TravelBanRules(Restriction.FLIGHT, 365),
    "transport.rail_ban": TravelBanRules(Restriction.RAIL, 180),
}


def rules_for(list_id: str) -> ListRules | None:
    return RULES.get(list_id)
