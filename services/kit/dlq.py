"""The dead-letter topic of CONTRACT section 6: original key, value and headers, plus the reason."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer, ConsumerRecord

from schemas.catalogue import dlq_topic
from schemas.events import Header
from services.kit import metrics
from services.kit.intake import Rejection

log = logging.getLogger(__name__)
_DLQ_HEADERS = {Header.DLQ_REASON.value, Header.DLQ_DETAIL.value, Header.DLQ_SOURCE.value}


def dlq_headers(record: ConsumerRecord[bytes, bytes], rejection: Rejection) -> list[tuple[str, bytes]]:
    original = [(k, v) for k, v in (record.headers or ()) if k not in _DLQ_HEADERS]
    return [
        *original,
        (Header.DLQ_REASON.value, rejection.reason.value.encode()),
        (Header.DLQ_DETAIL.value, rejection.detail[:1000].encode()),
        (Header.DLQ_SOURCE.value, f"{record.topic}/{record.partition}/{record.offset}".encode()),
    ]


async def dead_letter(
    producer: AIOKafkaProducer, consumer: str, rejected: Sequence[tuple[ConsumerRecord[bytes, bytes], Rejection]]
) -> None:
    """Write every rejected record to the consumer's DLQ and wait until Kafka has them all."""
    sends = []
    for record, rejection in rejected:
        log.warning(
            "dead-lettered %s/%s/%s: %s",
            record.topic,
            record.partition,
            record.offset,
            rejection.reason.value,
            extra={
                "reason": rejection.reason.value,
                "detail": rejection.detail,
                "listing_id": (record.key or b"").decode("utf-8", errors="replace"),
                "event_id": _event_id(record.value),
            },
        )
        sends.append(
            await producer.send(dlq_topic(consumer), record.value, key=record.key, headers=dlq_headers(record, rejection))
        )
    await asyncio.gather(*sends)
    for _, rejection in rejected:  # counted once Kafka has them: a failed send is retried, not counted twice
        metrics.DEAD_LETTERED.labels(consumer, rejection.reason.value).inc()


def _event_id(value: bytes | None) -> str | None:
    """The event_id of a rejected value when it is readable at all; dead letters are often not."""
    try:
        document = json.loads(value or b"")
    except (ValueError, RecursionError):  # deeply nested hostile JSON must not stop the dead-lettering
        return None
    found = document.get("event_id") if isinstance(document, dict) else None
    return found if isinstance(found, str) else None
