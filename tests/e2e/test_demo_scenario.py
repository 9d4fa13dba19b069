"""The demo scenario against the services running as processes: every answer as the law expects."""

from __future__ import annotations

import pytest

from services.scenario import Scenario

pytestmark = pytest.mark.e2e


async def test_demo_scenario_answers_every_question_as_expected(services: dict[str, str]) -> None:
    outcome = await Scenario(services, progress=lambda _: None).run()
    wrong = [(a.phase, a.question.label, a.allowed) for a in outcome.answers if not a.ok]
    assert not wrong, wrong
    assert len(outcome.answers) == 25
    assert any("minors cannot be listed" in r for r in outcome.refusals)
    company = outcome.listings["court debtor (company)"]
    representative = outcome.listings["court debtor (company).representative"]
    assert representative["subject"]["kind"] == "person"
    assert representative["legal_basis"]["case_number"] == company["legal_basis"]["case_number"]
    assert representative["listing_id"] != company["listing_id"]
