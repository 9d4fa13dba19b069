"""The publisher HTTP API of CONTRACT section 7, shared by the court, transport and city-pilot services."""

# No `from __future__ import annotations` here: FastAPI resolves the route signatures, local `Auth` included.

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from schemas.catalogue import FAMILIES, authority_matches
from schemas.events import Listing
from services.kit import logs, metrics
from services.kit.db import create_pool, reachable
from services.kit.http import install_common, unprocessable
from services.kit.settings import Settings
from services.kit.signing import SigningKey
from services.publishers import service, store
from services.publishers.relay import OutboxRelay, Signer
from services.publishers.requests import PRINTABLE, AmendRequest, IssueBatchRequest, IssueRequest, RevokeRequest
from services.publishers.rules import ListRules, RuleViolation

log = logging.getLogger(__name__)
bearer = HTTPBearer(auto_error=False)
PAGE_SIZE = 100
# A listing id in a path is looked up in PostgreSQL, which cannot hold NUL: refuse such ids with a 422 first.
ListingIdPath = Annotated[str, Path(min_length=1, max_length=200, pattern=PRINTABLE)]


@dataclass(frozen=True)
class Caller:
    """The holder of a bearer token: the authority pattern the token was issued for."""

    pattern: str

    def acts_for(self, authority: str) -> bool:
        return authority_matches(self.pattern, authority)

    @property
    def actor(self) -> str:
        return f"token:{self.pattern}"


def issued_json(listing: Listing, related: list[Listing]) -> bytes:
    """The body POST /v1/listings answers with, as JSON bytes."""
    others = b",".join(r.model_dump_json().encode() for r in related)
    return b'{"listing":' + listing.model_dump_json().encode() + b',"related_listings":[' + others + b"]}"


def load_signer(settings: Settings, family_prefix: str) -> Signer:
    """Private keys of this family found in the keys directory, with the authorities the keyring gives them."""
    if not settings.keyring_path.exists():
        raise FileNotFoundError(f"keyring {settings.keyring_path} is missing: run `blacklist-sync up` or set AUTHORITY_KEYRING")
    entries = json.loads(settings.keyring_path.read_text())["keys"]
    keys: dict[str, tuple[SigningKey, tuple[str, ...]]] = {}
    for entry in entries:
        patterns = tuple(entry["authorities"])
        if not any(p.startswith(family_prefix) for p in patterns):
            continue
        path = settings.keys_dir / f"{entry['key_id']}.pem"
        if path.exists():
            keys[entry["key_id"]] = (SigningKey.from_pem(entry["key_id"], path.read_bytes()), patterns)
    if not keys:
        raise RuntimeError(f"no private key for {family_prefix}* in {settings.keys_dir}: run `blacklist-sync up`")
    return Signer(keys)


