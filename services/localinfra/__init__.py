"""`blacklist-sync up` / `down`: local Kafka (KRaft) and PostgreSQL, the contract's topics, schemas, keys, env file."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from schemas.catalogue import all_topics
from services.kit.settings import KafkaAuth, kafka_auth_from_env
from services.localinfra import access, kafka, postgres
from services.localinfra.credentials import SERVICE_IDENTITIES, client_properties, kcat_config, write_secret
from services.localinfra.envfile import render_env, write_env
from services.localinfra.keys import ensure_keys
from services.localinfra.layout import Layout, default_home
from services.localinfra.procs import LocalInfraError, run_coroutine
from services.localinfra.topics import ensure_topics

__all__ = [
    "LocalInfraError",
    "LocalStack",
    "create_topics",
    "default_home",
    "down",
    "is_running",
    "start_kafka",
    "start_postgres",
    "stop_kafka",
    "stop_postgres",
    "up",
]

Progress = Callable[[str], None]
EXTERNAL_KAFKA_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LocalStack:
    home: Path
    bootstrap_servers: str
    database_url: str
    keyring_path: Path


def up(home: Path | None = None, progress: Progress = print) -> LocalStack:
    """Start (or reuse) Kafka and PostgreSQL, create topics, migrate schemas, write keys and the env file."""
    layout = _layout(home)
    layout.ensure_dirs()
    with _exclusive(layout):
        # PostgreSQL first: a port set in the kernel's ephemeral range (BLACKLIST_SYNC_PG_PORT) is safe from outgoing
        # connections once it listens. Started after Kafka, it could find the port held by a connection of the
        # broker's (a CI run's PostgreSQL on the old default, 55432, once failed to bind with nothing listening there).
        database_url = _postgres_up(layout, progress)
        bootstrap_servers, admin = _kafka_up(layout, progress)
        run_coroutine(ensure_topics(bootstrap_servers, all_topics(), progress, admin))
        _migrate(database_url, progress)
        _keys_up(layout, progress)
        write_env(
            layout.env_file, render_env(bootstrap_servers, database_url, layout.keyring, layout.home, admin.security_protocol)
        )
        progress(f"env: {layout.env_file}")
    return LocalStack(layout.home, bootstrap_servers, database_url, layout.keyring)


def down(home: Path | None = None, progress: Progress = print) -> None:
    """Stop the Kafka and PostgreSQL that `up` started here (by their pid files); data is kept."""
    layout = _layout(home)
    if not layout.home.exists():
        progress(f"nothing to stop: {layout.home} does not exist")
        return
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(layout):
        kafka.stop(layout, progress)
        postgres.stop(layout, progress)


def is_running(home: Path | None = None) -> bool:
    """Whether this home's Kafka and PostgreSQL are both up (so a caller knows not to stop them after)."""
    layout = _layout(home)
    return kafka.running(layout) and postgres.running(layout)


async def create_topics(bootstrap_servers: str, progress: Progress = print, auth: KafkaAuth | None = None) -> None:
    """Create every contract topic missing on the given cluster (`blacklist-sync init`), as the admin identity."""
    await ensure_topics(bootstrap_servers, all_topics(), progress, auth or kafka_auth_from_env(None, default_home()))


def start_kafka(home: Path | None = None, progress: Progress = print) -> None:
    """Start the local broker again after stop_kafka (no fetching); waits until it answers."""
    kafka.start(_layout(home), progress)


def stop_kafka(home: Path | None = None, progress: Progress = print) -> None:
    kafka.stop(_layout(home), progress)


def start_postgres(home: Path | None = None, progress: Progress = print) -> None:
    """Start the local PostgreSQL again after stop_postgres (no initdb); waits until it accepts connections."""
    postgres.start(_layout(home), progress)


def stop_postgres(home: Path | None = None, progress: Progress = print, mode: str = "fast") -> None:
    postgres.stop(_layout(home), progress, mode)


