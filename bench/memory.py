"""Peak resident memory (VmHWM in /proc/<pid>/status) of the real service processes: the airline consumer while it
applies N listings into its copy at full speed, and the court publisher after the publisher bench; each against
the same process before its load."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Sequence

from bench.corpus import Record, flight_listings, signed
from bench.harness import Figure, progress
from bench.stack import ScratchStack, largest_worker_status_kb, vm_status_kb, worker_pids
from bench.workspace import group_lag, produce
from schemas.catalogue import FAMILIES
from services import runner
from services.kit.settings import Settings
from services.kit.signing import SigningKey
from services.kit.subjects import id_hash

NAMES = ("consumer peak RSS (VmHWM)", "publisher peak RSS (VmHWM)")
AUTHORITY = "court.bench-memory"
SUBJECTS = "9904041980"
PRODUCE_CHUNK = 50_000  # signed and sent a chunk at a time: a million records at once would cost the bench gigabytes
IDLE_SETTLE_S = 2.0
CONSUMER_LIMIT_MB = 300
PUBLISHER_LIMIT_MB = 200


def mb(kb: int) -> float:
    return kb / 1024


def listing_chunks(settings: Settings, count: int, prefix: str) -> Iterator[Sequence[Record]]:
    key = SigningKey.load(settings.keys_dir, "court-dev")
    hash_key = settings.subject_hash_key
    for start in range(0, count, PRODUCE_CHUNK):
        size = min(PRODUCE_CHUNK, count - start)
        pairs = flight_listings(size, prefix, lambda n: id_hash(hash_key, "person", f"{SUBJECTS}{n:08d}"), AUTHORITY, start)
        yield signed(pairs, key, authority=AUTHORITY)
        if (start + size) % 200_000 == 0:
            progress(f"  produced {start + size:,} of {count:,}")


async def _caught_up(settings: Settings, group: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    topics = [FAMILIES["court"].topic]
    while (lag := await group_lag(settings, group, topics)) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the airline consumer still had {lag:,} records to apply after {timeout:.0f}s")
        await asyncio.sleep(1.0)


async def _copy_rows(settings: Settings, prefix: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        sql = "SELECT count(*) FROM airline.listings WHERE listing_id LIKE $1 AND id_hash IS NOT NULL"
        return int(await conn.fetchval(sql, f"{AUTHORITY}:{prefix}-%"))
    finally:
        await conn.close()


def consumer_peak(stack: ScratchStack, settings: Settings, listings: int) -> Figure:
    """A fresh airline service; its VmHWM idle, then after N listings were produced to its topic and applied."""
    prefix = f"mem-{uuid.uuid4().hex[:8]}"
    airline = stack.start_services(["airline"])["airline"]
    try:
        time.sleep(IDLE_SETTLE_S)  # let start-up work (first poll, first pool connections) finish before "idle"
        idle = vm_status_kb(airline.process.pid)
        progress(f"memory bench: {listings:,} listings to court.listings.v1 while the airline service applies them")
        started = time.perf_counter()
        produced = asyncio.run(produce(settings, FAMILIES["court"].topic, listing_chunks(settings, listings, prefix)))
        asyncio.run(_caught_up(settings, "airline", timeout=120 + listings / 1000))
        seconds = time.perf_counter() - started
        peak = vm_status_kb(airline.process.pid)
        rows = asyncio.run(_copy_rows(settings, prefix))
    finally:
        runner.stop([airline])
    notes = {
        "listings_produced": produced,
        "listings_in_copy": rows,
        "rss_now_mb": round(mb(peak["VmRSS"]), 1),
        "idle_rss_mb": round(mb(idle["VmRSS"]), 1),
        "produce_and_apply_s": round(seconds, 1),
        "process": "airline service (uvicorn), same code as `blacklist-sync run airline`",
    }
    return Figure(
        NAMES[0],
        mb(peak["VmHWM"]),
        "MB",
        "same process idle before consuming",
        mb(idle["VmHWM"]),
        f"< {CONSUMER_LIMIT_MB} MB with 1,000,000 listings",
        notes,
        met=mb(peak["VmHWM"]) < CONSUMER_LIMIT_MB and rows >= listings,
    )


def publisher_peak(court: runner.RunningService, at_start: dict[str, int]) -> Figure:
    """The court service's VmHWM after the publisher bench, against its own at start (read before any load, by
    largest_worker_status_kb too). With uvicorn workers, each is a process with its own memory: the figure is the
    largest worker's peak, the memory one process of the service needs."""
    peak = largest_worker_status_kb(court.process.pid)
    workers = len(worker_pids(court.process.pid))  # the supervisor itself counts as the one worker without --workers
    process = "court service (uvicorn) with its outbox relay"
    if workers > 1:
        process = f"the largest of the court service's {workers} uvicorn workers, each with its outbox relay"
    notes = {"rss_now_mb": round(mb(peak["VmRSS"]), 1), "process": process, "workers": workers}
    return Figure(
        NAMES[1],
        mb(peak["VmHWM"]),
        "MB",
        "same process at start",
        mb(at_start["VmHWM"]),
        f"< {PUBLISHER_LIMIT_MB} MB",
        notes,
        met=mb(peak["VmHWM"]) < PUBLISHER_LIMIT_MB,
    )
