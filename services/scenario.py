"""The demo scenario: every list type, a company and its representative, a city listing, amend, revoke, expiry."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from schemas.events import rfc3339
from services.kit.settings import DEFAULT_TOKENS

TOKENS = {
    "court": DEFAULT_TOKENS["court.*"],
    "caac": DEFAULT_TOKENS["transport.caac"],
    "railway": DEFAULT_TOKENS["transport.railway"],
    "city": DEFAULT_TOKENS["city.*"],
}


def person_id(rng: random.Random, born: str) -> str:
    """A well-formed 18-character national id: region, birth date YYYYMMDD, sequence, check character."""
    return f"{rng.choice(['110101', '310101', '440301', '330102'])}{born}{rng.randint(0, 999):03d}{rng.choice('0123456789X')}"


def credit_code(rng: random.Random) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    return "91" + "".join(rng.choice(alphabet) for _ in range(16))


@dataclass(frozen=True)
class People:
    debtor: str
    company: str
    representative: str
    flyer: str
    rider: str
    fare_evader: str
    student: str
    minor: str

    @classmethod
    def make(cls, seed: int | None = None) -> People:
        rng = random.Random(seed)
        return cls(
            debtor=person_id(rng, "19800101"),
            company=credit_code(rng),
            representative=person_id(rng, "19750505"),
            flyer=person_id(rng, "19850303"),
            rider=person_id(rng, "19921212"),
            fare_evader=person_id(rng, "19910707"),
            student=person_id(rng, "20080101"),
            minor=person_id(rng, "20150505"),
        )


@dataclass(frozen=True)
class Question:
    label: str
    consumer: str
    kind: str
    subject: str
    action: str
    expect_allowed: bool
    seat_class: str | None = None
    region: str | None = None
    at: datetime | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"subject": {"kind": self.kind, "id": self.subject}, "action": self.action}
        if self.seat_class:
            body["seat_class"] = self.seat_class
        if self.region:
            body["region"] = self.region
        if self.at:
            body["at"] = rfc3339(self.at)
        return body


@dataclass
class Answer:
    phase: str
    question: Question
    allowed: bool | None
    blocking_lists: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.allowed == self.question.expect_allowed


@dataclass
class Outcome:
    answers: list[Answer] = field(default_factory=list)
    listings: dict[str, dict[str, Any]] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.answers)


class Scenario:
    def __init__(self, urls: Mapping[str, str], people: People | None = None, progress: Callable[[str], None] = print) -> None:
        self.urls = urls
        self.people = people or People.make()
        self.progress = progress
        self.outcome = Outcome()

    async def _post(self, client: httpx.AsyncClient, service: str, token: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return await client.post(f"{self.urls[service]}{path}", json=body, headers={"Authorization": f"Bearer {token}"})

    async def _publish(
        self, client: httpx.AsyncClient, service: str, token: str, path: str, body: dict[str, Any], name: str
    ) -> dict[str, Any]:
        response = await self._post(client, service, token, path, body)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"{service} {path} answered {response.status_code}: {response.text}")
        listing: dict[str, Any] = response.json()["listing"]
        self.outcome.listings[name] = listing
        for i, related in enumerate(response.json().get("related_listings", [])):
            self.outcome.listings[f"{name}.representative{i or ''}"] = related
        self.progress(f"  {response.status_code} {listing['listing_id']} v{listing['version']} {listing['status']} ({name})")
        return listing

    async def ask(self, client: httpx.AsyncClient, question: Question) -> Answer:
        response = await client.post(f"{self.urls[question.consumer]}/v1/checks", json=question.body())
        if response.status_code != 200:
            raise RuntimeError(f"{question.consumer} check answered {response.status_code}: {response.text}")
        answer = response.json()
        return Answer("", question, answer["allowed"], [b["list"] for b in answer["blocking"]])

    async def settle(self, client: httpx.AsyncClient, phase: str, questions: list[Question], timeout: float = 60.0) -> None:
        """Ask every question until each gets its expected answer (propagation takes milliseconds) or time runs out."""
        started = time.monotonic()
        answers: list[Answer] = []
        while True:
            answers = list(await asyncio.gather(*(self.ask(client, q) for q in questions)))
            if all(a.ok for a in answers) or time.monotonic() - started > timeout:
                break
            await asyncio.sleep(0.1)
        self.outcome.timings[phase] = time.monotonic() - started
        for a in answers:
            a.phase = phase
        self.outcome.answers.extend(answers)
        wrong = sum(not a.ok for a in answers)
        self.progress(
            f"  {phase}: {len(answers) - wrong}/{len(answers)} answers as expected after {self.outcome.timings[phase]:.2f}s"
        )

    async def run(self) -> Outcome:
        p = self.people
        async with httpx.AsyncClient(timeout=10.0) as client:
            self.progress("Phase 1: authorities publish")
            court_case = {"case_number": "(2026) Jing 01 Zhi 123", "decision_ref": "demo"}
            debtor = await self._publish(
                client,
                "court",
                TOKENS["court"],
                "/v1/listings",
                {
                    "authority": "court.bj-1st-intermediate",
                    "list": "court.dishonest_debtor",
                    "subject": {"kind": "person", "id": p.debtor, "name": "Zhang San"},
                    "legal_basis": court_case,
                },
                "court debtor (person)",
            )
            company = await self._publish(
                client,
                "court",
                TOKENS["court"],
                "/v1/listings",
                {
                    "authority": "court.sh-2nd-intermediate",
                    "list": "court.dishonest_debtor",
                    "subject": {"kind": "organization", "id": p.company, "name": "Hengda Example Trading Co"},
                    "legal_representative": {"id": p.representative, "name": "Li Si"},
                    "legal_basis": {"case_number": "(2026) Hu 02 Zhi 456"},
                },
                "court debtor (company)",
            )
            flight = await self._publish(
                client,
                "transport",
                TOKENS["caac"],
                "/v1/listings",
                {
                    "authority": "transport.caac",
                    "list": "transport.flight_ban",
                    "subject": {"kind": "person", "id": p.flyer, "name": "Wang Wu"},
                    "legal_basis": {"case_number": "CAAC-2026-0042", "decision_ref": "disruptive passenger"},
                },
                "flight ban",
            )
            rail = await self._publish(
                client,
                "transport",
                TOKENS["railway"],
                "/v1/listings",
                {
                    "authority": "transport.railway",
                    "list": "transport.rail_ban",
                    "subject": {"kind": "person", "id": p.rider, "name": "Zhao Liu"},
                    "legal_basis": {"case_number": "RAIL-2026-0777"},
                },
                "rail ban",
            )
            city = await self._publish(
                client,
                "city-pilot",
                TOKENS["city"],
                "/v1/listings",
                {
                    "authority": "city.hangzhou",
                    "list": "city.hangzhou.transit_fare_evasion",
                    "subject": {"kind": "person", "id": p.fare_evader, "name": "Chen Qi"},
                    "term_days": 90,
                    "legal_basis": {"case_number": "HZ-METRO-2026-31"},
                },
                "city listing (Hangzhou)",
            )
            minor = await self._post(
                client,
                "court",
                TOKENS["court"],
                "/v1/listings",
                {
                    "authority": "court.bj-1st-intermediate",
                    "list": "court.dishonest_debtor",
                    "subject": {"kind": "person", "id": p.minor, "name": "Minor Example"},
                    "legal_basis": court_case,
                },
            )
            self.outcome.refusals.append(f"listing a minor: {minor.status_code} {minor.json().get('error')}")
            self.progress(f"  {minor.status_code} refused: listing a minor")

            await self.settle(
                client,
                "1 issued",
                [
                    Question("debtor boards a flight", "airline", "person", p.debtor, "board_flight", False),
                    Question(
                        "debtor buys a first-class rail seat", "ticketing", "person", p.debtor, "buy_rail_ticket", False, "first"
                    ),
                    Question(
                        "debtor buys a second-class rail seat", "ticketing", "person", p.debtor, "buy_rail_ticket", True, "second"
                    ),
                    Question(
                        "debtor pays private tuition for a child", "admissions", "person", p.debtor, "pay_private_tuition", False
                    ),
                    Question(
                        "student pays own tuition (parent listed)", "admissions", "person", p.student, "pay_private_tuition", True
                    ),
                    Question("company buys luxury goods", "luxury-retail", "organization", p.company, "buy_luxury_goods", False),
                    Question(
                        "company's legal representative boards", "airline", "person", p.representative, "board_flight", False
                    ),
                    Question("flight-banned passenger boards", "airline", "person", p.flyer, "board_flight", False),
                    Question("flight-banned passenger buys a flight", "ticketing", "person", p.flyer, "buy_flight_ticket", False),
                    Question(
                        "flight-banned passenger buys a rail seat",
                        "ticketing",
                        "person",
                        p.flyer,
                        "buy_rail_ticket",
                        True,
                        "first",
                    ),
                    Question(
                        "rail-banned rider buys a hard seat",
                        "ticketing",
                        "person",
                        p.rider,
                        "buy_rail_ticket",
                        False,
                        "hard_seat",
                    ),
                    Question("rail-banned rider boards a flight", "airline", "person", p.rider, "board_flight", True),
                    Question(
                        "fare evader buys luxury in Hangzhou",
                        "luxury-retail",
                        "person",
                        p.fare_evader,
                        "buy_luxury_goods",
                        False,
                        region="CN-ZJ-HZ",
                    ),
                    Question(
                        "fare evader buys luxury in Beijing",
                        "luxury-retail",
                        "person",
                        p.fare_evader,
                        "buy_luxury_goods",
                        True,
                        region="CN-BJ",
                    ),
                    Question(
                        "fare evader buys luxury, no region", "luxury-retail", "person", p.fare_evader, "buy_luxury_goods", True
                    ),
                ],
            )

            self.progress("Phase 2: amend and revoke")
            extended = datetime.fromisoformat(debtor["expires_at"]) + timedelta(days=365)
            debtor = await self._publish(
                client,
                "court",
                TOKENS["court"],
                f"/v1/listings/{debtor['listing_id']}/amend",
                {
                    "expires_at": rfc3339(extended),
                    "restrictions": ["FLIGHT", "RAIL_PREMIUM", "STAR_HOTEL", "LUXURY_GOODS"],
                    "legal_basis": {"case_number": "(2026) Jing 01 Zhi 123", "decision_ref": "extension and partial lifting"},
                },
                "court debtor (person)",
            )
            await self._publish(
                client,
                "transport",
                TOKENS["caac"],
                f"/v1/listings/{flight['listing_id']}/revoke",
                {"reason": "appeal_upheld"},
                "flight ban",
            )
            await self._publish(
                client,
                "court",
                TOKENS["court"],
                f"/v1/listings/{company['listing_id']}/revoke",
                {"reason": "paid"},
                "court debtor (company)",
            )
            await self.settle(
                client,
                "2 amended+revoked",
                [
                    Question(
                        "debtor pays private tuition (lifted)", "admissions", "person", p.debtor, "pay_private_tuition", True
                    ),
                    Question("debtor boards a flight (still listed)", "airline", "person", p.debtor, "board_flight", False),
                    Question("passenger boards after appeal upheld", "airline", "person", p.flyer, "board_flight", True),
                    Question(
                        "company buys luxury after paying", "luxury-retail", "organization", p.company, "buy_luxury_goods", True
                    ),
                    Question(
                        "representative still listed in own right", "airline", "person", p.representative, "board_flight", False
                    ),
                ],
            )

            self.progress("Phase 3: expiry needs no event (checked with `at`)")
            day = timedelta(days=1)
            original_end = extended - timedelta(days=365)
            await self.settle(
                client,
                "3 expiry",
                [
                    Question(
                        "rail ban, the day after it expires",
                        "ticketing",
                        "person",
                        p.rider,
                        "buy_rail_ticket",
                        True,
                        "hard_seat",
                        at=datetime.fromisoformat(rail["expires_at"]) + day,
                    ),
                    Question(
                        "rail ban, the day before it expires",
                        "ticketing",
                        "person",
                        p.rider,
                        "buy_rail_ticket",
                        False,
                        "hard_seat",
                        at=datetime.fromisoformat(rail["expires_at"]) - day,
                    ),
                    Question(
                        "debtor after the original term (extended)",
                        "airline",
                        "person",
                        p.debtor,
                        "board_flight",
                        False,
                        at=original_end + day,
                    ),
                    Question(
                        "debtor after the extended term", "airline", "person", p.debtor, "board_flight", True, at=extended + day
                    ),
                    Question(
                        "fare evader in Hangzhou after 90 days",
                        "luxury-retail",
                        "person",
                        p.fare_evader,
                        "buy_luxury_goods",
                        True,
                        region="CN-ZJ-HZ",
                        at=datetime.fromisoformat(city["expires_at"]) + day,
                    ),
                ],
            )
        return self.outcome
