"""A minimal ASGI app for tests/unit/test_serve_workers.py: answers its worker's pid; its lifespan shutdown leaves
a file named after that pid in $SERVE_APP_MARKS, so a test can tell each worker stopped gracefully."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                (Path(os.environ["SERVE_APP_MARKS"]) / str(os.getpid())).touch()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
