"""Admission of one Kafka record into a consumer (CONTRACT sections 4 and 6): verified event, or a DLQ reason."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.catalogue import may_publish
from schemas.events import DlqReason, Header, ListingEvent
from services.kit.signing import Keyring, VerificationError

MAX_VALUE_BYTES = 256 * 1024
MAX_JSON_DEPTH = 16


@dataclass(frozen=True)
class Rejection(Exception):
    reason: DlqReason
    detail: str


def headers_of(raw: Sequence[tuple[str, bytes]] | None) -> dict[str, bytes]:
    """Record headers as a dict; the first value of a repeated header wins."""
    found: dict[str, bytes] = {}
    for name, value in raw or ():
        found.setdefault(name, value if value is not None else b"")
    return found


def _depth(text: bytes) -> int:
    deepest = level = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            level += 1
            deepest = max(deepest, level)
        elif byte in (0x7D, 0x5D):
            level -= 1
    return deepest


def admit(key: bytes | None, value: bytes | None, headers: Mapping[str, bytes], keyring: Keyring) -> ListingEvent:
    """Every check a record must pass before it may touch a copy; raises Rejection with the contract's reason."""
    if not value:
        raise Rejection(DlqReason.INVALID_JSON, "empty value")
    if len(value) > MAX_VALUE_BYTES:
        raise Rejection(DlqReason.INVALID_SCHEMA, f"value of {len(value)} bytes is over {MAX_VALUE_BYTES}")
    if _depth(value) > MAX_JSON_DEPTH:
        raise Rejection(DlqReason.INVALID_SCHEMA, f"JSON nested deeper than {MAX_JSON_DEPTH}")
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejection(DlqReason.INVALID_JSON, f"not UTF-8 JSON: {exc}") from exc
    try:
        signed_for = keyring.verify(value, headers)
    except VerificationError as exc:
        raise Rejection(DlqReason(exc.reason), exc.detail) from exc
    try:
        event = ListingEvent.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "value"
        raise Rejection(DlqReason.INVALID_SCHEMA, f"{where}: {first['msg']} ({exc.error_count()} errors)") from exc
    listing = event.listing
    if listing.authority != signed_for:
        raise Rejection(
            DlqReason.UNAUTHORIZED_AUTHORITY, f"body authority {listing.authority} differs from x-authority {signed_for}"
        )
    if not may_publish(listing.authority, listing.list):
        raise Rejection(DlqReason.UNAUTHORIZED_AUTHORITY, f"{listing.authority} may not publish {listing.list}")
    record_key = (key or b"").decode("utf-8", errors="replace")
    if record_key != listing.listing_id:
        raise Rejection(DlqReason.KEY_MISMATCH, f"record key {record_key!r} is not listing_id {listing.listing_id!r}")
    event_type = headers.get(Header.EVENT_TYPE)
    if event_type is not None and event_type != event.event_type.value.encode():
        raise Rejection(DlqReason.INVALID_SCHEMA, "event-type header differs from event_type")
    return event
