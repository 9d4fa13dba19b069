"""Run a service the FastStream way: `faststream run services.<family>.<name>.app:stream [--workers N]`.

`as_faststream(app)` wraps a service's FastAPI `app` in a FastStream `AsgiFastStream` that serves the same
HTTP routes and runs the same FastAPI lifespan, so both entry points behave alike:

- The FastAPI lifespan stays the one place that builds the pool, keyring and producers and starts the Kafka
  broker; FastStream starts and stops no broker itself (its `_start_broker` is a no-op here), so a consumer's
  broker is never started twice or stopped before its in-flight batch is committed.
- SIGTERM: `faststream run` serves the app with uvicorn, which turns SIGTERM into a lifespan shutdown, so a
  consumer runs its normal shutdown (`Pipeline.close()`: the in-flight batch is finished and its offsets
  committed, a later batch is rewound uncommitted), then stops the broker and exits 0.
- `--workers N` is safe for every service. Consumers: each worker joins the contract's group and gets its share
  of partitions; the copy is shared in PostgreSQL and applies are version-guarded. Each worker also runs its own
  retention sweeper, which is harmless (an idempotent UPDATE). Publishers: each worker runs an outbox relay,
  and a relay pass takes a per-transaction advisory lock (`take_relay_turn`), so one publishes at a time.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from faststream.asgi import AsgiFastStream
from faststream.asgi.types import Receive, Scope, Send


class ServiceStream(AsgiFastStream):
    """An `AsgiFastStream` whose HTTP and lifespan are the wrapped FastAPI app's."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__()
        self.service_app = app
        # FastStream enters lifespan_context around its start/stop hooks: ours is the FastAPI lifespan itself.
        self.lifespan_context = self._service_lifespan

    def _service_lifespan(self, *_: Any, **__: Any) -> AbstractAsyncContextManager[Any]:
        return self.service_app.router.lifespan_context(self.service_app)

    async def run(self, log_level: int = logging.INFO, run_extra_options: dict[str, Any] | None = None) -> None:
        """`faststream run` without `--workers`: uvicorn keeps the service's JSON logging (configured when the app was
        built) rather than installing its plain-text handlers, so its startup and access lines are JSON too."""
        await super().run(log_level, {"log_config": None, **(run_extra_options or {})})

    async def _start_broker(self) -> None:
        """The FastAPI lifespan starts the service's broker; FastStream has none of its own to start."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # AsgiFastStream routes by exact path only; every HTTP request belongs to the FastAPI app (path params too).
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
            return
        await self.service_app(scope, receive, send)


def as_faststream(app: FastAPI) -> AsgiFastStream:
    """The FastStream entry point for a service's FastAPI app: same routes, same lifespan, started by `faststream run`."""
    return ServiceStream(app)
