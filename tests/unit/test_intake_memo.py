"""Admission remembers which authority may publish which list: the same answers as the catalogue, in bounded memory."""

from __future__ import annotations

import pytest

from schemas.catalogue import may_publish
from services.kit import intake

PAIRS = [
    ("court.bj-1st-intermediate", "court.dishonest_debtor"),
    ("court.bj-1st-intermediate", "transport.flight_ban"),
    ("transport.caac", "transport.flight_ban"),
    ("transport.caac", "transport.rail_ban"),
    ("transport.railway", "transport.rail_ban"),
    ("city.hangzhou", "city.hangzhou.transit_fare_evasion"),
    ("city.hangzhou", "city.chengdu.transit_fare_evasion"),
    ("city.chengdu", "court.dishonest_debtor"),
]


def test_remembered_answers_are_the_catalogue_answers_asked_again_and_again() -> None:
    for authority, list_id in [*PAIRS, *PAIRS, *reversed(PAIRS)]:
        assert intake._may_publish(authority, list_id) is may_publish(authority, list_id), (authority, list_id)
    assert {may_publish(a, b) for a, b in PAIRS} == {True, False}  # both answers were asked for


def test_remembered_answers_stay_bounded_whatever_the_records_carry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "PUBLISHING_HELD", 4)
    monkeypatch.setattr(intake, "_publishing", {})

    for n in range(50):
        assert intake._may_publish(f"city.c{n}", f"city.c{n}.list") is True
        assert intake._may_publish(f"city.c{n}", "court.dishonest_debtor") is False
        assert len(intake._publishing) <= 4
