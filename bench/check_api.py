"""Check API over HTTP: wrk POSTing /v1/checks to the real airline service, whose copy holds N bench listings
written through the real apply path; baseline: the same wrk against the same server's /healthz, same run.
Baseline and checks alternate in short slices, in pairs whose order alternates too (healthz-checks, checks-healthz,
...), and each figure pools its slices: on a shared two-core box the load of other processes changes within seconds,
so one baseline run before one checks run compares two different machines, and even three alternated 10 s rounds
gave per-round ratios from 0.47 to 0.93 in one run. Slices of 2 s, fifteen pairs, keep the same minute of load but
expose both sides to the same drift. A probe asks known listed and unlisted subjects meanwhile and counts wrong
answers."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from dataclasses import dataclass

import httpx
from aiokafka import ConsumerRecord

from bench import wrk
from bench.corpus import flight_listings, signed
from bench.harness import Figure, progress
from bench.workspace import POLICY
from services.consumers.copy import CopyKeeper
from services.kit.db import create_pool
from services.kit.kafka import idempotent_producer
from services.kit.settings import Settings
from services.kit.signing import Keyring, SigningKey
from services.kit.subjects import id_hash

NAMES = ("check API rate (POST /v1/checks)", "check API p99 latency", "check answers wrong under load")
AUTHORITY = "court.bench-check"
LISTED, UNLISTED = "9901011980", "9902021980"  # region codes no real id has: bench subjects never meet real ones
APPLY_CHUNK = 2000
PROBE_PAUSE_S = 0.02
TARGET_RATE = 3000
TARGET_SHARE_OF_HEALTHZ = 0.70
TARGET_P99_MS = 10.0
SLICES_PER_RUN = 5  # a slice is a fifth of the given seconds (2 s at --size full), at least wrk's 1 s
ROUND_BUDGET = 3  # the pairs together last as long as three rounds of the given seconds on each side did

# Cycles through the listed subjects, every other request an unlisted one; wrk passes N after `--`.
SCRIPT = """
local n = 1
local counter = 0
init = function(args)
  n = tonumber(args[1])
end
request = function()
  counter = counter + 1
  local prefix = (counter % 2 == 0) and "LISTED" or "UNLISTED"
  local body = string.format('{"subject":{"kind":"person","id":"%s%08d"},"action":"board_flight"}', prefix, counter % n)
  return wrk.format("POST", "/v1/checks", {["Content-Type"] = "application/json"}, body)
end
""".replace('"UNLISTED"', f'"{UNLISTED}"').replace('"LISTED"', f'"{LISTED}"')


def subject_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:08d}"


@dataclass(frozen=True)
class Copy:
    """The bench listings put into the airline copy: subject n is listed by listing_ids[n]."""

    prefix: str
    size: int

    def listing_id(self, n: int) -> str:
        return f"{AUTHORITY}:{self.prefix}-{n:08d}"


def _records(pairs: list[tuple[str, bytes]], key: SigningKey) -> list[ConsumerRecord[bytes, bytes]]:
    """Signed records as the consumer would fetch them from Kafka (the apply path needs no broker for this)."""
    return [
        ConsumerRecord("bench.check-api", 0, offset, 0, 0, r.key, r.value, None, len(r.key), len(r.value), r.headers)
        for offset, r in enumerate(signed(pairs, key, authority=AUTHORITY))
    ]


async def load_copy(settings: Settings, size: int) -> Copy:
    """Apply `size` FLIGHT listings to the airline copy through CopyKeeper, in batches as the consumer does."""
    copy = Copy(f"check-{uuid.uuid4().hex[:8]}", size)
    hash_key = settings.subject_hash_key
    pairs = flight_listings(size, copy.prefix, lambda n: id_hash(hash_key, "person", subject_id(LISTED, n)), AUTHORITY)
    records = _records(pairs, SigningKey.load(settings.keys_dir, "court-dev"))
    pool = await create_pool(settings.database_url, POLICY.name, max_size=2)
    dlq = idempotent_producer(settings)
    await dlq.start()
    try:
        keeper = CopyKeeper(POLICY, pool, Keyring.load(settings.keyring_path), dlq)
        for start in range(0, size, APPLY_CHUNK):
            outcome = await keeper.process(records[start : start + APPLY_CHUNK])
            if outcome.dead_lettered or outcome.applied != outcome.records:
                raise RuntimeError(f"bench listings not applied as sent: {outcome}")
    finally:
        await dlq.stop()
        await pool.close()
    return copy


async def remove_copy(settings: Settings, copy: Copy) -> int:
    """The bench listings are bench data: delete their rows from the airline copy."""
    pool = await create_pool(settings.database_url, POLICY.name, max_size=1)
    try:
        status = await pool.execute("DELETE FROM listings WHERE listing_id LIKE $1", f"{AUTHORITY}:{copy.prefix}-%")
    finally:
        await pool.close()
    return int(status.split()[-1])


@dataclass
class Probe:
    """Known answers asked under wrk's load: a listed subject refused by its own listing, an unlisted one allowed."""

    copy: Copy
    asked: int = 0
    wrong: int = 0
    first_wrong: str | None = None

    async def ask_until(self, url: str, done: asyncio.Event) -> None:
        rng = random.Random(5)
        async with httpx.AsyncClient(timeout=10) as client:
            while not done.is_set():
                n, listed = rng.randrange(self.copy.size), self.asked % 2 == 0
                body = {
                    "subject": {"kind": "person", "id": subject_id(LISTED if listed else UNLISTED, n)},
                    "action": "board_flight",
                }
                response = await client.post(f"{url}/v1/checks", json=body)
                self.asked += 1
                if not self._right(response, listed, self.copy.listing_id(n)):
                    self.wrong += 1
                    self.first_wrong = self.first_wrong or f"{body} -> {response.status_code} {response.text[:200]}"
                await asyncio.sleep(PROBE_PAUSE_S)

    @staticmethod
    def _right(response: httpx.Response, listed: bool, listing_id: str) -> bool:
        if response.status_code != 200:
            return False
        answer = response.json()
        if not listed:
            return answer["allowed"] is True and answer["blocking"] == []
        return answer["allowed"] is False and [b["listing_id"] for b in answer["blocking"]] == [listing_id]


