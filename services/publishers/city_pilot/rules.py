"""City pilot rules: region-scoped to the city, LUXURY_GOODS and CITY_SUBSIDY only, 30 to 730 days as decided."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.catalogue import CITIES, LIST_ID, City
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
class CityListRules:
    city: City

    def issue(self, request: IssueRequest, now: datetime) -> Terms:
        persons_only(request, now)
        if request.scope not in (None, self.city.region):
            raise RuleViolation("scope", f"{self.city.authority} lists apply in {self.city.region} only")
        start, end = requested_term(request, now)
        if end is None:
            raise RuleViolation("term_days", "a city listing states its term (term_days or expires_at)")
        check_term(
            "term_days" if request.term_days else "expires_at", start, end, self.city.min_term_days, self.city.max_term_days
        )
        restrictions = choose_restrictions("restrictions", request.restrictions, self.city.restrictions, self.city.restrictions)
        return Terms(restrictions, self.city.region, start, end)

    def amend(self, current: Listing, request: AmendRequest, extensions: int) -> tuple[Terms, int]:
        restrictions = choose_restrictions("restrictions", request.restrictions, self.city.restrictions, current.restrictions)
        end = request.expires_at or current.expires_at
        check_term("expires_at", current.effective_from, end, self.city.min_term_days, self.city.max_term_days)
        return Terms(restrictions, self.city.region, current.effective_from, end), extensions


def rules_for(list_id: str) -> ListRules | None:
    """Any list `city.<city>.<name>` of a known city follows that city's rules."""
    if not LIST_ID.match(list_id) or not list_id.startswith("city."):
        return None
    city = CITIES.get("city." + list_id.split(".")[1])
    return CityListRules(city) if city else None
