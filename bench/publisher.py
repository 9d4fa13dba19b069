"""Publisher: listings/s accepted by the real court service over HTTP (wrk) and delivered through its outbox to Kafka,
and the outbox relay's own capacity on a backlog; baselines: the same server's /healthz rate, and a raw aiokafka
producer sending the same values, same run."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from dataclasses import dataclass

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import wrk
from bench.harness import Figure, progress
from bench.machine import Meter, Usage
from schemas.catalogue import FAMILIES, LISTING_TOPIC_PARTITIONS
from services.kit.db import create_pool
from services.kit.kafka import client_options, idempotent_producer
from services.kit.settings import Settings
from services.publishers import service, store
from services.publishers.court import rules as court_rules
from services.publishers.requests import MAX_BATCH_LISTINGS, IssueRequest

NAMES = (
    "publisher accepted rate (POST /v1/listings, 201)",
    "publisher delivered rate (outbox -> Kafka)",
    "publisher relay capacity (outbox backlog -> Kafka)",
    "publisher accepted rate, batches (POST /v1/listings/batch, 201)",
    "publisher machine CPU per listing, one a request",
)
AUTHORITY = "court.bench-publisher"
# The court service with one worker per core (`--workers 2`), each accepting on a socket of its own
# (services/kit/serve.py), as `blacklist-sync run court --workers 2` deploys it. Each worker serves the API and runs
# an outbox relay; store.take_relay_turn lets one relay pass send at a time. With uvicorn's own workers, which share
# one socket, the bench's few long-lived connections all landed on one worker (CPU ticks per worker over 10 s: 174
# and 652) and two workers gave no gain. With a socket each, alternated full runs (`--only publisher`) measured the
# batch route at 7,468 and 8,218 listings/s accepted (7,628 and 8,307 delivered) against one worker's 5,932 and
# 5,500 (5,979 and 5,554). Every figure of this bench is of that same service.
COURT_WORKERS = 2
TARGET_RATE = 5000
DRAIN_TIMEOUT_S = 300.0
# The relay's backlog: 10,000 rows per second of HTTP load, i.e. 100,000 for --size full (10 s), 10,000 for tiny (1 s).
BACKLOG_ROWS_PER_HTTP_SECOND = 10_000
FILL_CHUNK = 1000
DRAIN_POLL_S = 0.01

# One listing's body for the n-th request of a run: a valid, unique adult person (region digits and sequence from a
# counter, born 1980-01-01). Shared by the one-a-request and the batch scripts below.
LISTING_LUA = """
local counter = 0
local base = 0
local token = ""
local function listing()
  counter = counter + 1
  local n = base + counter
  local id = string.format("%06d19800101%03d%d", math.floor(n / 1000) % 1000000, n % 1000, n % 10)
  return string.format('{"authority":"AUTHORITY","list":"court.dishonest_debtor",'
    .. '"subject":{"kind":"person","id":"%s","name":"Bench Person"},'
    .. '"legal_basis":{"case_number":"(2026) Bench %d"}}', id, n)