async def _checks_under_probe(url: str, probe: Probe, seconds: float) -> wrk.WrkResult:
    done = asyncio.Event()
    asking = asyncio.create_task(probe.ask_until(url, done))
    try:
        return await wrk.run(f"{url}/v1/checks", seconds, SCRIPT, [str(probe.copy.size)])
    finally:
        done.set()
        await asking


@dataclass
class Rounds:
    """Each slice's wrk result for the baseline and for the checks, pair by pair, in the order they ran."""

    healthz: list[wrk.WrkResult]
    checks: list[wrk.WrkResult]

    @staticmethod
    def pooled(runs: list[wrk.WrkResult]) -> float:
        """Requests per second over all slices of one side together."""
        return sum(r.requests for r in runs) / sum(r.seconds for r in runs)

    def notes(self) -> dict[str, object]:
        return {
            "pairs": len(self.checks),
            "slice_seconds": round(statistics.median(r.seconds for r in self.checks), 2),
            "checks_requests": sum(r.requests for r in self.checks),
            "healthz_requests": sum(r.requests for r in self.healthz),
            "checks_per_s_by_pair": [round(r.rate) for r in self.checks],
            "healthz_per_s_by_pair": [round(r.rate) for r in self.healthz],
            "check_p99_ms_by_pair": [r.p99_ms for r in self.checks],
            "ratio_by_pair": [round(c.rate / h.rate, 2) for c, h in zip(self.checks, self.healthz, strict=True)],
        }


def slicing(seconds: float) -> tuple[int, float]:
    """(pairs, seconds a slice) for wrk runs of `seconds` each: 15 pairs of 2 s at --size full, 3 of 1 s at tiny."""
    slice_s = float(max(1, round(seconds / SLICES_PER_RUN)))
    return max(3, round(ROUND_BUDGET * seconds / slice_s)), slice_s


async def _rounds(url: str, probe: Probe, seconds: float) -> Rounds:
    rounds = Rounds([], [])
    pairs, slice_s = slicing(seconds)
    progress(f"  {pairs} pairs of {slice_s:.0f}s slices: wrk GET /healthz and POST /v1/checks + probe, order alternating")
    for n in range(pairs):
        if n % 2 == 0:
            rounds.healthz.append(await wrk.run(f"{url}/healthz", slice_s))
            rounds.checks.append(await _checks_under_probe(url, probe, slice_s))
        else:
            rounds.checks.append(await _checks_under_probe(url, probe, slice_s))
            rounds.healthz.append(await wrk.run(f"{url}/healthz", slice_s))
        if (n + 1) % 5 == 0 or n + 1 == pairs:
            so_far = f"checks {rounds.pooled(rounds.checks):,.0f}/s, healthz {rounds.pooled(rounds.healthz):,.0f}/s"
            progress(f"  pair {n + 1}/{pairs}: {so_far} so far")
    return rounds


async def measure(settings: Settings, airline_url: str, listings: int, seconds: float) -> list[Figure]:
    progress(f"check API bench: {listings:,} listings into the airline copy through CopyKeeper")
    started = time.perf_counter()
    copy = await load_copy(settings, listings)
    loaded_s = time.perf_counter() - started
    probe = Probe(copy)
    try:
        rounds = await _rounds(airline_url, probe, seconds)
    finally:
        removed = await remove_copy(settings, copy)
    return _figures(rounds, probe, {"listings": listings, "load_seconds": round(loaded_s, 1), "rows_removed": removed})


def _figures(rounds: Rounds, probe: Probe, notes: dict[str, object]) -> list[Figure]:
    checks, healthz = rounds.pooled(rounds.checks), rounds.pooled(rounds.healthz)
    p99_ms = statistics.median(r.p99_ms for r in rounds.checks)
    clean = all(r.non_2xx == 0 and r.socket_errors == 0 for r in rounds.checks)
    probe_notes: dict[str, object] = {"asked": probe.asked, "first_wrong": probe.first_wrong}
    return [
        Figure(
            NAMES[0],
            checks,
            "checks/s",
            "GET /healthz, same server",
            healthz,
            ">= 3,000/s and >= 0.70",
            notes | rounds.notes(),
            met=clean and checks >= TARGET_RATE and checks >= TARGET_SHARE_OF_HEALTHZ * healthz,
        ),
        Figure(
            NAMES[1],
            p99_ms,
            "ms",
            "GET /healthz p99, same server",
            statistics.median(r.p99_ms for r in rounds.healthz),
            "<= 10 ms",
            {"median_of": "each slice's p99", "healthz_p99_ms_by_pair": [r.p99_ms for r in rounds.healthz]},
            met=p99_ms <= TARGET_P99_MS,
        ),
        Figure(NAMES[2], probe.wrong, "answers", None, None, "0", probe_notes, met=probe.wrong == 0 and probe.asked > 0),
    ]
