"""What every HTTP service shares: health and metrics routes, 422s naming the field, a body size limit, hot-route fast paths."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024


# Where a parameter came from is not part of its name: a 422 names `page` or `listing_id`, not `query.page`.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def field_name(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or "body"


def unprocessable(field: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=422, content={"error": message, "field": field})


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    return JSONResponse(
        status_code=422,
        content={
            "error": f"{field_name(first['loc'])}: {first['msg']}",
            "field": field_name(first["loc"]),
            "errors": [{"field": field_name(e["loc"]), "message": e["msg"]} for e in errors],
        },
    )


class BodySizeLimit:
    """Refuse request bodies over a limit with 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(self.limit)(scope, receive, send)
            return
        await self.app(scope, *_ChunkedLimit(self.limit, scope, receive, send).channels())


class _ChunkedLimit:
    """A body without a (truthful) Content-Length, counted as it arrives. Over the limit, the 413 is sent from here
    and the app sees the client gone: an exception would instead surface as the framework's own 400."""

    def __init__(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit, self.scope, self.receive, self.send = limit, scope, receive, send
        self.seen = 0
        self.refused = False

    def channels(self) -> tuple[Receive, Send]:
        return self.limited_receive, self.guarded_send

    async def limited_receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.receive()
        self.seen += len(message.get("body", b""))
        if self.seen > self.limit:
            self.refused = True
            await _too_large(self.limit)(self.scope, self.receive, self.send)
            return {"type": "http.disconnect"}
        return message

    async def guarded_send(self, message: Message) -> None:
        if not self.refused:  # whatever the app answers after the 413 goes nowhere
            await self.send(message)


# A fast path's answer to a body it takes, or None to hand the body on to the framework's own route.
FastHandler = Callable[[bytes], Awaitable[Response | None]]


class JsonFastPath:
    """Serve hot `POST <path>` routes with a JSON body as plain ASGI, without the framework's routing, dependency
    solving and body re-parsing. A body its handler declines (None) is replayed to the framework's route, which
    answers it exactly as it would have: the 422 bodies stay the framework's, one place for each refusal."""

    def __init__(self, app: ASGIApp, handlers: Mapping[str, FastHandler]) -> None:
        self.app = app
        self.handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None or not _declares_json(scope):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client left, or the body size limit has already answered 413
            return
        answer = await handler(body)
        if answer is None:
            await self.app(scope, replay(body, receive), send)
            return
        await answer(scope, receive, send)


class FastPathApp(FastAPI):
    """FastAPI with its hot `POST` routes served in front of it (`JsonFastPath`, after the body size limit). A request
    for one of them never enters the framework's own stack: not FastAPI's per-request telemetry check, Starlette's
    error middleware or routing, which cost a check some 9 µs of the 57 its app took (the app called in process, ASGI
    directly; README, round 18). A body its handler declines, and every other request, goes through the whole app.
    So FastAPI's native OpenTelemetry hooks do not see the fast path's requests (none of our services configures a
    provider); an error escaping a handler reaches the server, which answers 500 as the error middleware would."""

    _front: ASGIApp | None = None
    _front_paths: frozenset[str] = frozenset()

    def serve_first(self, handlers: Mapping[str, FastHandler]) -> None:
        self._front = BodySizeLimit(JsonFastPath(functools.partial(FastAPI.__call__, self), handlers))
        self._front_paths = frozenset(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._front is not None and scope["type"] == "http" and scope["path"] in self._front_paths:
            await self._front(scope, receive, send)  # JsonFastPath hands on anything but a JSON POST
        else:
            await super().__call__(scope, receive, send)


def _declares_json(scope: Scope) -> bool:
    # Only plain application/json: any other type keeps the framework's own content-type rules.
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client left before sending it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that gives the body already read once, then whatever the client sends next."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(status_code=413, content={"error": f"request body over {limit} bytes", "field": "body"})


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx answer: what is wrong, and the field it is about when there is one."""

    error: str
    field: str | None = None
    errors: list[FieldError] | None = None


def install_common(
    app: FastAPI, ready: Callable[[], Awaitable[dict[str, bool]]], fast_posts: Mapping[str, FastHandler] | None = None
) -> None:
    """Error handlers, the body size limit, fast paths for hot POST routes (served in front of the app: `FastPathApp`)
    and the /healthz, /readyz and /metrics routes."""
    app.router.responses = {422: {"model": ErrorBody, "description": "Invalid input; `field` names it"}, **app.router.responses}
    app.add_exception_handler(RequestValidationError, _validation_error)
    if fast_posts:
        if not isinstance(app, FastPathApp):
            paths = ", ".join(fast_posts)
            raise TypeError(f"fast paths ({paths}) are served in front of a FastPathApp, not a {type(app).__name__}")
        app.serve_first(fast_posts)
    app.add_middleware(BodySizeLimit)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        checks = await ready()
        return JSONResponse(status_code=200 if all(checks.values()) else 503, content={"ready": all(checks.values()), **checks})

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)
