"""Court rules for dishonest judgment debtors: the high-consumption bans, two years, one extension of 1-3 years."""

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
    add_years,
    check_organization,
    check_person,
    check_term,
    choose_restrictions,
    requested_term,
)

HIGH_CONSUMPTION: frozenset[Restriction] = frozenset(
    {
        Restriction.FLIGHT,
        Restriction.RAIL_PREMIUM,
        Restriction.STAR_HOTEL,
        Restriction.REAL_ESTATE,
        Restriction.VEHICLE,
        Restriction.VACATION_TRAVEL,
        Restriction.LUXURY_GOODS,
        Restriction.PRIVATE_SCHOOL_TUITION,
    }
)
TERM_YEARS = 2
MAX_EXTENSIONS = 1
EXTENSION_DAYS = (365, 3 * 366)  # one to three years, leap days included


@dataclass(frozen=True)
class DishonestDebtorRules:
    def issue(self, request: IssueRequest, now: datetime) -> Terms:
        if not request.legal_basis.case_number.strip():
            raise RuleViolation("legal_basis.case_number", "a court listing names its case number")
        start, requested_end = requested_term(request, now)
        if request.subject.kind == "organization":
            check_organization("subject.id", request.subject.id)
            if request.legal_representative is None:
                raise RuleViolation("legal_representative", "an organization's legal representative is listed with it")
            check_person("legal_representative.id", request.legal_representative.id, min(start, now))
        else:
            if request.legal_representative is not None:
                raise RuleViolation("legal_representative", "only an organization has a legal representative")
            check_person("subject.id", request.subject.id, min(start, now))
        if request.scope not in (None, NATIONAL):
            raise RuleViolation("scope", "court listings are national")
        full_term = add_years(start, TERM_YEARS)
        end = requested_end or full_term
        if end > full_term:
            raise RuleViolation(
                "term_days" if request.term_days else "expires_at", f"a court listing lasts at most {TERM_YEARS} years"
            )
        check_term("expires_at", start, end, 1, None)
        restrictions = choose_restrictions("restrictions", request.restrictions, HIGH_CONSUMPTION, HIGH_CONSUMPTION)
        return Terms(restrictions, NATIONAL, start, end)

    def amend(self, current: Listing, request: AmendRequest, extensions: int) -> tuple[Terms, int]:
        restrictions = choose_restrictions("restrictions", request.restrictions, HIGH_CONSUMPTION, current.restrictions)
        end = current.expires_at
        if request.expires_at is not None and request.expires_at > current.expires_at:
            if extensions >= MAX_EXTENSIONS:
                raise RuleViolation("expires_at", "a court listing can be extended only once")
            low, high = EXTENSION_DAYS
            if not timedelta(days=low) <= request.expires_at - current.expires_at <= timedelta(days=high):
                raise RuleViolation("expires_at", "an extension adds one to three years")
            end, extensions = request.expires_at, extensions + 1
        elif request.expires_at is not None:
            check_term("expires_at", current.effective_from, request.expires_at, 1, None)
            end = request.expires_at
        return Terms(restrictions, current.scope, current.effective_from, end), extensions


RULES: dict[str, ListRules] = {"court.dishonest_debtor": DishonestDebtorRules()}


def rules_for(list_id: str) -> ListRules | None:
    return RULES.get(list_id)
