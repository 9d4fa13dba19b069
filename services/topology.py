"""Every runnable service: its ASGI app and its port (CONTRACT sections 5 and 7)."""

from __future__ import annotations

import os
from dataclasses import dataclass

# Shifts every service port, so that a second stack can run beside the first on one machine.
PORT_OFFSET = int(os.environ.get("BLACKLIST_SYNC_PORT_OFFSET", "0"))


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    app: str
    port: int
    kind: str  # "publisher" or "consumer"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SERVICES: dict[str, ServiceSpec] = {
    s.name: ServiceSpec(s.name, s.app, s.port + PORT_OFFSET, s.kind)
    for s in (
        ServiceSpec("court", "services.publishers.court.app:app", 8001, "publisher"),
        ServiceSpec("transport", "services.publishers.transport.app:app", 8002, "publisher"),
        ServiceSpec("city-pilot", "services.publishers.city_pilot.app:app", 8003, "publisher"),
        ServiceSpec("airline", "services.consumers.airline.app:app", 8101, "consumer"),
        ServiceSpec("ticketing", "services.consumers.ticketing.app:app", 8102, "consumer"),
        ServiceSpec("luxury-retail", "services.consumers.luxury_retail.app:app", 8103, "consumer"),
        ServiceSpec("admissions", "services.consumers.admissions.app:app", 8104, "consumer"),
    )
}
