"""`blacklist-sync bench --size tiny` end to end, so the benchmarks cannot rot: a table and a JSON line naming every
figure with its number and its same-run baseline. No timing is asserted: figures on a shared machine are not pass/fail."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.cli import BENCHES, figure_names
from tests.conftest import Infra

pytestmark = pytest.mark.integration

# Under pytest-timeout's 300 s, so a hung bench fails here with its own output rather than being killed blind.
BENCH_TIMEOUT_S = 240
STOP_TIMEOUT_S = 45


@dataclass(frozen=True)
class BenchRun:
    done: subprocess.CompletedProcess[str]
    written: Path

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.done.stdout.strip().splitlines()[-1])
        return parsed

    def figure(self, name: str) -> dict[str, Any]:
        (found,) = [f for f in self.document["bench"] if f["name"] == name]
        return dict(found)


@pytest.fixture(scope="module")
def tiny_bench(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    """One tiny run of every bench, shared by this module's tests (it starts a scratch stack of its own)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    command = [sys.executable, "-m", "services.cli", "bench", "--size", "tiny", "--out", str(out)]
    process = subprocess.Popen(
        command, env={**os.environ, **infra.env()}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=BENCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.terminate()  # SIGTERM: the bench stops its scratch stack on the way out (SIGKILL would leave it running)
        stdout, stderr = process.communicate(timeout=STOP_TIMEOUT_S)
        raise AssertionError(f"bench did not finish in {BENCH_TIMEOUT_S}s; stderr tail:\n{stderr[-2000:]}") from None
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert done.returncode == 0, f"exit {done.returncode}; stderr tail:\n{done.stderr[-3000:]}"
    return BenchRun(done, out)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_tiny_bench_prints_every_figure_in_the_table_and_the_json_line(tiny_bench: BenchRun) -> None:
    document = tiny_bench.document
    expected = [name for bench in BENCHES for name in figure_names()[bench]]
    assert document["skipped"] == [], document["skipped"]
    assert sorted(f["name"] for f in document["bench"]) == sorted(expected)
    table = tiny_bench.done.stdout.strip().splitlines()[:-1]
    assert len(table) == 2 + len(expected) + 1, "stdout holds the header, one row per figure, the footer line, the JSON"
    for name in expected:
        assert any(line.startswith(name) for line in table), f"{name!r} is missing from the table"
    assert json.loads(tiny_bench.written.read_text()) == document


def test_tiny_bench_gives_every_figure_a_number_and_every_baseline_a_measured_value(tiny_bench: BenchRun) -> None:
    for figure in tiny_bench.document["bench"]:
        assert _is_number(figure["value"]), figure
        if figure["baseline"] is not None:
            assert _is_number(figure["baseline_value"]) and figure["baseline_value"] > 0, figure


def test_tiny_bench_check_api_answers_stay_correct_under_load(tiny_bench: BenchRun) -> None:
    wrong = tiny_bench.figure("check answers wrong under load")
    assert wrong["notes"]["asked"] > 0
    assert wrong["value"] == 0, wrong["notes"]["first_wrong"]


def test_tiny_bench_consumer_copy_holds_every_listing_it_was_sent(tiny_bench: BenchRun) -> None:
    memory = tiny_bench.figure("consumer peak RSS (VmHWM)")
    assert memory["notes"]["listings_in_copy"] == memory["notes"]["listings_produced"] > 0


def test_bench_refuses_an_unknown_benchmark_name_before_starting_anything() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "--size", "tiny", "--only", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "invalid choice: 'nonsense'" in done.stderr
