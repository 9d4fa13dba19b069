"""HTTP request bodies of the publisher API (CONTRACT section 7); unknown fields are refused by name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.catalogue import Restriction
from schemas.events import AuthorityId, LegalBasis, RevocationReason, SubjectKind, UtcDatetime

# Names, ids and case numbers are stored and shown: control characters (NUL above all, which PostgreSQL cannot
# store) are refused with a 422 naming the field rather than failing in the database.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

# Terms add at most a few years to these times; keeping them far below year 9999 means the arithmetic cannot overflow.
RequestTime = Annotated[UtcDatetime, Field(lt=datetime(9000, 1, 1, tzinfo=UTC))]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubjectIn(Body):
    kind: SubjectKind
    id: str = Field(min_length=1, max_length=64, pattern=PRINTABLE)
    name: str = Field(min_length=1, max_length=128, pattern=PRINTABLE)


class RepresentativeIn(Body):
    id: str = Field(min_length=1, max_length=64, pattern=PRINTABLE)
    name: str = Field(min_length=1, max_length=128, pattern=PRINTABLE)


class LegalBasisIn(LegalBasis):
    """The wire's LegalBasis, stricter at the HTTP edge; a subclass, so a listing takes it as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    case_number: str = Field(min_length=1, max_length=128, pattern=PRINTABLE)
    decision_ref: str | None = Field(default=None, max_length=256, pattern=PRINTABLE)


class IssueRequest(Body):
    authority: AuthorityId
    list: str = Field(min_length=1, max_length=128, pattern=PRINTABLE)
    subject: SubjectIn
    restrictions: tuple[Restriction, ...] | None = Field(default=None, min_length=1, max_length=len(Restriction))
    scope: str | None = Field(default=None, max_length=16, pattern=PRINTABLE)
    legal_basis: LegalBasisIn
    effective_from: RequestTime | None = None
    term_days: int | None = Field(default=None, ge=1, le=3650)
    expires_at: RequestTime | None = None
    legal_representative: RepresentativeIn | None = None


class AmendRequest(Body):
    expires_at: RequestTime | None = None
    restrictions: tuple[Restriction, ...] | None = Field(default=None, min_length=1, max_length=len(Restriction))
    legal_basis: LegalBasisIn | None = None


class RevokeRequest(Body):
    reason: RevocationReason
    legal_basis: LegalBasisIn | None = None


# A batch is written in one statement, all or nothing; the batch route's body limit (app.py) fits this many.
MAX_BATCH_LISTINGS = 500


class IssueBatchRequest(Body):
    """Several POST /v1/listings bodies at once, each validated by exactly the same rules."""

    listings: list[IssueRequest] = Field(min_length=1, max_length=MAX_BATCH_LISTINGS)
