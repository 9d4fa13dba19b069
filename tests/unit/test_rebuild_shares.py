"""How a rebuild deals partitions to its loaders, how many loaders it starts, and what they tell the parent."""

from __future__ import annotations

import asyncio
import gc

import pytest
from aiokafka import TopicPartition

from services.kit.settings import Settings
from services.ops.rebuild_load import (
    BULK_GC_THRESHOLD,
    Loaded,
    Share,
    Span,
    Spares,
    bulk_collection,
    spares_wanted,
    split,
    worker_count,
)
from services.ops.runtime import OpsError


def spans(*sizes: int) -> list[Span]:
    return [Span("court.listings.v1", n, 100, 100 + size) for n, size in enumerate(sizes)]


def test_every_partition_goes_to_exactly_one_loader() -> None:
    given = spans(5, 9, 0, 3, 7, 1)

    shares = split(given, 2)

    dealt = [span for share in shares for span in share]
    assert sorted(dealt, key=lambda s: s.partition) == given


def test_loaders_get_about_the_same_number_of_records() -> None:
    shares = split(spans(600, 500, 400, 300, 200, 100), 2)

    loads = sorted(sum(s.end - s.start for s in share) for share in shares)
    assert loads == [1000, 1100]


def test_no_loader_is_started_without_a_partition() -> None:
    assert len(split(spans(10), 2)) == 1
    assert split([], 2) == []


def test_small_rebuilds_run_one_loader_and_large_ones_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REBUILD_WORKERS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)

    assert worker_count(3_000) == 1
    assert worker_count(1_000_000) == 2


def test_one_core_runs_one_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REBUILD_WORKERS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 1)

    assert worker_count(1_000_000) == 1


@pytest.mark.parametrize("wanted", ["0", "-1", "two", ""])
def test_a_loader_count_that_is_not_a_positive_number_is_refused(monkeypatch: pytest.MonkeyPatch, wanted: str) -> None:
    monkeypatch.setenv("REBUILD_WORKERS", wanted)

    with pytest.raises(OpsError, match="REBUILD_WORKERS must be a whole number"):
        worker_count(1_000_000)


def test_share_and_result_survive_the_trip_through_a_loader_process() -> None:
    share = Share("airline", 1, spans(4, 2), ["court.listings.v1/0/17"])
    loaded = Loaded(10, 8, 2, 1, 1, {TopicPartition("court.listings.v1", 0): 104})

    assert Share.from_json(share.to_json()) == share
    assert Loaded.from_json(loaded.to_json()) == loaded


def test_the_collector_is_tuned_for_the_load_and_restored_after_it() -> None:
    before = gc.get_threshold()

    with bulk_collection():
        assert gc.get_threshold() == BULK_GC_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_collector_is_restored_when_the_load_fails() -> None:
    before = gc.get_threshold()

    with pytest.raises(RuntimeError), bulk_collection():
        raise RuntimeError("loader failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_processes_started_ahead_are_as_many_as_a_large_rebuild_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REBUILD_WORKERS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert spares_wanted() == 2
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert spares_wanted() == 0  # one loader runs in the rebuild's own process
    monkeypatch.setenv("REBUILD_WORKERS", "3")
    assert spares_wanted() == 3
    monkeypatch.setenv("REBUILD_WORKERS", "two")
    with pytest.raises(OpsError, match="REBUILD_WORKERS must be a whole number"):
        spares_wanted()


async def test_a_process_started_ahead_and_given_no_share_exits_cleanly() -> None:
    settings = Settings.from_env()
    spares = await Spares.start(settings, 2)
    processes = list(spares.processes)
    assert len(processes) == 2

    taken = spares.take()
    assert taken is not None
    await asyncio.wait_for(spares.close(), timeout=60)  # the one left is told there is nothing for it

    assert spares.take() is None
    assert processes[0].returncode == 0  # take() hands out the last started; the first was left
    taken.kill()
    await taken.wait()
