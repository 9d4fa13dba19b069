"""The publisher HTTP API of CONTRACT section 7, shared by the court, transport and city-pilot services."""

# No `from __future__ import annotations` here: FastAPI resolves the route signatures, local `Auth` included.

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from schemas.catalogue import FAMILIES, authority_matches
from services.kit import logs, metrics
from services.kit.db import create_pool, reachable
from services.kit.http import BodySizeLimit, install_common, read_body, replay, unprocessable
from services.kit.settings import Settings
from services.kit.signing import SigningKey
from services.publishers import service, store
from services.publishers.relay import OutboxRelay, Signer
from services.publishers.requests import (
    PRINTABLE,
    AmendRequest,
    IssueBatchRequest,
    IssueRequest,
    RevokeRequest,
)
from services.publishers.rules import ListRules, RuleViolation

log = logging.getLogger(__name__)
bearer = HTTPBearer(auto_error=False)
PAGE_SIZE = 100
# A listing id in a path is looked up in PostgreSQL, which cannot hold NUL: refuse such ids with a 422 first.
ListingIdPath = Annotated[str, Path(min_length=1, max_length=200, pattern=PRINTABLE)]
ISSUE_PATH, BATCH_PATH = "/v1/listings", "/v1/listings/batch"
# The batch route's body limit: MAX_BATCH_LISTINGS ordinary listings (~220 bytes each, ~110 KB) with room for long
# names and case numbers (~520 bytes each on average); every other route keeps the services' 64 KiB.
BATCH_MAX_BODY_BYTES = 256 * 1024
# A fast path's answer to a bearer token and a body, or None to hand the request to the framework's route.
FastIssue = Callable[[str, bytes], Awaitable[Response | None]]


@dataclass(frozen=True)
class Caller:
    """The holder of a bearer token: the authority pattern the token was issued for."""

    pattern: str

    def acts_for(self, authority: str) -> bool:
        return authority_matches(self.pattern, authority)

    @property
    def actor(self) -> str:
        return f"token:{self.pattern}"


def identify(tokens: Mapping[str, str], family_prefix: str, service_name: str, token: str) -> Caller:
    """The holder of a bearer token; an unknown token is a 401, a token of another family a 403."""
    for pattern, known in tokens.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            if not pattern.startswith(family_prefix):
                raise HTTPException(403, f"this token is for {pattern}, not the {service_name} service")
            return Caller(pattern)
    raise HTTPException(401, "unknown bearer token", headers={"WWW-Authenticate": "Bearer"})


def issued_json(issued: service.Issued) -> bytes:
    """The body POST /v1/listings answers with, as JSON bytes: each listing's JSON as written into its event."""
    first, *related = issued.changes
    others = b",".join(c.listing_json for c in related)
    return b'{"listing":' + first.listing_json + b',"related_listings":[' + others + b"]}"


