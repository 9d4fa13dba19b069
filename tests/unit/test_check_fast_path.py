"""The plain-ASGI fast path for hot POST routes: what it answers, what it hands on, and that it parses as the route does."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import Response
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from services.consumers.checks import CheckRequest
from services.kit.http import MAX_BODY_BYTES, FastPathApp, install_common

VALID = {"subject": {"kind": "person", "id": "110101199003071234"}, "action": "board_flight"}


class Echo(BaseModel):
    subject: dict[str, str]
    action: str


async def always_ready() -> dict[str, bool]:
    return {"database": True}


def toy_app(decline: bool) -> tuple[FastPathApp, list[bytes], list[str]]:
    """An app with a fast path on /v1/echo; records the bodies the fast path saw and who answered, and every request
    that entered the framework's own middleware stack (as "stack <path>")."""
    seen: list[bytes] = []
    answered_by: list[str] = []

    async def fast(body: bytes) -> Response | None:
        seen.append(body)
        if decline:
            return None
        answered_by.append("fast")
        return Response(b'{"by":"fast"}', media_type="application/json")

    app = FastPathApp()
    install_common(app, always_ready, fast_posts={"/v1/echo": fast})

    @app.middleware("http")
    async def entered(request: Any, call_next: Any) -> Any:
        answered_by.append(f"stack {request.url.path}")
        return await call_next(request)

    @app.post("/v1/echo")
    async def echo(body: Echo) -> dict[str, Any]:
        answered_by.append("route")
        return {"by": "route", "action": body.action}

    return app, seen, answered_by


async def post(app: FastAPI, content: bytes, headers: dict[str, str] | None = None, path: str = "/v1/echo") -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://toy") as client:
        return await client.post(path, content=content, headers=headers or {})


JSON = {"content-type": "application/json"}


async def test_fast_path_answers_a_json_post_without_reaching_the_route() -> None:
    app, seen, answered_by = toy_app(decline=False)

    response = await post(app, json.dumps(VALID).encode(), JSON)

    assert response.json() == {"by": "fast"}
    assert answered_by == ["fast"]  # never entered the framework's stack
    assert seen == [json.dumps(VALID).encode()]


async def test_body_the_fast_path_declines_reaches_the_route_unchanged() -> None:
    app, seen, answered_by = toy_app(decline=True)

    response = await post(app, json.dumps(VALID).encode(), JSON)

    assert response.status_code == 200
    assert response.json() == {"by": "route", "action": "board_flight"}
    assert answered_by == ["stack /v1/echo", "route"]
    assert len(seen) == 1