end
local function post(path, body)
  return wrk.format("POST", path, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
""".replace("AUTHORITY", AUTHORITY)

# wrk passes the token and a random base after `--`.
SCRIPT = (
    LISTING_LUA
    + """
init = function(args)
  token = args[1]
  base = tonumber(args[2])
end
request = function()
  return post("/v1/listings", listing())
end
"""
)


# Listings per POST /v1/listings/batch: the route's maximum (MAX_BATCH_LISTINGS), ~110 KB, inside its 256 KiB body
# limit. A client loading listings in bulk sends full batches: each request's fixed costs (HTTP, auth, two round
# trips to PostgreSQL, one log line) are spread over the most listings.
BATCH = MAX_BATCH_LISTINGS
# Batches in flight at once, two per worker: one written while the other is parsed keeps a worker's event loop busy.
# More only queue, and crowd out the outbox relay that shares the loop: with one worker and 4 in flight a full run
# accepted 5,150/s but delivered 4,566/s to Kafka; with 2, 5,010 and 5,096; with 3, 4,906 and 4,990.
BATCH_CONCURRENCY = 2 * COURT_WORKERS

# Sent by wrk, like every other HTTP figure: a Python client parsing the 201 answers cost about 40 µs of CPU per
# listing on the two cores the server runs on. Each request is BATCH listings of LISTING_LUA's; wrk passes the
# token, a random base and BATCH after `--`.
BATCH_SCRIPT = (
    LISTING_LUA
    + """
local size = 1
init = function(args)
  token = args[1]
  base = tonumber(args[2])
  size = tonumber(args[3])
end
request = function()
  local items = {}
  for i = 1, size do
    items[i] = listing()
  end
  return post("/v1/listings/batch", '{"listings":[' .. table.concat(items, ",") .. ']}')
end
"""
)


async def batch_load(court_url: str, token: str, seconds: float) -> wrk.WrkResult:
    """wrk POSTing batches of BATCH from BATCH_CONCURRENCY connections for `seconds`."""
    args = [token, str(random.randrange(10**9)), str(BATCH)]
    return await wrk.run(f"{court_url}/v1/listings/batch", seconds, BATCH_SCRIPT, args, connections=BATCH_CONCURRENCY)


@dataclass(frozen=True)
class Delivery:
    """What the outbox did with the rows written during the load: counted and timed by PostgreSQL's own clock."""

    rows: int
    seconds: float  # first row created -> last row sent
    drain_after_load_s: float  # load stopped -> last row sent

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


async def _court(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(settings.database_url, server_settings={"search_path": "court"})


async def _drained(conn: asyncpg.Connection, after_id: int, load_ended: float) -> Delivery:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while await conn.fetchval("SELECT count(*) FROM outbox WHERE id > $1 AND sent_at IS NULL", after_id):
        if time.monotonic() > deadline:
            raise TimeoutError(f"court outbox not drained {DRAIN_TIMEOUT_S:.0f}s after the load")
        await asyncio.sleep(0.2)
    row = await conn.fetchrow(
        "SELECT count(*) AS n, extract(epoch FROM max(sent_at) - min(created_at)) AS span,"
        " extract(epoch FROM max(sent_at)) AS last FROM outbox WHERE id > $1",
        after_id,
    )
    assert row is not None
    return Delivery(int(row["n"]), float(row["span"] or 0), max(float(row["last"] or 0) - load_ended, 0.0))


async def raw_producer_rate(settings: Settings, conn: asyncpg.Connection, after_id: int) -> tuple[int, float]:
    """Baseline: the same keys and values, read back from the outbox, sent by an aiokafka producer with the relay's
    settings to a topic of the bench's own (no database, no signing); records/s until every one is acknowledged."""
    rows = await conn.fetch("SELECT key, value FROM outbox WHERE id > $1 ORDER BY id", after_id)
    topic = f"bench.publisher.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, LISTING_TOPIC_PARTITIONS, 1)])
        producer = idempotent_producer(settings, max_batch_size=1 << 20)
        await producer.start()
        try:
            # One record first, so a new topic's leader election and metadata are not timed.
            await (await producer.send(topic, bytes(rows[0]["value"]), key=rows[0]["key"].encode()))
            started = time.perf_counter()
            futures = [await producer.send(topic, bytes(r["value"]), key=r["key"].encode()) for r in rows]
            await asyncio.gather(*futures)
            seconds = time.perf_counter() - started
        finally:
            await producer.stop()
    finally:
        await admin.delete_topics([topic])
        await admin.close()
    return len(rows), seconds


def backlog_requests(count: int, seed: int) -> list[IssueRequest]:
    """`count` valid court listings of unique adult persons, the same shape as the HTTP load's."""
    requests = []
    for i in range(count):
        n = seed + i
        person = f"{n // 1000 % 1_000_000:06d}19800101{n % 1000:03d}{n % 10}"
        body = {
            "authority": AUTHORITY,
            "list": "court.dishonest_debtor",
            "subject": {"kind": "person", "id": person, "name": "Bench Person"},
            "legal_basis": {"case_number": f"(2026) Backlog {n}"},
        }
        requests.append(IssueRequest.model_validate(body))
    return requests


async def fill_backlog(settings: Settings, rows: int) -> None:
    """Write `rows` listings through the court's own service code (what POSTs write, in chunks of FILL_CHUNK)."""
    publisher = service.Publisher(FAMILIES["court"], court_rules.rules_for, settings.subject_hash_key)
    pool = await create_pool(settings.database_url, "court", max_size=2)
    try:
        seed = random.randrange(10**9)
        for start in range(0, rows, FILL_CHUNK):
            now = service.utc_now()
            plans = [service.plan_issue(publisher, r, now) for r in backlog_requests(min(FILL_CHUNK, rows - start), seed + start)]
            await service.issue_planned(pool, publisher, plans, "bench:backlog", now)
    finally:
        await pool.close()


@dataclass(frozen=True)
class Drain:
    """A backlog the relay was released on: timed by PostgreSQL's clock from release to nothing pending."""

    rows: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


async def relay_drain(settings: Settings, conn: asyncpg.Connection, rows: int) -> tuple[Drain, int]:
    """Hold the court relay's turn, fill its outbox with `rows` listings, release it and time the drain.

    The clock starts at the release, not at the first row's creation: the rows are written before, while the relay
    may not send, so the span is the relay's alone. Returns the drain and the outbox id the backlog starts after."""
    await store.pause_relays(conn)
    try:
        after_id = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox"))
        progress(f"  relay capacity: writing {rows:,} listings to the court outbox while its relay is held")
        await fill_backlog(settings, rows)
        started = float(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())"))
    finally:
        await store.resume_relays(conn)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    pending = "SELECT extract(epoch FROM clock_timestamp()), EXISTS (SELECT 1 FROM outbox WHERE id > $1 AND sent_at IS NULL)"
    while True:
        at, left = await conn.fetchrow(pending, after_id)
        if not left:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"court outbox backlog not drained {DRAIN_TIMEOUT_S:.0f}s after the relay was released")
        await asyncio.sleep(DRAIN_POLL_S)
    sent = int(await conn.fetchval("SELECT count(*) FROM outbox WHERE id > $1", after_id))
    return Drain(sent, float(at) - started), after_id


async def measure(settings: Settings, court_url: str, seconds: float) -> list[Figure]:
    token = settings.publisher_tokens.get("court.*", "court-dev-token")
    conn = await _court(settings)
    try:
        progress(f"publisher bench: wrk GET /healthz of the court service for {seconds:.0f}s (baseline)")
        meter = Meter()
        healthz = await wrk.run(f"{court_url}/healthz", seconds)
        healthz_cpu = meter.stop()
        after_id = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox"))
        progress(f"  ours: wrk POST /v1/listings for {seconds:.0f}s, then until the outbox is drained")
        meter = Meter()
        accepted = await wrk.run(f"{court_url}/v1/listings", seconds, SCRIPT, [token, str(random.randrange(10**9))])
        if accepted.requests == accepted.non_2xx:
            raise RuntimeError(f"the court accepted none of {accepted.requests:,} listings; see its log")
        delivery = await _drained(conn, after_id, float(await conn.fetchval("SELECT extract(epoch FROM now())")))
        single_cpu = meter.stop()
        progress(f"  baseline: raw aiokafka producer sending the same {delivery.rows:,} values")
        raw_rows, raw_seconds = await raw_producer_rate(settings, conn, after_id)
        progress(f"  ours: POST /v1/listings/batch ({BATCH} a request, {BATCH_CONCURRENCY} at once) for {seconds:.0f}s")
        batch_after = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox"))
        meter = Meter()
        batches = await batch_load(court_url, token, seconds)
        batch_delivery = await _drained(conn, batch_after, float(await conn.fetchval("SELECT extract(epoch FROM now())")))
        batch_cpu = meter.stop()
        drain, backlog_after = await relay_drain(settings, conn, round(BACKLOG_ROWS_PER_HTTP_SECOND * seconds))
        progress(f"  baseline: raw aiokafka producer sending the same {drain.rows:,} backlog values")
        backlog_raw_rows, backlog_raw_seconds = await raw_producer_rate(settings, conn, backlog_after)
    finally:
        await conn.close()
    single_cost = MachineCost(single_cpu, delivery.rows)
    return [
        *figures(accepted, healthz, delivery, raw_rows / raw_seconds),
        relay_figure(drain, backlog_raw_rows / backlog_raw_seconds),
        batch_figure(batches, accepted, batch_delivery),
        cpu_figure(single_cost, MachineCost(healthz_cpu, healthz.requests), MachineCost(batch_cpu, batch_delivery.rows)),
    ]


def figures(accepted: wrk.WrkResult, healthz: wrk.WrkResult, delivery: Delivery, raw_rate: float) -> list[Figure]:
    clean = accepted.non_2xx == 0 and accepted.socket_errors == 0
    delivered_notes = {
        "rows": delivery.rows,
        "first_created_to_last_sent_s": round(delivery.seconds, 2),
        "drained_after_load_s": round(delivery.drain_after_load_s, 2),
    }
    return [
        Figure(
            NAMES[0],
            accepted.ok_rate,
            "listings/s",
            "GET /healthz, same server",
            healthz.rate,
            ">= 5,000/s",
            accepted.notes() | {"healthz_p99_ms": healthz.p99_ms},
            met=clean and accepted.ok_rate >= TARGET_RATE,
        ),
        Figure(
            NAMES[1],
            delivery.rate,
            "listings/s",
            "raw aiokafka producer, same values",
            raw_rate,
            ">= 5,000/s",
            delivered_notes,
            met=delivery.rate >= TARGET_RATE,
        ),
    ]


def relay_figure(drain: Drain, raw_rate: float) -> Figure:
    return Figure(
        NAMES[2],
        drain.rate,
        "listings/s",
        "raw aiokafka producer, same values",
        raw_rate,
        ">= 5,000/s",
        {"rows": drain.rows, "released_to_last_sent_s": round(drain.seconds, 2)},
        met=drain.rate >= TARGET_RATE,
    )


def batch_figure(batches: wrk.WrkResult, single: wrk.WrkResult, delivery: Delivery) -> Figure:
    """Listings/s accepted in batches of BATCH, against one-at-a-time POSTs of the same run; with their delivery."""
    notes = {
        **batches.notes(),
        "listings_per_request": BATCH,
        "delivered_rows": delivery.rows,
        "delivered_rate": round(delivery.rate, 1),
        "first_created_to_last_sent_s": round(delivery.seconds, 2),
        "drained_after_load_s": round(delivery.drain_after_load_s, 2),
    }
    accepted = batches.ok_rate * BATCH
    refused = batches.non_2xx + batches.socket_errors
    return Figure(
        NAMES[3],
        accepted,
        "listings/s",
        "POST /v1/listings one at a time, same run",
        single.ok_rate,
        ">= 5,000/s accepted and delivered",
        notes,
        met=refused == 0 and accepted >= TARGET_RATE and delivery.rate >= TARGET_RATE,
    )


@dataclass(frozen=True)
class MachineCost:
    """The whole machine's CPU (bench/machine.py) over one stretch of load, and the units of work it did."""

    usage: Usage
    units: int

    @property
    def us(self) -> float:
        return self.usage.us_per(self.units)


def cpu_figure(single: MachineCost, healthz: MachineCost, batched: MachineCost, cores: int | None = None) -> Figure:
    """What a listing POSTed on its own costs the machine, against an estimate of the least it could cost: one HTTP
    exchange of the same server (a /healthz request) plus what a listing costs when it comes in a full batch (where
    every per-request and per-statement cost is spread over 500). Both stretches include the outbox relay and Kafka
    until the last listing is sent. At every core busy, that least cost caps one a request at `ceiling` listings/s:
    an estimate (a POST carries a body, /healthz passes the framework's router, which the issue route skips), not a
    proof."""
    cores = cores or os.cpu_count() or 1
    least = healthz.us + batched.us
    notes = {
        "healthz_us_per_request": round(healthz.us, 1),
        "batch_us_per_listing": round(batched.us, 1),
        "busy_fraction_one_a_request": round(single.usage.busy_fraction, 3),
        "busy_fraction_healthz": round(healthz.usage.busy_fraction, 3),
        "busy_fraction_batches": round(batched.usage.busy_fraction, 3),
        "cores": cores,
        "ceiling_one_a_request_listings_per_s": round(cores * 1e6 / least, 1) if least > 0 else None,
    }
    baseline = "one /healthz request + one listing in a batch, same run"
    return Figure(NAMES[4], single.us, "us/listing", baseline, least, None, notes)
