"""Wire models of CONTRACT section 4: the listing event, its listing and subject, its headers."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.catalogue import AUTHORITY_ID, LIST_ID, NATIONAL, REGION, Restriction, may_publish

SCHEMA_VERSION = 1


# Aware datetimes only (RFC 3339 with an offset); validated in pydantic-core, no Python call per field. The bounds keep
# every time representable in UTC: 0001-01-01T00:00:00+01:00 is valid RFC 3339 but before year 1 in UTC, which
# PostgreSQL's driver and astimezone() cannot convert, so such a record would fail every apply instead of being refused.
UtcDatetime = Annotated[AwareDatetime, Field(gt=datetime(1, 1, 2, tzinfo=UTC), lt=datetime(9999, 12, 30, tzinfo=UTC))]


def rfc3339(moment: datetime, timespec: str = "auto") -> str:
    """A moment as the contract writes times: RFC 3339 in UTC, with a Z (2026-11-27T04:43:40.123456Z)."""
    # Most moments are UTC already (now(), a timestamptz from the copy): astimezone would only copy them.
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return utc.isoformat(timespec=timespec).replace("+00:00", "Z")


class EventType(StrEnum):
    ISSUED = "listing.issued"
    AMENDED = "listing.amended"
    REVOKED = "listing.revoked"


class Status(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class RevocationReason(StrEnum):
    PAID = "paid"
    SETTLED = "settled"
    ERROR = "error"
    APPEAL_UPHELD = "appeal_upheld"
    OTHER = "other"


class SubjectKind(StrEnum):
    PERSON = "person"
    ORGANIZATION = "organization"


class WireModel(BaseModel):
    # Forward compatible: unknown fields are ignored, known ones are strict and frozen.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Subject(WireModel):
    kind: SubjectKind
    id_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    id_masked: str = Field(min_length=1, max_length=64)
    display_name: str = Field(min_length=1, max_length=128)


class LegalBasis(WireModel):
    case_number: str = Field(min_length=1, max_length=128)
    decision_ref: str | None = Field(default=None, max_length=256)


class Revocation(WireModel):
    reason: RevocationReason
    at: UtcDatetime


# Patterns checked in pydantic-core: at replay speed a Python validator per field would dominate the cost.
AuthorityId = Annotated[str, Field(max_length=64, pattern=AUTHORITY_ID.pattern)]
ListId = Annotated[str, Field(max_length=128, pattern=LIST_ID.pattern)]
Scope = Annotated[str, Field(max_length=16, pattern=f"^({NATIONAL}|{REGION.pattern.strip('^$')})$")]


class Listing(WireModel):
    """The full state of one listing after a change (event-carried state)."""

    listing_id: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1, le=2**31 - 1)
    list: ListId
    authority: AuthorityId
    status: Status
    subject: Subject
    restrictions: tuple[Restriction, ...] = Field(min_length=1, max_length=len(Restriction))
    scope: Scope = NATIONAL
    legal_basis: LegalBasis
    effective_from: UtcDatetime
    expires_at: UtcDatetime
    revocation: Revocation | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Listing:
        basis, subject = self.legal_basis, self.subject
        # One search over the stored texts joined (this runs for every record a consumer admits).
        if "\x00" in f"{self.listing_id}{subject.id_masked}{subject.display_name}{basis.case_number}{basis.decision_ref or ''}":
            raise ValueError("text fields must not contain NUL characters (PostgreSQL text cannot hold them)")
        if self.expires_at <= self.effective_from:
            raise ValueError("expires_at must be after effective_from")
        if (self.status is _REVOKED) != (self.revocation is not None):
            raise ValueError("a revoked listing carries a revocation, an active one does not")
        # By identity: members are singletons, and hashing one is a Python call (5% of a publisher's CPU by value).
        if len(set(map(id, self.restrictions))) != len(self.restrictions):
            raise ValueError("restrictions must not repeat")
        return self

    @property
    def authorized(self) -> bool:
        """Whether the body's authority may publish the body's list (section 1)."""
        return may_publish(self.authority, self.list)

    def is_in_force(self, at: datetime) -> bool:
        return self.status is Status.ACTIVE and self.effective_from <= at < self.expires_at


class ListingEvent(WireModel):
    event_id: UUID
    event_type: EventType
    schema_version: Literal[1]
    occurred_at: UtcDatetime
    listing: Listing

    @field_validator("schema_version", mode="before")
    @classmethod
    def _not_a_bool(cls, value: object) -> object:
        if isinstance(value, bool):  # True == 1 in Python; on the wire it is not a version
            raise ValueError("schema_version is an integer")
        return value

    @model_validator(mode="after")
    def _type_matches_state(self) -> ListingEvent:
        event_type, listing = self.event_type, self.listing
        if event_type is _REVOKED_EVENT and listing.status is not _REVOKED:
            raise ValueError("listing.revoked must carry a revoked listing")
        if event_type is not _REVOKED_EVENT and listing.status is _REVOKED:
            raise ValueError("a revoked listing travels only as listing.revoked")
        if event_type is _ISSUED and listing.version != 1:
            raise ValueError("listing.issued carries version 1")
        return self


# Members bound once for the validators below, which run for every record a consumer admits: reading a member off
# its enum class costs more than the comparison it is read for.
_REVOKED = Status.REVOKED
_ISSUED, _REVOKED_EVENT = EventType.ISSUED, EventType.REVOKED


class Header(StrEnum):
    """Record headers of section 4 and the dead-letter headers of section 6."""

    CONTENT_TYPE = "content-type"
    EVENT_TYPE = "event-type"
    AUTHORITY = "x-authority"
    KEY_ID = "x-key-id"
    MERKLE_SIZE = "x-merkle-size"
    MERKLE_INDEX = "x-merkle-index"
    MERKLE_PATH = "x-merkle-path"
    SIGNATURE = "x-signature"
    DLQ_REASON = "x-dlq-reason"
    DLQ_DETAIL = "x-dlq-detail"
    DLQ_SOURCE = "x-dlq-source"


class DlqReason(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_SCHEMA = "invalid_schema"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    UNAUTHORIZED_AUTHORITY = "unauthorized_authority"
    KEY_MISMATCH = "key_mismatch"


def to_wire(event: ListingEvent) -> bytes:
    """The exact value bytes a publisher signs and sends."""
    return event.model_dump_json(exclude_none=False).encode()