async def test_declined_malformed_body_gets_the_routes_own_422_naming_the_field() -> None:
    app, _, answered_by = toy_app(decline=True)

    response = await post(app, b'{"subject": {"kind": "person"}}', JSON)

    assert response.status_code == 422
    assert response.json()["field"] == "action"
    assert answered_by == ["stack /v1/echo"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/vnd.check+json", "application/jsonx"])
async def test_body_without_plain_json_content_type_skips_the_fast_path(content_type: str | None) -> None:
    app, seen, _ = toy_app(decline=False)

    response = await post(app, json.dumps(VALID).encode(), {"content-type": content_type} if content_type else {})

    assert seen == []
    assert response.json().get("by") != "fast"


async def test_json_content_type_with_charset_takes_the_fast_path() -> None:
    app, seen, _ = toy_app(decline=False)

    response = await post(app, json.dumps(VALID).encode(), {"content-type": "Application/JSON; charset=utf-8"})

    assert response.json() == {"by": "fast"}
    assert len(seen) == 1


async def test_other_paths_and_methods_skip_the_fast_path() -> None:
    app, seen, _ = toy_app(decline=False)

    elsewhere = await post(app, json.dumps(VALID).encode(), JSON, path="/v1/other")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://toy") as client:
        health = await client.get("/healthz")

    assert elsewhere.status_code == 404
    assert health.json() == {"status": "ok"}
    assert seen == []


async def test_requests_the_fast_path_does_not_take_go_through_the_whole_app() -> None:
    app, _, answered_by = toy_app(decline=False)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://toy") as client:
        await client.get("/healthz")
        await client.post("/v1/echo", content=b"action=x", headers={"content-type": "text/plain"})

    assert answered_by == ["stack /healthz", "stack /v1/echo"]


def test_fast_paths_need_an_app_that_serves_them_in_front() -> None:
    async def fast(body: bytes) -> Response | None:
        return None

    with pytest.raises(TypeError, match="FastPathApp"):
        install_common(FastAPI(), always_ready, fast_posts={"/v1/echo": fast})


async def test_oversized_body_is_413_before_the_fast_path_reads_it() -> None:
    app, seen, _ = toy_app(decline=False)
    body = b'{"padding": "' + b"x" * MAX_BODY_BYTES + b'"}'

    declared = await post(app, body, JSON)

    async def chunks() -> Any:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://toy") as client:
        chunked = await client.post("/v1/echo", content=chunks(), headers=JSON)

    assert (declared.status_code, chunked.status_code) == (413, 413)
    assert chunked.json()["field"] == "body"
    assert seen == []


# --- the fast path parses a check body as the FastAPI route does --------------------------------------------------------


def route_parse(body: bytes) -> CheckRequest | None:
    """What the route makes of a body: Starlette's json.loads, then the model on the Python object."""
    try:
        return CheckRequest.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        return None


def fast_parse(body: bytes) -> CheckRequest | None:
    try:
        return CheckRequest.model_validate_json(body)
    except ValidationError:
        return None


EDGE_BODIES = [
    b'{"subject":{"kind":"person","id":"1\\ud800"},"action":"board_flight"}',
    b'{"subject":{"kind":"person","id":"1\\uD83D\\uDE00"},"action":"board_flight"}',
    b'\xef\xbb\xbf{"subject":{"kind":"person","id":"1"},"action":"board_flight"}',
    b'{"subject":{"kind":"person","id":"1"},"action":"board_flight"} trailing',
    b'{"subject":{"kind":"person","id":"1"},"action":"launch","action":"board_flight"}',
    b'{"subject":{"kind":"person","id":"1"},"action":"board_flight","at":1764151200}',
    b'{"subject":{"kind":"person","id":"1"},"action":"board_flight","at":"2026-11-26T10:00:00.123456789Z"}',
    b'{"subject":{"kind":"person","id":"1"},"action":"board_flight","extra":NaN}',
    b'{"subject":{"kind":"person","id":"1\n"},"action":"board_flight"}',
    b'{"subject":{"kind":"person","id":"1\\u0000"},"action":"board_flight","region":"CN-ZJ-HZ"}',
    '{"subject":{"kind":"person","id":"1"},"action":"board_flight"}'.encode("utf-16"),
]


@pytest.mark.parametrize("body", EDGE_BODIES)
def test_fast_parse_accepts_only_what_the_route_accepts_and_reads_it_the_same(body: bytes) -> None:
    fast = fast_parse(body)

    assert fast is None or fast == route_parse(body)


fragments = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["\\u00e9", "\\ud83d\\ude00", "\\ud800", '\\"', "\\\\", "\\n", "\\/", "CN-ZJ-HZ", "2026-11-26T10:00:00Z", "1e3"]
)


@settings(max_examples=300, deadline=None)
@given(subject_id=fragments, action=fragments, region=st.none() | fragments, at=st.none() | fragments, raw=st.booleans())
def test_fast_parse_never_accepts_a_body_the_route_refuses_or_reads_differently(
    subject_id: str, action: str, region: str | None, at: str | None, raw: bool
) -> None:
    # Raw splicing makes broken JSON too (the route refuses it, so must the fast path); json.dumps makes valid JSON.
    quote = (lambda s: f'"{s}"') if raw else json.dumps
    optional = "".join(f',"{name}":{quote(value)}' for name, value in (("region", region), ("at", at)) if value is not None)
    text = f'{{"subject":{{"kind":"person","id":{quote(subject_id)}}},"action":{quote(action)}{optional}}}'
    body = text.encode("utf-8", "surrogatepass")

    fast = fast_parse(body)

    assert fast is None or fast == route_parse(body)
