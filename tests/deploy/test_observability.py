"""deploy/observability: promtool checks and unit-tests the alerts, parses every dashboard query; names are real metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

from services.kit import metrics
from tests.deploy.conftest import ROOT, broken_copy, run_validator

pytestmark = pytest.mark.deploy

OBSERVABILITY = ROOT / "deploy" / "observability"
VALIDATE = OBSERVABILITY / "validate.sh"
RULES = OBSERVABILITY / "prometheus" / "alerts.yaml"
DASHBOARD = OBSERVABILITY / "grafana" / "blacklist-sync.json"
# Announced for issue 6 by the lead, not yet in services/kit/metrics.py: drop a name here once it is defined there.
ANNOUNCED = {"blacklist_consumer_lag", "blacklist_copy_last_applied_timestamp_seconds"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_series() -> set[str]:
    """Every series name services/kit/metrics.py exposes on /metrics."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.collect():
                names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def referenced(path: Path) -> set[str]:
    return set(re.findall(r"\bblacklist_[a-z_]+\b", path.read_text()))


def test_rules_and_dashboard_pass_promtool() -> None:
    outcome = run_validator(VALIDATE)
    assert outcome.returncode == 0, outcome.output
    assert "SUCCESS" in outcome.output and "validate: ok" in outcome.output


@pytest.mark.parametrize("path", [RULES, DASHBOARD], ids=["alerts", "dashboard"])
def test_every_metric_used_is_one_the_services_export(path: Path) -> None:
    used = referenced(path)
    assert used, f"no blacklist_* metric found in {path}"
    assert used - exported_series() - ANNOUNCED == set()


def test_alert_rules_cover_lag_dead_letters_outbox_and_stale_copies() -> None:
    used = referenced(RULES)
    for needed in (
        "blacklist_consumer_lag",
        "blacklist_events_dead_lettered_total",
        "blacklist_outbox_backlog",
        "blacklist_copy_last_applied_timestamp_seconds",
    ):
        assert needed in used


@pytest.mark.parametrize(
    ("file", "old", "new", "says"),
    [
        (
            "prometheus/alerts.yaml",
            "sum by (consumer) (blacklist_consumer_lag) > 10000",
            "sum by (consumer) (blacklist_consumer_lag > 10000",
            "FAILED",
        ),
        # The alert still parses but no longer fires where its unit test says it must.
        ("prometheus/alerts.yaml", "(blacklist_consumer_lag) > 10000", "(blacklist_consumer_lag) > 100000", "FAILED"),
        (
            "grafana/blacklist-sync.json",
            "max by (service) (blacklist_outbox_backlog)",
            "max by (service (blacklist_outbox_backlog)",
            "FAILED",
        ),
        ("grafana/blacklist-sync.json", 'consumer=~\\"$consumer\\"', 'consumer=~\\"$merchant\\"', "undefined variables"),
    ],
)
def test_a_broken_rule_or_dashboard_query_fails_validation(tmp_path: Path, file: str, old: str, new: str, says: str) -> None:
    replace = broken_copy(OBSERVABILITY, tmp_path / "observability")
    replace(file, old, new)
    outcome = run_validator(VALIDATE, tmp_path / "observability")
    assert outcome.returncode != 0, outcome.output
    assert says in outcome.output
