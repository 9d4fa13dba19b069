"""Schemathesis against each of the seven services' OpenAPI documents: no generated or mutated request gets a 5xx."""

# Runs the `schemathesis run` command (examples, coverage, fuzzing and stateful phases, positive and negative data)
# against the running services: schemathesis' own pytest plugin fails on pytest 9 (it sets Function._nodeid).

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.scenario import TOKENS
from services.topology import SERVICES
from tests.integration.helpers import court_listing, fresh_person, publish

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 25  # per operation and phase; all seven services take about a minute on two cores
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Publishers need a token of their own family, else every request stops at 401 before the route's own validation.
PUBLISHER_TOKENS = {"court": TOKENS["court"], "transport": TOKENS["caac"], "city-pilot": TOKENS["city"]}


class Summary:
    """Collects each service's figures and prints them at the end of the run (a plugin registered at run time)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.lines:
            terminalreporter.section("schemathesis")
            for line in self.lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest) -> Summary:
    plugin = Summary()
    request.config.pluginmanager.register(plugin, "schemathesis-summary")
    return plugin


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def listing_ids(services: dict[str, str]) -> dict[str, str]:
    """A real listing per publisher, so the routes taking a listing id reach past 404 into their own validation."""
    subject: dict[str, Any] = {"kind": "person", "id": fresh_person(), "name": "Schema Thesis"}
    async with httpx.AsyncClient(timeout=15) as client:
        court = await court_listing(client, services, fresh_person())
        caac = await publish(
            client,
            services["transport"],
            TOKENS["caac"],
            "/v1/listings",
            {
                "authority": "transport.caac",
                "list": "transport.flight_ban",
                "subject": subject,
                "legal_basis": {"case_number": "S-1"},
            },
        )
        city = await publish(
            client,
            services["city-pilot"],
            TOKENS["city"],
            "/v1/listings",
            {
                "authority": "city.hangzhou",
                "list": "city.hangzhou.transit_fare_evasion",
                "subject": subject | {"id": fresh_person()},
                "legal_basis": {"case_number": "S-2"},
                "term_days": 90,
            },
        )
    return {"court": court["listing_id"], "transport": caac["listing"]["listing_id"], "city-pilot": city["listing"]["listing_id"]}


def run_schemathesis(
    url: str, workdir: Path, token: str | None, listing_id: str | None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    config = workdir / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.listing_id" = {json.dumps(listing_id)}\n' if listing_id else "")
    report = workdir / "report.json"
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--report",
        "json",
        "--report-dir",
        str(workdir),
        "--report-json-path",
        str(report),
        *(["--header", f"Authorization: Bearer {token}"] if token else []),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    return finished, json.loads(report.read_text()) if report.exists() else {}


@pytest.mark.parametrize("service", list(SERVICES))
def test_no_generated_request_gets_a_server_error(
    service: str, services: dict[str, str], listing_ids: dict[str, str], summary: Summary, tmp_path: Path
) -> None:
    finished, report = run_schemathesis(services[service], tmp_path, PUBLISHER_TOKENS.get(service), listing_ids.get(service))

    assert report, (
        f"schemathesis wrote no report (exit {finished.returncode}):\n{finished.stdout[-3000:]}\n{finished.stderr[-2000:]}"
    )
    cases = report["test_cases"]["generated"]
    server_errors = [f for f in report["failures"] if "server" in json.dumps(f).lower()]
    summary.lines.append(
        f"{service}: {cases} cases over {report['operations']['tested']} operations, {len(report['failures'])} failures "
        f"({len(server_errors)} 5xx), {len(report['errors'])} errors, seed {report['seed']}, {report['running_time']:.1f}s"
    )
    assert report["operations"]["tested"] == report["operations"]["total"] > 0
    assert cases > 0
    assert report["failures"] == [], f"seed {report['seed']}:\n{finished.stdout[-6000:]}"
    assert report["errors"] == [], f"seed {report['seed']}:\n{finished.stdout[-6000:]}"
    assert finished.returncode == 0, finished.stdout[-3000:]
