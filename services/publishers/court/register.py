"""The court's public register of dishonest judgment debtors: search by name or id, in force listings only."""

# No `from __future__ import annotations` here: FastAPI resolves the route signatures.

import html
import re
import string
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Literal
from urllib.parse import parse_qs

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from schemas.catalogue import Restriction
from schemas.events import Listing
from services.kit.http import unprocessable

REGISTER_LIST = "court.dishonest_debtor"
MAX_QUERY_CHARS = 64
MIN_NAME_CHARS = 2
MAX_RESULTS = 50
# A national id (17 digits and a check character) or a unified social credit code: 18 of 0-9 and A-Z.
ID_SHAPE = re.compile(r"^[0-9A-Z]{18}$")
MIN_ID_DIGITS = 6  # keeps an 18-letter name (no digits) a name search

# What each ban means to a reader of the register (CONTRACT section 1).
RESTRICTION_LABELS: dict[Restriction, str] = {
    Restriction.FLIGHT: "taking flights",
    Restriction.RAIL: "any train travel",
    Restriction.RAIL_PREMIUM: "high-speed first/business class and soft sleepers",
    Restriction.LUXURY_GOODS: "luxury purchases",
    Restriction.PRIVATE_SCHOOL_TUITION: "paying high-fee private school or university tuition",
    Restriction.STAR_HOTEL: "star-rated hotels",
    Restriction.REAL_ESTATE: "buying real estate",
    Restriction.VEHICLE: "buying vehicles",
    Restriction.VACATION_TRAVEL: "vacation travel",
    Restriction.CITY_SUBSIDY: "local subsidies and benefits",
}

CORRECTION = (
    "If a listing is wrong — the debt is paid or settled, the decision was set aside, or the person or company "
    "shown is not you — apply in writing to the court named in the listing, quoting its listing id and case number. "
    "The court reviews a written correction request within 15 days of receiving it. A listing the court revokes "
    "leaves this register at once, and merchants' copies as soon as the revocation reaches them."
)

router = APIRouter(tags=["public register"])


class BadQuery(ValueError):
    """A search the register cannot run; the message is shown to the person who typed it."""


@dataclass(frozen=True)
class Query:
    text: str
    match: Literal["id", "name"]


def parse_query(raw: str) -> Query:
    """Validate a search: an 18-character id is matched exactly, anything else as part of a name."""
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in raw):
        raise BadQuery("The search contains control or invisible characters; type a name or an id.")
    text = " ".join(raw.split())
    if not text:
        raise BadQuery("Enter a name, or an 18-character id number or credit code, to search.")
    if len(text) > MAX_QUERY_CHARS:
        raise BadQuery(f"The search is too long: at most {MAX_QUERY_CHARS} characters.")
    upper = text.upper()
    if ID_SHAPE.match(upper) and sum(ch.isdigit() for ch in upper) >= MIN_ID_DIGITS:
        return Query(upper, "id")
    if len(text) < MIN_NAME_CHARS:
        raise BadQuery(f"Type at least {MIN_NAME_CHARS} characters of a name.")
    return Query(text, "name")


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# In force at $3: active, effective_from <= t < expires_at (CONTRACT section 4); the raw id never leaves this query.
SEARCH_SQL = """
SELECT state, subject_name FROM listings
 WHERE list = $1 AND status = 'active'
   AND (state->>'effective_from')::timestamptz <= $3 AND (state->>'expires_at')::timestamptz > $3
   AND {condition}
 ORDER BY (state->>'effective_from')::timestamptz DESC, listing_id
 LIMIT $4
"""
BY_ID = SEARCH_SQL.format(condition="subject_id = $2")
BY_NAME = SEARCH_SQL.format(condition="subject_name ILIKE $2 ESCAPE '\\'")


async def search(conn: asyncpg.Connection, query: Query, at: datetime) -> tuple[list[dict[str, Any]], bool]:
    """Listings in force at `at` matching the query, newest first; True when more than MAX_RESULTS matched."""
    sql, value = (BY_ID, query.text) if query.match == "id" else (BY_NAME, _like_pattern(query.text))
    rows = await conn.fetch(sql, REGISTER_LIST, value, at, MAX_RESULTS + 1)
    entries = [public_entry(Listing.model_validate_json(r["state"]), r["subject_name"]) for r in rows[:MAX_RESULTS]]
    return entries, len(rows) > MAX_RESULTS


