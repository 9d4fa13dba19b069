"""The check API of CONTRACT section 5: may this subject do this action, here, at this time?"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.catalogue import REGION
from schemas.events import SubjectKind, UtcDatetime
from services.consumers import store
from services.consumers.policy import ConsumerPolicy
from services.kit.subjects import id_hash


class SubjectRef(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    kind: SubjectKind
    id: str = Field(min_length=1, max_length=64)


class CheckRequest(BaseModel):
    # Unknown fields are ignored: admissions, for one, never looks at an applicant field.
    model_config = ConfigDict(extra="ignore", frozen=True)
    subject: SubjectRef
    action: str = Field(min_length=1, max_length=64)
    seat_class: str | None = Field(default=None, max_length=32)
    region: str | None = Field(default=None, max_length=16, pattern=REGION.pattern)
    at: UtcDatetime | None = None


class Blocking(BaseModel):
    listing_id: str
    list_id: str = Field(alias="list")  # `list` on the wire; another name here, where `list[...]` is a type
    authority: str
    restrictions: list[str]
    case_number: str
    expires_at: str


class CheckAnswer(BaseModel):
    """The answer of CONTRACT section 5 (documented in OpenAPI; the route writes it as plain JSON)."""

    allowed: bool
    action: str
    blocking: list[Blocking]
    checked_at: str


class CheckRefused(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def codes_for(policy: ConsumerPolicy, request: CheckRequest) -> list[str]:
    action = policy.actions.get(request.action)
    if action is None:
        raise CheckRefused("action", f"{policy.name} does not handle {request.action!r}; it handles {', '.join(policy.actions)}")
    try:
        return sorted(r.value for r in action.restrictions(request.seat_class))
    except KeyError:
        raise CheckRefused("seat_class", f"{request.action} needs seat_class, one of {', '.join(action.by_seat_class)}") from None


async def check(pool: Any, policy: ConsumerPolicy, hash_key: bytes, request: CheckRequest) -> dict[str, Any]:
    codes = codes_for(policy, request)
    at = request.at or datetime.now(UTC)
    subject_hash = id_hash(hash_key, request.subject.kind.value, request.subject.id)
    found = await store.blocking(pool, subject_hash, request.subject.kind.value, codes, at, request.region)
    return {
        "allowed": not found,
        "action": request.action,
        "blocking": [
            {
                "listing_id": b.listing_id,
                "list": b.list_id,
                "authority": b.authority,
                "restrictions": b.restrictions,
                "case_number": b.case_number,
                "expires_at": b.expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            }
            for b in found
        ],
        "checked_at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
