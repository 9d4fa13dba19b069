"""The machine's CPU counters behind the publisher bench's CPU-per-listing figure, and that figure's arithmetic."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench import machine
from bench.publisher import NAMES, MachineCost, cpu_figure
from bench.rebuild import machine_notes

TICK = os.sysconf("SC_CLK_TCK")


def _stat(tmp_path: Path, user: int, nice: int, system: int, idle: int, iowait: int, irq: int, softirq: int) -> Path:
    path = tmp_path / "stat"
    path.write_text(
        f"cpu  {user} {nice} {system} {idle} {iowait} {irq} {softirq} 777 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 12345\n"
    )
    return path


def test_busy_counts_user_nice_system_irq_softirq_and_idle_counts_iowait_but_steal_is_neither(tmp_path: Path) -> None:
    sample = machine.sample(_stat(tmp_path, 100, 20, 30, 400, 50, 6, 4))
    assert sample.busy_s == pytest.approx(160 / TICK)
    assert sample.idle_s == pytest.approx(450 / TICK)


def test_a_file_without_the_machine_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stat"
    path.write_text("cpu0 1 2 3 4 5 6 7\n")
    with pytest.raises(ValueError, match="cpu line"):
        machine.sample(path)


def test_usage_between_two_samples() -> None:
    usage = machine.between(machine.Usage(10.0, 50.0), machine.Usage(13.0, 51.0))
    assert (usage.busy_s, usage.idle_s) == (3.0, 1.0)
    assert usage.busy_fraction == 0.75
    assert usage.us_per(1000) == pytest.approx(3000.0)


def test_this_machines_counters_see_cpu_this_process_burns() -> None:
    meter = machine.Meter()
    spent = time.process_time()
    while time.process_time() - spent < 0.3:
        pass
    usage = meter.stop()
    assert usage.busy_s >= 0.25  # every other process only adds to it
    assert 0 < usage.busy_fraction <= 1


def test_cpu_figure_compares_one_a_request_with_an_http_exchange_plus_a_batched_listing() -> None:
    single = MachineCost(machine.Usage(busy_s=1.8, idle_s=0.2), units=1200)
    healthz = MachineCost(machine.Usage(busy_s=1.9, idle_s=0.1), units=9500)
    batched = MachineCost(machine.Usage(busy_s=2.0, idle_s=0.0), units=8000)
    figure = cpu_figure(single, healthz, batched, cores=2)
    assert figure.name == NAMES[4]
    assert figure.value == pytest.approx(1500.0)  # 1.8 s of CPU for 1,200 listings
    assert figure.baseline_value == pytest.approx(200.0 + 250.0)
    assert figure.ratio == pytest.approx(1500 / 450)
    assert figure.notes["ceiling_one_a_request_listings_per_s"] == pytest.approx(2e6 / 450, abs=0.1)
    assert figure.notes["busy_fraction_one_a_request"] == 0.9
    assert figure.met is None  # an explanation of a target's figure, not a target of its own


def test_rebuild_notes_give_cpu_seconds_busy_share_and_cpu_per_record() -> None:
    notes = machine_notes(machine.Usage(busy_s=30.0, idle_s=10.0), 1_000_000)
    assert notes == {"cpu_s": 30.0, "busy_fraction": 0.75, "cpu_us_per_record": 30.0}
