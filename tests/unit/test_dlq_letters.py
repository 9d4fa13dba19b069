"""Dead letters read back by the ops tools: any bytes a producer could have sent become a Letter, never a crash."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from services.ops.dlq import Letter


def _letter_record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    headers = [("x-dlq-reason", b"invalid_schema"), ("x-dlq-detail", b"too deep"), ("x-dlq-source", b"court.listings.v1/2/7")]
    return ConsumerRecord(
        topic="airline.dlq.v1",
        partition=0,
        offset=3,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=headers,
    )


def test_a_letter_nested_past_the_json_parsers_depth_is_read_without_its_ids() -> None:
    # A record the consumer refused for its nesting is kept as a letter; reading the DLQ back must not fail on it.
    deep = b'{"listing": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    letter = Letter.of(_letter_record(deep))
    assert (letter.reason, letter.source, letter.listing_id, letter.event_id) == (
        "invalid_schema",
        "court.listings.v1/2/7",
        None,
        None,
    )
    assert letter.value == deep


def test_a_readable_letter_names_its_listing_and_event() -> None:
    letter = Letter.of(_letter_record(b'{"event_id": "e-1", "listing": {"listing_id": "court:1"}}'))
    assert (letter.listing_id, letter.event_id) == ("court:1", "e-1")
