"""Parsing a register search (no I/O): which searches match an id, which a name, and which are refused."""

from __future__ import annotations

import pytest

from services.publishers.court.register import BadQuery, parse_query


def test_eighteen_character_id_is_matched_exactly_in_upper_case() -> None:
    query = parse_query(" 11010119800101123x ")
    assert (query.text, query.match) == ("11010119800101123X", "id")


def test_credit_code_is_an_id_search() -> None:
    assert parse_query("91350100M000100Y43").match == "id"


def test_eighteen_letters_without_digits_is_a_name_search() -> None:
    assert parse_query("ABCDEFGHIJKLMNOPQR").match == "name"


def test_inner_whitespace_of_a_name_is_collapsed() -> None:
    assert parse_query("Zhang    San").text == "Zhang San"


@pytest.mark.parametrize("raw", ["", " \n ", "z", "a" * 65, "Zhang\x07San", "Zhang\u202eSan"])
def test_unsearchable_input_is_refused_with_a_message(raw: str) -> None:
    with pytest.raises(BadQuery) as refused:
        parse_query(raw)
    assert str(refused.value)
