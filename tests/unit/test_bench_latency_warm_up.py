"""The latency bench leaves the same warm-up seconds out of each side's own stretch of the stream."""

from __future__ import annotations

from bench.latency import Pace, after_warm_up


def test_records_stamped_in_the_warm_up_do_not_count() -> None:
    stamped = [(100.0, 0.050), (101.9, 0.040), (102.0, 0.004), (103.0, 0.005)]
    assert after_warm_up(stamped, 2.0) == [0.004, 0.005]


def test_the_warm_up_starts_at_the_first_record_of_the_side_itself() -> None:
    # Each side reads a stretch of its own, one after the other: the raw reader's earlier stamps say nothing of ours.
    raw = [(100.5, 0.003), (102.5, 0.002)]
    ours = [(150.0, 0.010), (151.0, 0.008), (152.5, 0.006)]
    assert after_warm_up(raw, 2.0) == [0.002]
    assert after_warm_up(ours, 2.0) == [0.006]


def test_no_warm_up_keeps_everything_and_the_stream_includes_its_records() -> None:
    assert after_warm_up([(1.0, 0.1), (2.0, 0.2)], 0.0) == [0.1, 0.2]
    assert after_warm_up([], 2.0) == []
    assert Pace(2000, 20.0, 2.0).total == 44_000
