"""A consumer service: FastStream batch subscriber keeping the copy, and the FastAPI check API reading it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from itertools import chain
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber
from pydantic import ValidationError

from schemas.catalogue import LISTING_TOPICS
from services.consumers import retention
from services.consumers.checks import CheckAnswer, CheckConnections, CheckRefused, CheckRequest, check
from services.consumers.copy import CopyKeeper
from services.consumers.pipeline import APPLY_CONNECTIONS, HAND_OVER_SECONDS, Pipeline
from services.consumers.policy import ConsumerPolicy
from services.kit import logs, metrics
from services.kit.db import HeldConnection, create_pool, reachable
from services.kit.heap import settle_heap
from services.kit.http import FastPathApp, install_common, unprocessable
from services.kit.kafka import broker as kafka_broker
from services.kit.kafka import existing, idempotent_producer
from services.kit.settings import Settings
from services.kit.signing import Keyring

log = logging.getLogger(__name__)
BATCH_RECORDS = 2000
POLL_MS = 100  # an idle subscriber wakes this often; a record arriving meanwhile ends the poll at once
RETRY_SECONDS = 1.0
# A member learns of a rebalance at its next heartbeat: with several workers (`--workers N`) or instances, a third of
# aiokafka's 3 s default lets a joining worker take its partitions within about a second instead of three.
HEARTBEAT_MS = 1000
# How long the group waits for a member to rejoin once a rebalance began. aiokafka's default is the session timeout
# (10 s), which a hand-over that waits its whole HAND_OVER_SECONDS would overrun: the member would be dropped from
# the group and its commit refused. A member that dies meanwhile still leaves at its session timeout.
REBALANCE_TIMEOUT_MS = int(HAND_OVER_SECONDS * 1000) + 20_000


def _safe_headers(record: ConsumerRecord[bytes, bytes]) -> ConsumerRecord[bytes, bytes]:
    headers = [(k, v if _is_utf8(v) else b"") for k, v in record.headers or ()]
    return dataclasses.replace(record, headers=headers)


def _is_utf8(value: bytes | None) -> bool:
    try:
        (value or b"").decode()
    except UnicodeDecodeError:
        return False
    return True


async def tolerant_parser(records: tuple[ConsumerRecord[bytes, bytes], ...], original: Callable[..., Any]) -> Any:
    """The batch message FastStream's parser builds, from the first record only: it would decode every header of
    every record as UTF-8, which costs microseconds a record we never use (the copy keeper reads the raw records)
    and lets a hostile header stop the batch instead of reaching our DLQ."""
    first = records[:1]
    try:
        message = await original(first)
    except UnicodeDecodeError:
        message = await original(tuple(_safe_headers(r) for r in first))
    message.raw_message = records
    return message


@dataclasses.dataclass(frozen=True)
class FetchedBatch:
    """What the subscriber hands the pipeline: the raw records of one poll and the consumer that fetched them."""

    consumer: Any
    records: tuple[ConsumerRecord[bytes, bytes], ...]


async def raw_decoder(message: Any, _original: Callable[..., Any]) -> FetchedBatch:
    """The body is the raw batch: the copy keeper reads raw records, nothing is decoded before it admits them. The
    handler takes it as its body rather than the message from FastStream's context, which FastStream resolves on a
    worker thread, a thread hop for every batch."""
    return FetchedBatch(message.consumer, message.raw_message)


class PromptBatchSubscriber(BatchSubscriber):
    """FastStream's batch subscriber without its pause after an empty poll. getmany already waits up to the poll
    timeout and returns as soon as a record is fetched; FastStream (0.7.8) then sleeps the timeout again, so a record
    arriving after a quiet spell waited up to that long before the pipeline saw it."""

    __slots__ = ()

    async def get_msg(self, consumer: Any) -> tuple[ConsumerRecord[bytes, bytes], ...]:
        fetched = await consumer.getmany(timeout_ms=self.batch_timeout_ms, max_records=self.max_records)
        return tuple(chain.from_iterable(fetched.values()))


class HandOver(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    """Before a rebalance takes partitions, the pipeline commits what it applied of them (Pipeline.hand_over)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.pipeline.hand_over(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


def build_broker(
    policy: ConsumerPolicy,
    settings: Settings,
    keeper: Callable[[], CopyKeeper | None],
    topics: tuple[str, ...] = LISTING_TOPICS,
    group_id: str | None = None,
    pipeline: Pipeline | None = None,
) -> KafkaBroker:
    """The consumer's subscriber; topics and group default to the contract's (benchmarks and rebuilds pass others)."""
    broker = kafka_broker(settings, client_id=f"blacklist-sync-{policy.name}")
    batches = pipeline or Pipeline(policy.name, keeper, group_records=BATCH_RECORDS)

    subscriber = broker.subscriber(
        *existing(*topics),
        group_id=group_id or policy.name,
        batch=True,
        max_records=BATCH_RECORDS,
        batch_timeout_ms=POLL_MS,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        parser=tolerant_parser,
        decoder=raw_decoder,
        max_poll_interval_ms=300_000,
        heartbeat_interval_ms=HEARTBEAT_MS,
        rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
        listener=HandOver(batches),
    )
    subscriber.__class__ = PromptBatchSubscriber  # same slots: only get_msg differs

    @subscriber
    async def on_batch(body: Any) -> None:  # Any: a typed body would be validated field by field for nothing
        fetched: FetchedBatch = body
        await batches.handle(fetched.consumer, fetched.records)

    return broker


def create_app(policy: ConsumerPolicy, settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env(service=policy.name)
    logs.configure(policy.name)
    state: dict[str, Any] = {}
    batches = Pipeline(policy.name, lambda: state.get("keeper"), group_records=BATCH_RECORDS)
    broker = build_broker(policy, settings, lambda: state.get("keeper"), pipeline=batches)

    async def start_broker() -> None:
        delay = 0.5
        while True:
            try:
                await broker.start()
                state["broker_started"] = True
                log.info("consuming %s as group %s", ", ".join(LISTING_TOPICS), policy.name)
                return
            except (KafkaError, OSError) as exc:
                log.warning("Kafka not reachable (%s); retrying in %.1fs", exc, delay)
                with contextlib.suppress(Exception):
                    await broker.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        keyring = Keyring.load(settings.keyring_path)
        # Applies, sweeps and probes leave no session state: no reset round trip after each batch.
        pool = await create_pool(settings.database_url, policy.name, max_size=10, reset_sessions=False)
        # The pipeline's own connections commit asynchronously; it settles them on the main pool (pipeline.py).
        apply_pool = await create_pool(
            settings.database_url, policy.name, max_size=APPLY_CONNECTIONS + 1, reset_sessions=False, synchronous_commit=False
        )
        check_lane = await CheckConnections.open(settings.database_url, policy.name)
        dlq = idempotent_producer(settings)
        applying = HeldConnection(apply_pool, keep=APPLY_CONNECTIONS)  # a connection kept per transaction in flight
        keeper = CopyKeeper(policy, applying, keyring, dlq, settling=pool)
        state.update(pool=pool, checks=check_lane, keeper=keeper)
        settle_heap()  # before the first fetch: a full collection later would stall the pipeline
        starter = asyncio.create_task(_start_all(dlq, start_broker))
        sweeper = asyncio.create_task(retention.sweep_forever(pool, policy.name, retention.retention_from_env()))
        try:
            yield
        finally:
            for task in (starter, sweeper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await batches.close()  # commit what is applied; a batch arriving now is rewound, not committed
            await broker.stop()
            await dlq.stop()
            await applying.close()
            await apply_pool.close()
            await check_lane.close()
            await pool.close()

    app = FastPathApp(title=f"Blacklist Sync {policy.name} consumer", version="1", lifespan=lifespan)

    async def ready() -> dict[str, bool]:
        database = await reachable(state.get("pool"))
        kafka = bool(state.get("broker_started")) and await broker.ping(timeout=2)
        return {"database": database, "kafka": kafka}

    checked = {allowed: metrics.CHECKS.labels(policy.name, str(allowed).lower()) for allowed in (True, False)}

    async def answer(request: CheckRequest) -> Response:
        started = time.perf_counter()
        found = await check(state["checks"], policy, settings.subject_hash_key, request)
        checked[found["allowed"]].observe(time.perf_counter() - started)
        # Plain JSON bytes: the answer is built of JSON types already, FastAPI's generic encoder would only slow it.
        return Response(orjson.dumps(found), media_type="application/json")

    async def fast_check(body: bytes) -> Response | None:
        """POST /v1/checks without FastAPI's per-request machinery; anything refused goes on to the route below."""
        try:
            request = CheckRequest.model_validate_json(body)
        except ValidationError:
            return None  # the route refuses it again, with the 422 body naming the field it always sent
        try:
            return await answer(request)
        except CheckRefused:
            return None  # refused before any query: the route's handler words the 422
        except COPY_UNAVAILABLE as exc:
            return unavailable_answer(exc)

    install_common(app, ready, fast_posts={"/v1/checks": fast_check})

    @app.exception_handler(CheckRefused)
    async def refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CheckRefused)
        return unprocessable(exc.field, f"{exc.field}: {exc.message}")

    for unavailable in COPY_UNAVAILABLE:
        app.add_exception_handler(unavailable, copy_unavailable)

    # Declared for OpenAPI and for the bodies the fast path hands on (malformed, refused, not plain JSON).
    @app.post("/v1/checks", response_model=CheckAnswer)
    async def checks(body: CheckRequest) -> Response:
        return await answer(body)

    app.state.broker = broker
    app.state.service = state
    return app


# The copy's database is down or going down: the answer is unknown, which a merchant must not read as allowed.
COPY_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


async def copy_unavailable(_: Request, exc: Exception) -> JSONResponse:
    return unavailable_answer(exc)


def unavailable_answer(exc: Exception) -> JSONResponse:
    """503 with a reason and Retry-After, like /readyz, instead of a bare 500."""
    return JSONResponse(
        status_code=503,
        content={"error": f"the copy is unavailable ({type(exc).__name__}); retry shortly", "field": None},
        headers={"Retry-After": "1"},
    )


async def _start_all(dlq: AIOKafkaProducer, start_broker: Callable[[], Any]) -> None:
    delay = 0.5
    while True:
        try:
            await dlq.start()
            break
        except (KafkaError, OSError) as exc:
            log.warning("Kafka not reachable for the DLQ producer (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
    await start_broker()
