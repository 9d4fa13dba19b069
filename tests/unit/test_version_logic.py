"""Newest version per listing within a batch: duplicates, replays and any order leave each listing's newest change."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.consumers.policy import CopyRow
from services.consumers.store import Change, newest_per_listing

T0 = datetime(2026, 11, 26, tzinfo=UTC)
T1 = datetime(2028, 11, 26, tzinfo=UTC)


def row(listing_id: str, version: int) -> CopyRow:
    return CopyRow(
        listing_id=listing_id,
        version=version,
        list="court.dishonest_debtor",
        authority="court.bj-1",
        subject_kind="person",
        id_hash="a" * 64,
        id_masked="110101********1234",
        restrictions=("FLIGHT",),
        scope="national",
        case_number=f"case {version}",
        effective_from=T0,
        expires_at=T1,
    )


def change(listing_id: str, version: int, marker: bool = False) -> Change:
    """A listing's state at a version: a kept row, or only a version marker once revoked."""
    return Change(listing_id, version, None if marker else row(listing_id, version))


def newest(changes: list[Change]) -> dict[str, Change]:
    result = newest_per_listing(changes)
    assert len({c.listing_id for c in result}) == len(result), "one change per listing"
    return {c.listing_id: c for c in result}


def test_empty_batch_has_nothing_to_apply() -> None:
    assert newest_per_listing([]) == []


def test_newest_version_wins_whatever_the_arrival_order() -> None:
    history = [change("a", 3), change("a", 1), change("b", 1), change("a", 2)]

    assert newest(history) == {"a": change("a", 3), "b": change("b", 1)}


def test_revocation_marker_is_kept_over_the_older_row_it_replaces() -> None:
    history = [change("a", 1), change("a", 3, marker=True), change("a", 2)]

    assert newest(history)["a"] == Change("a", 3, None)


def test_late_duplicate_of_an_old_version_does_not_replace_the_marker() -> None:
    history = [change("a", 1), change("a", 2, marker=True), change("a", 1), change("a", 1)]

    assert newest(history)["a"] == Change("a", 2, None)


def test_first_version_this_consumer_does_not_apply_needs_no_marker() -> None:
    # Nothing older than version 1 exists for a marker to stop, and the copy holds no listing it does not apply.
    history = [change("a", 1, marker=True), change("b", 1), change("a", 1, marker=True)]

    assert newest(history) == {"b": change("b", 1)}


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Change], dict[str, int]]:
    """Several listings' full histories (v1..vN, ending in a marker or not), with duplicates, in any order.

    Also returns each listing's newest version, for the listings that must reach the copy.
    """
    versions = draw(st.dictionaries(st.sampled_from("abcdefgh"), st.integers(min_value=1, max_value=6), min_size=1))
    revoked = draw(st.sets(st.sampled_from(sorted(versions))))
    history = [change(lid, v, marker=lid in revoked and v == last) for lid, last in versions.items() for v in range(1, last + 1)]
    duplicates = draw(st.lists(st.sampled_from(history), max_size=20))
    shuffled = history + duplicates
    random.Random(draw(st.integers())).shuffle(shuffled)
    kept = {lid: last for lid, last in versions.items() if not (lid in revoked and last == 1)}
    return shuffled, kept


@settings(database=None)  # no example database on disk: unit tests do no I/O
@given(histories())
def test_any_shuffle_with_duplicates_yields_each_listings_newest_change(case: tuple[list[Change], dict[str, int]]) -> None:
    changes, last = case

    result = newest(changes)

    assert {lid: c.version for lid, c in result.items()} == last
    for lid, c in result.items():
        assert c in changes
        assert c.row is None or c.row.version == c.version == last[lid]


@settings(database=None)
@given(histories(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_arrival_order(case: tuple[list[Change], dict[str, int]], rnd: random.Random) -> None:
    changes, _ = case
    reordered = list(changes)
    rnd.shuffle(reordered)

    assert newest(reordered) == newest(changes)


@settings(database=None)
@given(histories())
def test_applying_the_newest_again_is_a_fixed_point(case: tuple[list[Change], dict[str, int]]) -> None:
    changes, _ = case
    once = newest_per_listing(changes)

    assert newest(once + changes) == newest(changes)
