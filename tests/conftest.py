"""Shared fixtures: real Kafka and PostgreSQL (from the environment, testcontainers, or the local stack)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Infra:
    bootstrap_servers: str
    database_url: str
    home: Path
    keyring_path: Path

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "DATABASE_URL": self.database_url,
            "BLACKLIST_SYNC_HOME": str(self.home),
            "AUTHORITY_KEYRING": str(self.keyring_path),
        }


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else testcontainers with Docker, else `blacklist-sync up`."""
    from services import localinfra

    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("DATABASE_URL"):
        stack = localinfra.up()  # starts nothing: both are given; creates topics, migrates, writes keys
        yield Infra(stack.bootstrap_servers, stack.database_url, stack.home, stack.keyring_path)
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, PostgresContainer("postgres:16") as pg:
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = kafka.get_bootstrap_server()
            os.environ["DATABASE_URL"] = pg.get_connection_url(driver=None)
            os.environ["BLACKLIST_SYNC_HOME"] = str(tmp_path_factory.mktemp("home"))
            stack = localinfra.up()
            yield Infra(stack.bootstrap_servers, stack.database_url, stack.home, stack.keyring_path)
        return
    stack = localinfra.up()
    for name, value in Infra(stack.bootstrap_servers, stack.database_url, stack.home, stack.keyring_path).env().items():
        os.environ[name] = value
    yield Infra(stack.bootstrap_servers, stack.database_url, stack.home, stack.keyring_path)


@pytest.fixture(scope="session")
def services(infra: Infra) -> Iterator[dict[str, str]]:
    """All seven services as real processes on their contract ports; yields name -> base URL."""
    from services import runner
    from services.topology import SERVICES

    log_dir = infra.home / "logs" / "tests"
    shutil.rmtree(log_dir, ignore_errors=True)  # this session's lines only: a test reads them whole
    running = runner.start(SERVICES, log_dir, env=infra.env())
    try:
        runner.wait_ready(running, timeout=120, progress=lambda _: None)
        yield {r.spec.name: r.url for r in running}
    finally:
        runner.stop(running)
