"""Structured logs: one JSON object per line on stderr, with event_id and listing_id when a line has them."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from schemas.events import rfc3339

# Attributes every LogRecord has; anything else was passed in `extra=` and belongs in the JSON line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


FASTSTREAM_BROKER = "faststream.kafka"


class _SupervisorChatter(logging.Filter):
    """FastStream's task supervisor says "callback for Task-N is being executed..." at INFO whenever a subscriber's
    task ends, which tells an operator nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("callback for ")


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": rfc3339(datetime.fromtimestamp(record.created, UTC), "milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(service: str) -> None:
    """JSON lines for this process; LOG_LEVEL (default INFO) sets the level. Safe to call twice."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    # A logger's own level decides for the records it passes up (the root's does not filter them again): never
    # below LOG_LEVEL.
    for noisy in ("aiokafka", "faststream"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # The consumers' FastStream broker logs here (services.kit.kafka): its partition assignments at INFO say which
    # instance holds what after a rebalance; its per-batch lines are DEBUG.
    broker = logging.getLogger(FASTSTREAM_BROKER)
    broker.setLevel(max(logging.INFO, root.level))
    if not any(isinstance(f, _SupervisorChatter) for f in broker.filters):
        broker.addFilter(_SupervisorChatter())
    # FastStream's own logger (and uvicorn's) come with plain-text handlers of their own: through the root instead.
    for name in ("faststream", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
