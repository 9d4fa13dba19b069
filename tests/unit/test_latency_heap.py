"""settle_heap: what start-up left is frozen out of the collector's later passes, so none of them walks it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.kit.heap import settle_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process goes on collecting as before


@pytest.mark.usefixtures("unfrozen")
def test_settle_heap_takes_start_up_objects_out_of_every_later_collection() -> None:
    start_up = [{"listing": n} for n in range(1000)]  # containers the collector tracks
    assert any(o is start_up for o in gc.get_objects())
    settle_heap()
    assert gc.get_freeze_count() >= len(start_up)
    assert not any(o is start_up for o in gc.get_objects()), "a full collection would still walk it"
    later = [{"listing": -1}]
    assert any(o is later for o in gc.get_objects()), "objects made after start-up are collected as before"
