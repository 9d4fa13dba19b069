"""Admission of one Kafka record into a consumer (CONTRACT sections 4 and 6): verified event, or a DLQ reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.catalogue import may_publish
from schemas.events import DlqReason, EventType, Header, ListingEvent
from services.kit.signing import Keyring, VerificationError

MAX_VALUE_BYTES = 256 * 1024
# Looked up once here rather than on the enums for every record admitted.
_EVENT_TYPE_HEADER = str(Header.EVENT_TYPE)
_EVENT_TYPE_BYTES = {event_type: event_type.value.encode() for event_type in EventType}
PUBLISHING_HELD = 4096  # (authority, list) pairs remembered; hostile records must not grow it without bound
_publishing: dict[tuple[str, str], bool] = {}
# `ListingEvent.model_validate_json` without its Python wrapper around the same core validator.
_validate_json = ListingEvent.__pydantic_validator__.validate_json


@dataclass(frozen=True)
class Rejection(Exception):
    reason: DlqReason
    detail: str


def headers_of(raw: Sequence[tuple[str, bytes]] | None) -> dict[str, bytes]:
    """Record headers as a dict; the first value of a repeated header wins."""
    if not raw:
        return {}
    found: dict[str, bytes] = dict(reversed(raw))  # built backwards, so the first of a repeated name is kept
    if None in found.values():
        found = {name: value if value is not None else b"" for name, value in found.items()}
    return found


def admit(
    key: bytes | None,
    value: bytes | None,
    headers: Mapping[str, bytes],
    keyring: Keyring,
    signature: str | VerificationError | None = None,
) -> ListingEvent:
    """Every check a record must pass before it may touch a copy; raises Rejection with the contract's reason.

    `signature` is what `keyring.verify_batch` already decided for this record (authority or error), if anything."""
    if not value:
        raise Rejection(DlqReason.INVALID_JSON, "empty value")
    if len(value) > MAX_VALUE_BYTES:
        raise Rejection(DlqReason.INVALID_SCHEMA, f"value of {len(value)} bytes is over {MAX_VALUE_BYTES}")
    # One strict pass parses and validates (UTF-8 only, no type coercion); the signature is checked
    # before a schema error is reported, so a forged record is named as forged.
    event: ListingEvent | None = None
    schema_error: Rejection | None = None
    try:
        event = _validate_json(value, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            # Nesting past the parser's limit is JSON, just not ours: refuse it before any signature work.
            reason = DlqReason.INVALID_SCHEMA if "recursion limit" in first["msg"] else DlqReason.INVALID_JSON
            raise Rejection(reason, f"not acceptable UTF-8 JSON: {first['msg']}") from exc
        where = ".".join(str(p) for p in first["loc"]) or "value"
        schema_error = Rejection(DlqReason.INVALID_SCHEMA, f"{where}: {first['msg']} ({exc.error_count()} errors)")
    try:
        if isinstance(signature, VerificationError):
            raise signature
        signed_for = signature if signature is not None else keyring.verify(value, headers)
    except VerificationError as exc:
        raise Rejection(DlqReason(exc.reason), exc.detail) from exc
    if schema_error is not None or event is None:
        raise schema_error or Rejection(DlqReason.INVALID_SCHEMA, "no event")
    listing = event.listing
    if listing.authority != signed_for:
        raise Rejection(
            DlqReason.UNAUTHORIZED_AUTHORITY, f"body authority {listing.authority} differs from x-authority {signed_for}"
        )
    if not _may_publish(listing.authority, listing.list):
        raise Rejection(DlqReason.UNAUTHORIZED_AUTHORITY, f"{listing.authority} may not publish {listing.list}")
    record_key = (key or b"").decode("utf-8", errors="replace")
    if record_key != listing.listing_id:
        raise Rejection(DlqReason.KEY_MISMATCH, f"record key {record_key!r} is not listing_id {listing.listing_id!r}")
    event_type = headers.get(_EVENT_TYPE_HEADER)
    if event_type is not None and event_type != _EVENT_TYPE_BYTES[event.event_type]:
        raise Rejection(DlqReason.INVALID_SCHEMA, "event-type header differs from event_type")
    return event


def _may_publish(authority: str, list_id: str) -> bool:
    """`may_publish`, remembered: a pure function of two texts, asked for every record with few distinct pairs."""
    allowed = _publishing.get((authority, list_id))
    if allowed is None:
        if len(_publishing) >= PUBLISHING_HELD:
            _publishing.clear()
        allowed = _publishing[(authority, list_id)] = may_publish(authority, list_id)
    return allowed
