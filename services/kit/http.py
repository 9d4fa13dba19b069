"""What every HTTP service shares: health and metrics routes, 422 errors that name the field, a body size limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024


def field_name(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc if p != "body"]
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
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.limit)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(status_code=413, content={"error": f"request body over {limit} bytes", "field": "body"})


def install_common(app: FastAPI, ready: Callable[[], Awaitable[dict[str, bool]]]) -> None:
    """Error handlers, the body size limit and the /healthz, /readyz and /metrics routes."""
    app.add_exception_handler(RequestValidationError, _validation_error)
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
