"""What the latency bench keeps while it measures: arrivals the garbage collector never walks, only the sends still
unacknowledged, and each process's collection pauses."""

from __future__ import annotations

import asyncio
import gc
import json

import pytest

from bench.latency import PROBE, Arrivals, GcPauses, latencies, outstanding


def value(listing_id: str, occurred_at: str) -> bytes:
    return json.dumps({"occurred_at": occurred_at, "listing": {"listing_id": listing_id}}).encode()


def test_arrivals_give_back_each_batch_with_its_time_in_order() -> None:
    arrivals = Arrivals()
    arrivals.add(10.0, [b"a", b"b"])
    arrivals.add(11.5, [])
    arrivals.add(12.0, [b"c"])
    assert list(arrivals.batches()) == [(10.0, [b"a", b"b"]), (11.5, []), (12.0, [b"c"])]


def test_arrivals_add_nothing_for_the_garbage_collector_to_walk_as_batches_come() -> None:
    arrivals = Arrivals()
    gc.collect()
    before = len(gc.get_objects())
    for i in range(2000):
        arrivals.add(float(i), [b"value"])
    assert len(gc.get_objects()) - before < 20  # a (time, list) pair a batch was 4,000 here


def test_latencies_time_each_record_from_its_stamp_to_its_batch_and_leave_the_probe_out() -> None:
    arrivals = Arrivals()
    arrivals.add(
        1_800_000_000.25,
        [value("court.x:lat-1", "2027-01-15T08:00:00.000000Z"), value(f"court.x:{PROBE}-1", "2027-01-15T08:00:00Z")],
    )
    ((stamp, delay),) = latencies(arrivals)
    assert stamp == 1_800_000_000.0 and delay == pytest.approx(0.25)


async def test_outstanding_keeps_the_unacknowledged_sends_and_raises_a_failed_one() -> None:
    loop = asyncio.get_running_loop()
    acked, waiting, failed = loop.create_future(), loop.create_future(), loop.create_future()
    acked.set_result(None)
    assert outstanding([acked, waiting]) == [waiting]
    failed.set_exception(ConnectionError("broker went away"))
    with pytest.raises(ConnectionError):
        outstanding([waiting, failed])


def test_gc_pauses_count_a_full_collection_while_installed_only() -> None:
    with GcPauses() as pauses:
        gc.collect()
    gc.collect()
    assert pauses.full == 1 and pauses.longest_ms > 0