def _kafka_up(layout: Layout, progress: Progress) -> tuple[str, KafkaAuth]:
    """The cluster's bootstrap servers and the admin identity that `up` (and the tests, and ops) use on it."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    # The env file names our own broker: sourcing it must not turn that broker into someone else's.
    if configured and not (configured == kafka.BOOTSTRAP_SERVERS and kafka.running(layout)):
        admin = _external_kafka_up(layout, configured, progress)
        _client_configs_up(layout, configured, admin, progress)
        return configured, admin
    kafka.fetch_jars(layout, progress)
    kafka.start(layout, progress)
    admin = kafka.local_credentials(layout, progress).admin if kafka.access_controlled() else KafkaAuth("PLAINTEXT")
    _client_configs_up(layout, kafka.BOOTSTRAP_SERVERS, admin, progress)
    return kafka.BOOTSTRAP_SERVERS, admin


def _external_kafka_up(layout: Layout, bootstrap_servers: str, progress: Progress) -> KafkaAuth:
    """A given cluster: the admin comes from KAFKA_SASL_* (else this home's credentials file); it registers the services."""
    progress(f"kafka: using KAFKA_BOOTSTRAP_SERVERS={bootstrap_servers} (not starting one)")
    admin = kafka_auth_from_env(None, layout.home)
    kafka.wait_ready(bootstrap_servers, EXTERNAL_KAFKA_TIMEOUT_S, auth=admin)
    if not admin.uses_sasl:
        progress("kafka: no credentials given (KAFKA_SASL_USERNAME/PASSWORD): service identities and ACLs not set")
        return admin
    credentials = kafka.local_credentials(layout, progress)
    services = {name: credentials.users[name] for name in SERVICE_IDENTITIES}
    run_coroutine(access.provision(bootstrap_servers, admin, services, progress))
    return admin


def _client_configs_up(layout: Layout, bootstrap_servers: str, admin: KafkaAuth, progress: Progress) -> None:
    """The admin identity for Kafka's own tools (--command-config) and for kcat (-F), both 0600."""
    if not admin.uses_sasl:
        return
    write_secret(layout.kafka_admin_client_properties, client_properties(admin, bootstrap_servers))
    write_secret(layout.kafka_kcat_config, kcat_config(admin, bootstrap_servers))
    if layout.kafka_credentials.exists():
        progress(f"kafka: each service's password in {layout.kafka_credentials} (mode 0600)")
    progress(f"kafka: admin client config for Kafka's tools: --command-config {layout.kafka_admin_client_properties}")


def _postgres_up(layout: Layout, progress: Progress) -> str:
    configured = os.environ.get("DATABASE_URL", "").strip()
    if configured:
        progress("postgres: using DATABASE_URL (not starting one)")
        return configured
    postgres.init(layout, progress)
    postgres.start(layout, progress)
    if run_coroutine(postgres.ensure_database(postgres.database_url("postgres"))):
        progress(f"postgres: created database {postgres.DATABASE}")
    return postgres.database_url()


def _migrate(database_url: str, progress: Progress) -> None:
    from services.kit.migrations import migrate_all  # late: localinfra stays importable without the kit

    progress("schemas: migrating")
    run_coroutine(migrate_all(database_url))


def _keys_up(layout: Layout, progress: Progress) -> None:
    created = ensure_keys(layout.keys_dir, layout.keyring)
    if created:
        progress(f"keys: created {', '.join(created)} in {layout.keys_dir}")
    progress(f"keys: keyring {layout.keyring}")


def _layout(home: Path | None) -> Layout:
    # Absolute: pg_ctl runs with cwd "/" and the pid-file checks compare command lines.
    return Layout((home or default_home()).expanduser().absolute())


@contextmanager
def _exclusive(layout: Layout) -> Iterator[None]:
    """One `up`/`down` at a time per home: two racing `up`s would start two brokers."""
    with (layout.run_dir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
