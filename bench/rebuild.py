"""Rebuild of the airline copy from the listing topics, timed as an operator runs it (`blacklist-sync ops replay airline
--rebuild`, wall clock); baseline: raw aiokafka + JSON reading the same topics, same run. Scratch stack only."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import subprocess
import sys
import time

from bench.harness import Figure, Skipped, progress
from bench.machine import Meter, Usage
from bench.stack import ScratchStack
from bench.workspace import group_lag, raw_json_read, records_in
from schemas.catalogue import LISTING_TOPICS, schema_name
from services.kit.settings import Settings

NAMES = ("rebuild (ops replay airline --rebuild)",)
CONSUMER = "airline"
TARGET_S = 30.0
TARGET_LISTINGS = 1_000_000


def available() -> Skipped | None:
    if importlib.util.find_spec("services.ops.rebuild") is None:
        return Skipped(NAMES[0], "`blacklist-sync ops replay --rebuild` (services/ops/rebuild.py) does not exist yet")
    return None


async def raw_read_seconds(settings: Settings) -> tuple[int, float]:
    """Every record of the listing topics read and parsed as JSON; wall clock from client start, like the command's."""
    total = await records_in(settings, LISTING_TOPICS)
    started = time.perf_counter()
    seen, _ = await raw_json_read(settings, LISTING_TOPICS, total)
    return seen, time.perf_counter() - started


def run_rebuild(stack: ScratchStack, timeout: float) -> tuple[float, str]:
    with stack.environment():
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", "ops", "replay", "airline", "--rebuild"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise RuntimeError(f"`ops replay airline --rebuild` failed: {reason}")
    return seconds, done.stdout


def measure(stack: ScratchStack, settings: Settings, expected_listings: int) -> Figure:
    progress("rebuild bench: baseline raw aiokafka + JSON over the listing topics")
    meter = Meter()
    records, raw_seconds = asyncio.run(raw_read_seconds(settings))
    raw_cpu = meter.stop()
    progress(f"  ours: blacklist-sync ops replay airline --rebuild ({records:,} records)")
    meter = Meter()
    seconds, output = run_rebuild(stack, timeout=300 + records / 500)
    ours_cpu = meter.stop()
    held = re.search(r"holds ([\d,]+) listings", output)
    listings = int(held[1].replace(",", "")) if held else None
    reported = re.search(r"rebuilt airline in ([\d.]+)s", output)
    phases = re.search(r"phases: (.*)$", output.strip().splitlines()[-1] if output.strip() else "")
    notes = {
        "records_in_topics": records,
        "listings_in_rebuilt_copy": listings,
        # What the airline service started after the rebuild would read again: the rebuild leaves its group alone.
        "airline_group_lag_after": asyncio.run(group_lag(settings, CONSUMER, list(LISTING_TOPICS))),
        "command_reported_s": float(reported[1]) if reported else None,
        "phases": phases[1] if phases else None,
        "output": output.strip().splitlines()[-1:],
        # The whole machine's CPU over each (bench/machine.py): a slow run that spent the same CPU seconds had
        # fewer cores to itself; one that spent more did more work, or ran on a slower stretch of the machine.
        "machine": {"ours": machine_notes(ours_cpu, records), "raw_read": machine_notes(raw_cpu, records)},
    }
    return Figure(
        NAMES[0],
        seconds,
        "s",
        "raw aiokafka + JSON read of the same topics",
        raw_seconds,
        "<= 30 s for 1,000,000 listings",
        notes,
        met=seconds <= TARGET_S and (listings or 0) >= max(expected_listings, TARGET_LISTINGS),
    )


def machine_notes(usage: Usage, records: int) -> dict[str, float]:
    return {
        "cpu_s": round(usage.busy_s, 1),
        "busy_fraction": round(usage.busy_fraction, 3),
        "cpu_us_per_record": round(usage.us_per(records), 1),
    }


def settle(settings: Settings) -> None:
    """VACUUM the airline copy, untimed, before a bench that follows a bulk write to it: a million rows freshly
    applied (by the memory bench's service) or COPYed (by the rebuild) would otherwise draw autovacuum's
    insert-triggered pass into the middle of the next figures (the rebuild's, the check API's)."""
    progress("rebuild bench: VACUUM ANALYZE of the airline copy (untimed) before the next bench")
    asyncio.run(_vacuum(settings))


async def _vacuum(settings: Settings) -> None:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f'VACUUM (ANALYZE) "{schema_name(CONSUMER)}".listings')
    finally:
        await conn.close()