def public_entry(listing: Listing, name: str) -> dict[str, Any]:
    """What the register publishes of a listing: the name as registered, the id masked, never the raw id."""
    return {
        "listing_id": listing.listing_id,
        "name": name,
        "subject_kind": listing.subject.kind.value,
        "id_masked": listing.subject.id_masked,
        "case_number": listing.legal_basis.case_number,
        "court": listing.authority,
        "effective_from": listing.effective_from.date().isoformat(),
        "expires_at": listing.expires_at.date().isoformat(),
        "restrictions": [r.value for r in listing.restrictions],
    }


async def _answer(request: Request, raw: str) -> tuple[Query, list[dict[str, Any]], bool, datetime]:
    query = parse_query(raw)
    at = datetime.now(UTC)
    async with request.app.state.pool.acquire() as conn:
        entries, truncated = await search(conn, query, at)
    return query, entries, truncated, at


@router.get("/v1/register")
async def register_json(request: Request, q: str = "") -> JSONResponse:
    try:
        query, entries, truncated, at = await _answer(request, q)
    except BadQuery as exc:
        return unprocessable("q", str(exc))
    return JSONResponse(
        {"match": query.match, "results": entries, "truncated": truncated, "as_of": at.isoformat(), "correction": CORRECTION},
        headers={"Cache-Control": "no-store"},
    )


@router.get("/register", response_class=HTMLResponse)
async def register_page(request: Request, q: str | None = None) -> HTMLResponse:
    return await _page(request, q)


@router.post("/register", response_class=HTMLResponse)
async def register_form(request: Request) -> HTMLResponse:
    # A form POST keeps a searched id number out of URLs, browser history and referrers.
    form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return await _page(request, form.get("q", [""])[0])


async def _page(request: Request, raw: str | None) -> HTMLResponse:
    if raw is None:
        return _render(query="", body="", status=200)
    try:
        query, entries, truncated, at = await _answer(request, raw)
    except BadQuery as exc:
        return _render(query=raw, body=f'<p class="error" role="alert">{html.escape(str(exc))}</p>', status=422)
    return _render(query=raw, body=_results_html(query, entries, truncated, at), status=200)


def _results_html(query: Query, entries: list[dict[str, Any]], truncated: bool, at: datetime) -> str:
    if not entries:
        what = "id" if query.match == "id" else "name"
        return f'<p class="none" role="status">No listing in force matches this {what} (as of {at:%Y-%m-%d %H:%M} UTC).</p>'
    more = f'<p class="more">More than {MAX_RESULTS} listings match: showing the newest; refine the search.</p>'
    return (
        f'<p class="count" role="status">{len(entries)} listing{"s" if len(entries) != 1 else ""} in force '
        f"(as of {at:%Y-%m-%d %H:%M} UTC).</p>" + "".join(_entry_html(e) for e in entries) + (more if truncated else "")
    )


def _entry_html(entry: dict[str, Any]) -> str:
    bans = ", ".join(RESTRICTION_LABELS.get(Restriction(code), code) for code in entry["restrictions"])
    fields = [
        ("Id", entry["id_masked"]),
        ("Case number", entry["case_number"]),
        ("Court", entry["court"]),
        ("Listed from", entry["effective_from"]),
        ("Listed until", entry["expires_at"]),
        ("Restricted from", bans),
        ("Listing id", entry["listing_id"]),
    ]
    rows = "".join(f"<dt>{label}</dt><dd>{html.escape(value)}</dd>" for label, value in fields)
    kind = "company" if entry["subject_kind"] == "organization" else "person"
    return f'<article class="listing"><h2>{html.escape(entry["name"])} <small>({kind})</small></h2><dl>{rows}</dl></article>'


def _template() -> string.Template:
    text = resources.files("services.publishers.court").joinpath("templates/register.html").read_text(encoding="utf-8")
    return string.Template(text)


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _render(query: str, body: str, status: int) -> HTMLResponse:
    page = _template().substitute(
        query=html.escape(query, quote=True), body=body, correction=html.escape(CORRECTION), max_chars=MAX_QUERY_CHARS
    )
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)
