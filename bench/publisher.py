"""Publisher: listings/s accepted by the real court service over HTTP (wrk) and delivered through its outbox to Kafka;
baselines: the same server's /healthz rate, and a raw aiokafka producer sending the same values, same run."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import wrk
from bench.harness import Figure, progress
from schemas.catalogue import LISTING_TOPIC_PARTITIONS
from services.kit.kafka import client_options, idempotent_producer
from services.kit.settings import Settings

NAMES = ("publisher accepted rate (POST /v1/listings, 201)", "publisher delivered rate (outbox -> Kafka)")
AUTHORITY = "court.bench-publisher"
TARGET_RATE = 5000
DRAIN_TIMEOUT_S = 300.0

# A valid, unique adult person per request: region digits and sequence from a counter, born 1980-01-01.
SCRIPT = """
local counter = 0
local base = 0
local token = ""
init = function(args)
  token = args[1]
  base = tonumber(args[2])
end
request = function()
  counter = counter + 1
  local n = base + counter
  local id = string.format("%06d19800101%03d%d", math.floor(n / 1000) % 1000000, n % 1000, n % 10)
  local body = string.format('{"authority":"AUTHORITY","list":"court.dishonest_debtor",'
    .. '"subject":{"kind":"person","id":"%s","name":"Bench Person"},'
    .. '"legal_basis":{"case_number":"(2026) Bench %d"}}', id, n)
  return wrk.format("POST", "/v1/listings",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
""".replace("AUTHORITY", AUTHORITY)


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


async def measure(settings: Settings, court_url: str, seconds: float) -> list[Figure]:
    token = settings.publisher_tokens.get("court.*", "court-dev-token")
    conn = await _court(settings)
    try:
        progress(f"publisher bench: wrk GET /healthz of the court service for {seconds:.0f}s (baseline)")
        healthz = await wrk.run(f"{court_url}/healthz", seconds)
        after_id = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox"))
        progress(f"  ours: wrk POST /v1/listings for {seconds:.0f}s, then until the outbox is drained")
        accepted = await wrk.run(f"{court_url}/v1/listings", seconds, SCRIPT, [token, str(random.randrange(10**9))])
        if accepted.requests == accepted.non_2xx:
            raise RuntimeError(f"the court accepted none of {accepted.requests:,} listings; see its log")
        delivery = await _drained(conn, after_id, float(await conn.fetchval("SELECT extract(epoch FROM now())")))
        progress(f"  baseline: raw aiokafka producer sending the same {delivery.rows:,} values")
        raw_rows, raw_seconds = await raw_producer_rate(settings, conn, after_id)
    finally:
        await conn.close()
    return figures(accepted, healthz, delivery, raw_rows / raw_seconds)


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
