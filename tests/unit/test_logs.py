"""Every log line a service writes is one JSON object: its own, FastStream's and the consumers' broker lines alike."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from services.kit import logs

TOUCHED = ("", "aiokafka", "faststream", logs.FASTSTREAM_BROKER, "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """configure() rewires process-wide loggers: put them back for the tests after this one."""
    saved = {
        name: (list(lg.handlers), lg.level, lg.propagate, list(lg.filters))
        for name in TOUCHED
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate, filters) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.filters[:] = handlers, filters
        lg.setLevel(level)
        lg.propagate = propagate


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_faststream_lines_come_out_as_json_through_the_root(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    logging.getLogger("faststream").addHandler(logging.StreamHandler())  # as FastStream sets itself up on import
    logs.configure("airline")
    logging.getLogger(logs.FASTSTREAM_BROKER).info("Consumer m-1 assigned to partitions: (p0)", extra={"group_id": "airline"})
    logging.getLogger("faststream").warning("something FastStream itself says")

    out = lines(capsys.readouterr().err)
    assert [(e["logger"], e["level"], e["service"]) for e in out] == [
        (logs.FASTSTREAM_BROKER, "info", "airline"),
        ("faststream", "warning", "airline"),
    ]
    assert out[0]["group_id"] == "airline"


def test_supervisor_chatter_and_per_batch_debug_lines_are_dropped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    logs.configure("airline")
    logs.configure("airline")  # twice: still one filter, one handler
    broker = logging.getLogger(logs.FASTSTREAM_BROKER)
    broker.info("callback for Task-26 is being executed...")
    broker.debug("Received")
    logging.getLogger("faststream").info("below WARNING")

    assert capsys.readouterr().err == ""
    assert len(broker.filters) == 1 and len(logging.getLogger().handlers) == 1


def test_log_level_above_info_silences_the_broker_s_info_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    logs.configure("airline")
    logging.getLogger(logs.FASTSTREAM_BROKER).info("Consumer m-1 assigned to partitions: (p0)")
    logging.getLogger("faststream").warning("a warning")
    logging.getLogger("services.consumers.app").error("an error")

    assert [e["message"] for e in lines(capsys.readouterr().err)] == ["an error"]
