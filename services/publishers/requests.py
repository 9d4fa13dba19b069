"""HTTP request bodies of the publisher API (CONTRACT section 7); unknown fields are refused by name."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.catalogue import Restriction
from schemas.events import AuthorityId, LegalBasis, RevocationReason, SubjectKind, UtcDatetime


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubjectIn(Body):
    kind: SubjectKind
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)


class RepresentativeIn(Body):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)


class IssueRequest(Body):
    authority: AuthorityId
    list: str = Field(min_length=1, max_length=128)
    subject: SubjectIn
    restrictions: tuple[Restriction, ...] | None = Field(default=None, min_length=1, max_length=len(Restriction))
    scope: str | None = Field(default=None, max_length=16)
    legal_basis: LegalBasis
    effective_from: UtcDatetime | None = None
    term_days: int | None = Field(default=None, ge=1, le=3650)
    expires_at: UtcDatetime | None = None
    legal_representative: RepresentativeIn | None = None


class AmendRequest(Body):
    expires_at: UtcDatetime | None = None
    restrictions: tuple[Restriction, ...] | None = Field(default=None, min_length=1, max_length=len(Restriction))
    legal_basis: LegalBasis | None = None


class RevokeRequest(Body):
    reason: RevocationReason
    legal_basis: LegalBasis | None = None
