"""Transactions commit asynchronously: their offsets go to Kafka only once a synchronous commit on the same run of
the server has followed them (settled), and a server that restarted before that makes the pipeline apply them again."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from datetime import timedelta

import pytest

from services.consumers import pipeline
from tests.unit.test_pipeline_concurrent import P0, P1, P2, SERVER_STARTED, record, two_lanes
from tests.unit.test_pipeline_polling import handled, latest_commit


@pytest.fixture(autouse=True)
def _spacing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "COMMIT_SPACING_SECONDS", 0.0)
    monkeypatch.setattr(pipeline, "RETRY_SECONDS", 0.0)


async def test_offsets_wait_until_a_settle_has_followed_the_transaction() -> None:
    keeper, consumer, batches = two_lanes()
    keeper.settle_fails = True
    keeper.gate("a").set()
    await handled(batches, consumer, [record(0, 0, "a")])
    await keeper.let_run()
    assert keeper.applied == [["a"]] and keeper.settles >= 1
    assert consumer.commits == []  # committed, visible, but not known to be on disk

    keeper.settle_fails = False
    keeper.gate("b").set()
    await handled(batches, consumer, [record(1, 0, "b")])  # the next commit settles both
    await keeper.let_run()
    assert latest_commit(consumer) == {P0: 1, P1: 1}
    await asyncio.wait_for(batches.close(), timeout=10)


async def test_close_settles_before_its_last_offset_commit() -> None:
    keeper, consumer, batches = two_lanes()
    keeper.gate("a").set()
    await handled(batches, consumer, [record(0, 0, "a")])
    await asyncio.wait_for(batches.close(), timeout=10)
    assert keeper.settles >= 1 and latest_commit(consumer) == {P0: 1}


async def test_a_server_restarted_before_the_settle_has_its_transactions_applied_again_and_none_committed() -> None:
    keeper, consumer, batches = two_lanes()
    keeper.settle_fails = True  # the server goes away after a and b commit, before anything settles them
    for listing in "abc":
        keeper.gate(listing).set()
    await handled(batches, consumer, [record(0, 0, "a"), record(1, 3, "a2")])
    await handled(batches, consumer, [record(0, 1, "b"), record(2, 7, "b2")])
    await keeper.let_run()
    assert consumer.commits == []

    keeper.settle_fails = False
    keeper.server_now = keeper.server_started = SERVER_STARTED + timedelta(seconds=30)  # it came back: a new run
    await handled(batches, consumer, [record(0, 2, "c")])  # c commits on the new run; its settle finds a and b lost
    await keeper.let_run()
    assert dict(consumer.seeks) == {P0: 0, P1: 3, P2: 7}
    assert consumer.commits == []  # c's offset would pass a and b, which may be gone

    await handled(batches, consumer, [record(0, 3, "d")])  # fetched before the rewind took effect: sent back
    await handled(batches, consumer, [record(0, 0, "a"), record(1, 3, "a2"), record(0, 1, "b"), record(2, 7, "b2")])
    await handled(batches, consumer, [record(0, 2, "c")])
    await asyncio.wait_for(batches.close(), timeout=10)
    assert keeper.applied[-2:] == [["a", "a2", "b", "b2"], ["c"]]
    assert latest_commit(consumer) == {P0: 3, P1: 4, P2: 8}


async def test_a_transaction_waiting_for_its_settle_keeps_none_of_its_records() -> None:
    """The database may refuse settles for long while transactions go on: what waits for one must stay small."""
    keeper, consumer, batches = two_lanes()
    keeper.settle_fails = True
    keeper.gate("a").set()
    records = [record(0, n, "a" if n == 0 else f"a{n}") for n in range(50)]
    kept = weakref.ref(records[-1])
    await handled(batches, consumer, records)
    await keeper.let_run()
    assert keeper.applied and consumer.commits == []  # applied, not settled
    del records
    gc.collect()
    assert kept() is None, "a record outlived its transaction while the transaction waited for a settle"
    assert sys.getsizeof(batches._order[0].listings) < 1024, "its listing ids are kept while it waits"
    await asyncio.wait_for(batches.close(), timeout=10)