def create_app(family_name: str, rules_for: Callable[[str], ListRules | None], settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env(service=FAMILIES[family_name].service)
    family = FAMILIES[family_name]
    logs.configure(family.service)
    publisher = service.Publisher(family, rules_for, settings.subject_hash_key)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url, family.service, max_size=10)
        relay = OutboxRelay(pool, load_signer(settings, family.authority_prefix), settings, family.service)
        task = asyncio.create_task(relay.run(), name=f"{family.service}-outbox-relay")
        state.update(pool=pool, relay=relay)
        app.state.pool = pool  # read by routers added after create_app, e.g. the court's public register
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await pool.close()

    app = FastAPI(title=f"Blacklist Sync {family.service} publisher", version="1", lifespan=lifespan)

    async def ready() -> dict[str, bool]:
        database = await reachable(state.get("pool"))
        return {"database": database, "kafka": bool(state.get("relay") and state["relay"].connected)}

    install_common(app, ready)

    # async: a plain `def` dependency would cost a thread-pool hop on every request.
    async def caller(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        for pattern, token in settings.publisher_tokens.items():
            if hmac.compare_digest(token.encode(), credentials.credentials.encode()):
                if not pattern.startswith(family.authority_prefix):
                    raise HTTPException(403, f"this token is for {pattern}, not the {family.service} service")
                return Caller(pattern)
        raise HTTPException(401, "unknown bearer token", headers={"WWW-Authenticate": "Bearer"})

    Auth = Annotated[Caller, Depends(caller)]

    @app.exception_handler(RuleViolation)
    async def rule_violation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RuleViolation)
        return unprocessable(exc.field, f"{exc.field}: {exc.message}")

    @app.exception_handler(service.NotFound)
    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=404, content={"error": f"no listing {exc}"})

    @app.exception_handler(service.Conflict)
    async def conflict(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=409, content={"error": str(exc)})

    @app.exception_handler(PermissionError)
    async def forbidden(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=403, content={"error": str(exc)})

    def listing_json(listing: Any) -> dict[str, Any]:
        return dict(listing.model_dump(mode="json"))

    @app.post("/v1/listings", status_code=201, response_model=dict[str, Any])
    async def issue(body: IssueRequest, who: Auth) -> Response:
        if not who.acts_for(body.authority):
            raise HTTPException(403, f"this token does not act for {body.authority}")
        listing, related = await service.issue(state["pool"], publisher, body, who.actor)
        metrics.LISTINGS_PUBLISHED.labels(family.service, "listing.issued").inc(1 + len(related))
        # The same JSON as encoding the dict, written by pydantic directly: the framework's generic encoding is slower.
        return Response(issued_json(listing, related), status_code=201, media_type="application/json")

    @app.post("/v1/listings/batch", status_code=201, response_model=dict[str, Any])
    async def issue_batch(body: IssueBatchRequest, who: Auth) -> Response:
        """Issue several listings at once, all or nothing: an error names the item (`listings.<index>.<field>`)
        and writes none of them; 201 answers, in request order, what POST /v1/listings answers for each."""
        for index, item in enumerate(body.listings):
            if not who.acts_for(item.authority):
                raise HTTPException(403, f"listings.{index}: this token does not act for {item.authority}")
        issued = await service.issue_many(state["pool"], publisher, body.listings, who.actor)
        metrics.LISTINGS_PUBLISHED.labels(family.service, "listing.issued").inc(sum(1 + len(r) for _, r in issued))
        # Pydantic writes each listing's JSON once; encoding the whole answer as a generic dict cost more.
        items = b",".join(issued_json(listing, related) for listing, related in issued)
        return Response(b'{"listings":[' + items + b"]}", status_code=201, media_type="application/json")

    @app.post("/v1/listings/{listing_id}/amend")
    async def amend(listing_id: ListingIdPath, body: AmendRequest, who: Auth) -> dict[str, Any]:
        listing = await service.amend(state["pool"], publisher, listing_id, body, who.acts_for, who.actor)
        metrics.LISTINGS_PUBLISHED.labels(family.service, "listing.amended").inc()
        return {"listing": listing_json(listing)}

    @app.post("/v1/listings/{listing_id}/revoke")
    async def revoke(listing_id: ListingIdPath, body: RevokeRequest, who: Auth) -> dict[str, Any]:
        listing = await service.revoke(state["pool"], publisher, listing_id, body, who.acts_for, who.actor)
        metrics.LISTINGS_PUBLISHED.labels(family.service, "listing.revoked").inc()
        return {"listing": listing_json(listing)}

    async def readable(listing_id: str, who: Caller) -> store.StoredListing:
        async with state["pool"].acquire() as conn:
            stored = await store.get(conn, listing_id)
        if stored is None:
            raise service.NotFound(listing_id)
        if not who.acts_for(stored.listing.authority):
            raise PermissionError(f"this token does not act for {stored.listing.authority}")
        return stored

    @app.get("/v1/listings/{listing_id}")
    async def get_listing(listing_id: ListingIdPath, who: Auth) -> dict[str, Any]:
        return {"listing": listing_json((await readable(listing_id, who)).listing)}

    @app.get("/v1/listings/{listing_id}/history")
    async def get_history(listing_id: ListingIdPath, who: Auth) -> dict[str, Any]:
        await readable(listing_id, who)
        async with state["pool"].acquire() as conn:
            entries = await store.history(conn, listing_id)
        return {"listing_id": listing_id, "history": entries}

    @app.get("/v1/listings")
    async def list_listings(
        who: Auth,
        status: Annotated[str | None, Query(pattern="^(active|revoked)$")] = None,
        page: Annotated[int, Query(ge=1, le=100000)] = 1,
    ) -> dict[str, Any]:
        like = who.pattern[:-1] + "%" if who.pattern.endswith(".*") else who.pattern
        async with state["pool"].acquire() as conn:
            listings = await store.page(conn, status, [like], PAGE_SIZE, (page - 1) * PAGE_SIZE)
        return {"listings": [listing_json(x) for x in listings], "page": page, "page_size": PAGE_SIZE}

    return app
