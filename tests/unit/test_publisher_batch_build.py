"""Listings and events of a batch built from validated templates are exactly what validating each of them gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.catalogue import FAMILIES
from schemas.events import EventType, Listing, ListingEvent, Status, to_wire
from services.publishers import service
from services.publishers.court.rules import rules_for
from services.publishers.requests import IssueRequest

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
PUBLISHER = service.Publisher(FAMILIES["court"], rules_for, b"test-key")
ACTOR = "token:court.*"


def request(n: int, court: str = "court.bj-1st-intermediate", **extra: Any) -> IssueRequest:
    return IssueRequest.model_validate(
        {
            "authority": court,
            "list": "court.dishonest_debtor",
            "subject": {"kind": "person", "id": f"11010119800101{n:03d}{n % 10}", "name": f"Person {n}"},
            "legal_basis": {"case_number": f"(2026) 京01执 {n}"},
            **extra,
        }
    )


def company(n: int) -> IssueRequest:
    return IssueRequest.model_validate(
        {
            "authority": "court.bj-1st-intermediate",
            "list": "court.dishonest_debtor",
            "subject": {"kind": "organization", "id": "91110000600037341L", "name": f"某公司 {n}"},
            "legal_representative": {"id": "110101197502021234", "name": "Li Si"},
            "legal_basis": {"case_number": f"(2026) 京01执 {n}", "decision_ref": f"D-{n}"},
            "restrictions": ["FLIGHT", "LUXURY_GOODS"],
        }
    )


def mixed_batch() -> list[IssueRequest]:
    """Items sharing terms, items on terms of their own, another court, and organizations with representatives."""
    return [
        request(1),
        request(2),
        company(3),
        request(4, term_days=30),
        request(5, court="court.sh-2nd-intermediate"),
        request(6, restrictions=["FLIGHT"]),
        company(7),
        request(8),
        request(9, effective_from=(NOW + timedelta(days=3)).isoformat()),
    ]


def built(requests: list[IssueRequest]) -> list[service.Issued]:
    plans = service.plan_many(PUBLISHER, requests, NOW)
    return service.build_issued(PUBLISHER, plans, range(1, 100), ACTOR, NOW)


def changes_of(issued: list[service.Issued]) -> list[Any]:
    return [c for i in issued for c in i.changes]


def test_every_listing_of_a_batch_equals_the_listing_its_own_validation_gives() -> None:
    for change in changes_of(built(mixed_batch())):
        listing = change.event.listing
        # Compared as data: a listing holds the request's legal basis (a LegalBasis subclass), as it always has.
        assert Listing.model_validate(listing.model_dump()).model_dump() == listing.model_dump()
        assert Listing.model_validate_json(listing.model_dump_json()).model_dump_json() == listing.model_dump_json()


def test_every_event_of_a_batch_validates_alone_and_its_wire_bytes_round_trip() -> None:
    for change in changes_of(built(mixed_batch())):
        event = change.event
        again = ListingEvent.model_validate_json(change.value)
        assert again.model_dump() == event.model_dump()
        assert to_wire(again) == change.value
        assert event.event_type is EventType.ISSUED and event.occurred_at == NOW and event.listing.version == 1
        assert event.listing.status is Status.ACTIVE


def test_items_of_a_batch_keep_their_own_ids_subjects_bases_and_terms() -> None:
    requests = mixed_batch()
    issued = built(requests)
    for req, item in zip(requests, issued, strict=True):
        listing = item.listing
        assert listing.authority == req.authority
        assert listing.legal_basis == req.legal_basis
        assert listing.subject.display_name.startswith(req.subject.name[0])
        assert listing.restrictions == service.plan_issue(PUBLISHER, req, NOW).terms.restrictions
        assert listing.expires_at == service.plan_issue(PUBLISHER, req, NOW).terms.expires_at
        for related in item.related:
            assert related.subject.kind.value == "person" and related.legal_basis == req.legal_basis
    ids = [c.event.listing.listing_id for c in changes_of(issued)]
    events = [c.event.event_id for c in changes_of(issued)]
    hashes = {c.event.listing.listing_id: c.event.listing.subject.id_hash for c in changes_of(issued)}
    assert len(set(ids)) == len(ids) and len(set(events)) == len(events)
    assert hashes[ids[0]] != hashes[ids[1]], "two persons of a batch share no subject"


def test_a_batch_builds_the_same_wire_bytes_as_its_items_built_one_at_a_time() -> None:
    requests = mixed_batch()
    together = changes_of(built(requests))
    alone = [c for n, r in enumerate(requests) for c in changes_of(_alone(r, n, together))]
    assert len(together) == len(alone)
    for a, b in zip(together, alone, strict=True):
        # Event ids are random: compare everything else the wire carries.
        assert a.event.model_copy(update={"event_id": b.event.event_id}) == b.event
        assert a.change_json == b.change_json and a.stored == b.stored


def _alone(req: IssueRequest, index: int, together: list[Any]) -> list[service.Issued]:
    """One request built on its own, numbered as the batch numbered it."""
    first = sum(len(service.plan_issue(PUBLISHER, r, NOW).subjects) for r in mixed_batch()[:index])
    plan = service.plan_issue(PUBLISHER, req, NOW)
    return service.build_issued(PUBLISHER, [plan], range(first + 1, first + 1 + len(plan.subjects)), ACTOR, NOW)


@pytest.mark.parametrize("count", [1, 2, 50])
def test_a_batch_of_one_court_and_terms_still_validates_its_first_listing(count: int) -> None:
    issued = built([request(n) for n in range(count)])
    assert [i.listing.listing_id for i in issued] == [f"court.bj-1st-intermediate:2026-{n:06d}" for n in range(1, count + 1)]


def test_equal_terms_of_separate_requests_share_one_lookup_key_and_different_terms_do_not() -> None:
    plans = service.plan_many(
        PUBLISHER, [request(1), request(2), request(3, restrictions=["FLIGHT"]), request(4, term_days=30)], NOW
    )
    terms = [p.terms for p in plans]
    assert terms[0] == terms[1] and hash(terms[0]) == hash(terms[1])
    assert len({t: None for t in terms}) == 3
