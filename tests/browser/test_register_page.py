"""The public register page in a real headless Chromium: search, result, no result, bad input, and a screenshot."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Published
from tests.conftest import Infra

pytestmark = [pytest.mark.integration, pytest.mark.browser]

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
DRIVER_TIMEOUT_S = 120


def _require_browser_tools() -> str:
    node = shutil.which("node")
    missing = [
        what
        for what, present in (
            ("node (apt-get install -y nodejs npm)", node is not None),
            (f"{CHROMIUM} (apt-get install -y chromium)", Path(CHROMIUM).exists()),
            ("playwright-core (npm ci --prefix tests/browser)", (HERE / "node_modules" / "playwright-core").is_dir()),
        )
        if not present
    ]
    if missing:
        pytest.fail("browser test needs: " + "; ".join(missing))
    assert node is not None
    return node


def drive(plan: dict[str, Any]) -> dict[str, Any]:
    """Run the Chromium driver with a plan; its JSON report is what the page showed."""
    node = _require_browser_tools()
    done = subprocess.run(
        [node, str(HERE / "drive_register.mjs"), json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
        cwd=HERE,
    )
    assert done.returncode == 0, f"driver failed:\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.fixture(scope="module")
def page_report(services: dict[str, str], register_listings: Published, infra: Infra) -> dict[str, Any]:
    screenshot = infra.home / "screenshots" / "register.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    return drive(
        {
            "executablePath": CHROMIUM,
            "baseUrl": services["court"],
            "searches": [
                {"name": "by_name", "query": register_listings.family},
                {"name": "by_id", "query": register_listings.debtor_id},
                {"name": "nobody", "query": f"Nobody {register_listings.family}"},
                {"name": "revoked", "query": register_listings.revoked_id},
                {"name": "too_long", "query": "x" * 65},
                {"name": "blank", "query": "   "},
            ],
            "screenshot": {"after": "by_name", "path": str(screenshot)},
        }
    )


def test_search_by_name_lists_the_debtor_with_masked_id_case_court_and_dates(
    page_report: dict[str, Any], register_listings: Published
) -> None:
    shown = page_report["searches"]["by_name"]
    assert shown["status"] == 200
    debtor = next(x for x in shown["listings"] if x["heading"].startswith(register_listings.debtor_name))
    listing = register_listings.debtor
    assert debtor["fields"]["Id"] == listing["subject"]["id_masked"]
    assert debtor["fields"]["Case number"] == listing["legal_basis"]["case_number"]
    assert debtor["fields"]["Court"] == listing["authority"]
    assert debtor["fields"]["Listed from"] == listing["effective_from"][:10]
    assert debtor["fields"]["Listed until"] == listing["expires_at"][:10]
    assert "taking flights" in debtor["fields"]["Restricted from"]
    headings = " ".join(x["heading"] for x in shown["listings"])
    assert register_listings.revoked_name not in headings
    assert register_listings.expired_name not in headings
    assert "How to request a correction" in shown["correction"]


def test_search_by_id_finds_the_listing_and_the_page_never_shows_the_raw_id(
    page_report: dict[str, Any], register_listings: Published
) -> None:
    shown = page_report["searches"]["by_id"]
    assert [x["fields"]["Listing id"] for x in shown["listings"]] == [register_listings.debtor["listing_id"]]
    assert register_listings.debtor_id not in shown["bodyText"]
    assert register_listings.debtor_id not in shown["url"]  # the form posts: no id in the address bar or history


def test_search_with_no_match_says_so(page_report: dict[str, Any]) -> None:
    for name in ("nobody", "revoked"):
        shown = page_report["searches"][name]
        assert shown["status"] == 200
        assert shown["listings"] == []
        assert shown["none"] is not None and shown["none"].startswith("No listing in force matches")


def test_bad_input_shows_a_clear_message_and_keeps_what_was_typed(page_report: dict[str, Any]) -> None:
    too_long = page_report["searches"]["too_long"]
    assert too_long["status"] == 422
    assert "too long" in too_long["error"]
    assert too_long["inputValue"] == "x" * 65
    blank = page_report["searches"]["blank"]
    assert blank["status"] == 422
    assert "Enter a name" in blank["error"]


def test_screenshot_of_the_result_page_is_saved(page_report: dict[str, Any]) -> None:
    path = Path(page_report["screenshot"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nregister screenshot: {path}")
