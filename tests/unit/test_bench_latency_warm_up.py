"""The latency bench leaves the same warm-up seconds out of both sides: ours and the raw reader's."""

from __future__ import annotations

from bench.latency import Pace, after_warm_up


def test_records_stamped_in_the_warm_up_count_on_neither_side() -> None:
    ours = [(100.0, 0.050), (101.9, 0.040), (102.0, 0.004), (103.0, 0.005)]
    raw = [(100.0, 0.030), (101.5, 0.020), (102.0, 0.002), (103.0, 0.003)]
    assert after_warm_up(ours, raw, 2.0) == ([0.004, 0.005], [0.002, 0.003])


def test_the_warm_up_starts_at_the_first_record_either_side_saw() -> None:
    # The raw reader saw a record stamped earlier than any the pipeline did: the boundary is 2 s after that one.
    ours = [(101.0, 0.010), (102.5, 0.006)]
    raw = [(100.5, 0.003), (102.5, 0.002)]
    assert after_warm_up(ours, raw, 2.0) == ([0.006], [0.002])


def test_no_warm_up_keeps_everything_and_the_stream_includes_its_records() -> None:
    ours, raw = [(1.0, 0.1), (2.0, 0.2)], [(1.0, 0.3)]
    assert after_warm_up(ours, raw, 0.0) == ([0.1, 0.2], [0.3])
    assert Pace(2000, 20.0, 2.0).total == 44_000
