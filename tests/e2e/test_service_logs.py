"""Every line a service writes is one JSON object (CONTRACT: logs a shipper can parse), FastStream's and uvicorn's
lines included, and no consumer warns about topics it was never meant to create."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.topology import SERVICES
from tests.conftest import Infra

pytestmark = pytest.mark.e2e
FIELDS = {"time", "level", "service", "logger", "message"}


def lines_of(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if line.strip()]


async def test_every_service_log_line_is_a_json_object_with_the_common_fields(infra: Infra, services: dict[str, str]) -> None:
    logs = {name: infra.home / "logs" / "tests" / f"{name}.log" for name in services}
    assert set(logs) == set(SERVICES)
    not_json, missing = [], []
    for name, log in logs.items():
        for line in lines_of(log):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                not_json.append(f"{name}: {line[:160]}")
                continue
            if not isinstance(entry, dict) or not entry.keys() >= FIELDS:
                missing.append(f"{name}: {line[:160]}")
    assert not not_json, "\n".join(not_json[:10])
    assert not missing, "\n".join(missing[:10])
    consumers = [name for name, spec in SERVICES.items() if spec.kind == "consumer"]
    silent = [name for name in consumers if not lines_of(logs[name])]
    assert not silent, f"no line at all from {silent}: each consumer says what it consumes once it has started"


async def test_no_consumer_tries_to_create_the_topics_it_reads(infra: Infra, services: dict[str, str]) -> None:
    consumers = [name for name, spec in SERVICES.items() if spec.kind == "consumer" and name in services]
    assert consumers
    for name in consumers:
        text = (infra.home / "logs" / "tests" / f"{name}.log").read_text(errors="replace")
        assert "Failed to create topic" not in text, name