def issued_batch_json(issued: list[service.Issued]) -> bytes:
    """The body POST /v1/listings/batch answers with: what POST /v1/listings answers for each item, in order."""
    return b'{"listings":[' + b",".join(issued_json(i) for i in issued) + b"]}"


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
        # No session state is left on a released connection (the relay's LISTEN is undone before its release, the
        # relay lock is transaction-scoped), so asyncpg's reset query would be one more round trip per request.
        pool = await create_pool(settings.database_url, family.service, max_size=10, reset_sessions=False)
        relay = OutboxRelay(pool, load_signer(settings, family.authority_prefix), settings, family.service)
        task = asyncio.create_task(relay.run(), name=f"{family.service}-outbox-relay")
        state.update(pool=pool, relay=relay, writer=service.IssueWriter(pool, publisher))
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
        return identify(settings.publisher_tokens, family.authority_prefix, family.service, credentials.credentials)

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

    # Each issue route in two steps, shared by the route and the fast path: admit (pure checks, raising the
    # refusal) and answer (write, count, 201). Nothing is written before a request is admitted.
    def admit_issue(body: IssueRequest, who: Caller, now: datetime) -> service.Planned:
        if not who.acts_for(body.authority):
            raise HTTPException(403, f"this token does not act for {body.authority}")
        return service.plan_issue(publisher, body, now)

    async def answer_issue(plan: service.Planned, who: Caller, now: datetime) -> Response:
        issued = await state["writer"].write(plan, who.actor, now)
        metrics.LISTINGS_PUBLISHED.labels(family.service, "listing.issued").inc(len(issued.changes))
        # The same JSON as encoding the dict, written by pydantic directly: the framework's generic encoding is slower.
        return Response(issued_json(issued), status_code=201, media_type="application/json")

    def admit_batch(body: IssueBatchRequest, who: Caller, now: datetime) -> list[service.Planned]:
        for index, item in enumerate(body.listings):
            if not who.acts_for(item.authority):
                raise HTTPException(403, f"listings.{index}: this token does not act for {item.authority}")
        return service.plan_many(publisher, body.listings, now)

    async def answer_batch(plans: list[service.Planned], who: Caller, now: datetime) -> Response:
        issued = await service.write_many(state["pool"], publisher, plans, who.actor, now)
        metrics.LISTINGS_PUBLISHED.labels(family.service, "listing.issued").inc(sum(len(i.changes) for i in issued))
        return Response(issued_batch_json(issued), status_code=201, media_type="application/json")

    @app.post(ISSUE_PATH, status_code=201, response_model=dict[str, Any])
    async def issue(body: IssueRequest, who: Auth) -> Response:
        now = service.utc_now()
        return await answer_issue(admit_issue(body, who, now), who, now)

    @app.post(BATCH_PATH, status_code=201, response_model=dict[str, Any])
    async def issue_batch(body: IssueBatchRequest, who: Auth) -> Response:
        """Issue several listings at once, all or nothing: an error names the item (`listings.<index>.<field>`)
        and writes none of them; 201 answers, in request order, what POST /v1/listings answers for each."""
        now = service.utc_now()
        return await answer_batch(admit_batch(body, who, now), who, now)

    def fast(
        model: type[IssueRequest] | type[IssueBatchRequest],
        admit: Callable[[Any, Caller, datetime], Any],
        answer: Callable[[Any, Caller, datetime], Awaitable[Response]],
    ) -> FastIssue:
        async def handle(token: str, body: bytes) -> Response | None:
            now = service.utc_now()
            try:
                who = identify(settings.publisher_tokens, family.authority_prefix, family.service, token)
                admitted = admit(model.model_validate_json(body), who, now)
            except (HTTPException, ValidationError, RuleViolation):
                return None  # the framework's route answers the refusal, exactly as it always has
            return await answer(admitted, who, now)

        return handle

    fast_paths = {
        ISSUE_PATH: fast(IssueRequest, admit_issue, answer_issue),
        BATCH_PATH: fast(IssueBatchRequest, admit_batch, answer_batch),
    }
    replace_body_limit(app, {BATCH_PATH: BATCH_MAX_BODY_BYTES}, fast_paths)

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


def replace_body_limit(app: FastAPI, limits: Mapping[str, int], fast_paths: Mapping[str, FastIssue]) -> None:
    """Swap the body size limit install_common added for one that chooses the limit by path, with the issue fast
    paths right inside it (so they only ever read bodies within the limit)."""
    for index, entry in enumerate(app.user_middleware):
        if cast(object, entry.cls) is BodySizeLimit:  # the factory type does not admit a class comparison
            app.user_middleware[index : index + 1] = [
                Middleware(RouteBodyLimit, limits=limits),
                Middleware(IssueFastPath, handlers=fast_paths),
            ]
            return
    raise RuntimeError("install_common added no BodySizeLimit to replace")


class RouteBodyLimit:
    """The services' body size limit (413 above it), with a limit of its own for each listed path."""

    def __init__(self, app: ASGIApp, limits: Mapping[str, int]) -> None:
        self.default = BodySizeLimit(app)
        self.by_path = {path: BodySizeLimit(app, limit) for path, limit in limits.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.by_path.get(scope.get("path", ""), self.default)(scope, receive, send)


class IssueFastPath:
    """POST /v1/listings and /v1/listings/batch without the framework's routing, dependency solving and generic body
    parsing (the body is validated from its bytes in one pass): each is a few hundred microseconds per request.
    Anything the handler does not admit (no or unknown token, invalid body, a rule broken) is replayed untouched
    to the framework's route, which refuses it exactly as before: one place for each refusal and its body."""

    def __init__(self, app: ASGIApp, handlers: Mapping[str, FastIssue]) -> None:
        self.app = app
        self.handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        token = _plain_json_bearer(scope) if handler is not None else None
        if handler is None or token is None:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client left, or the body size limit has already answered 413
            return
        answer = await handler(token, body)
        if answer is None:
            await self.app(scope, replay(body, receive), send)
            return
        await answer(scope, receive, send)


def _plain_json_bearer(scope: Scope) -> str | None:
    """The bearer token of a request with a plain application/json body, read as the framework reads it (first
    header of each name, latin-1, HTTPBearer's parsing); None sends the request down the framework's way."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name, value)
    content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    scheme, token = get_authorization_scheme_param(headers.get(b"authorization", b"").decode("latin-1"))
    if content_type != b"application/json" or scheme.lower() != "bearer" or not token:
        return None
    return token
