"""Where `blacklist-sync up` keeps things under $BLACKLIST_SYNC_HOME (CONTRACT section 10)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from services.kit.settings import KAFKA_CREDENTIALS_FILE


def default_home() -> Path:
    """$BLACKLIST_SYNC_HOME, or ~/.blacklist-sync when it is unset or empty."""
    configured = os.environ.get("BLACKLIST_SYNC_HOME", "").strip()
    home = Path(configured) if configured else Path.home() / ".blacklist-sync"
    return home.expanduser().absolute()


@dataclass(frozen=True)
class Layout:
    """Every path of the local stack, derived from one home directory."""

    home: Path

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def kafka_libs(self) -> Path:
        return self.kafka_dir / "libs"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def kafka_config_dir(self) -> Path:
        return self.kafka_dir / "config"

    @property
    def kafka_properties(self) -> Path:
        return self.kafka_config_dir / "server.properties"

    @property
    def kafka_log4j(self) -> Path:
        return self.kafka_config_dir / "log4j2.properties"

    @property
    def kafka_cluster_id(self) -> Path:
        return self.kafka_dir / "cluster-id"

    @property
    def kafka_credentials(self) -> Path:
        """Every Kafka identity's password (0600): services, admin, and the broker's controller identity."""
        return self.home / KAFKA_CREDENTIALS_FILE

    @property
    def kafka_admin_client_properties(self) -> Path:
        """The admin identity for Kafka's own tools: `--command-config` (0600)."""
        return self.kafka_dir / "admin-client.properties"

    @property
    def kafka_kcat_config(self) -> Path:
        """The admin identity for kcat: `kcat -F` (0600)."""
        return self.kafka_dir / "admin-kcat.conf"

    @property
    def kafka_pid(self) -> Path:
        return self.run_dir / "kafka.pid"

    @property
    def kafka_log(self) -> Path:
        return self.logs_dir / "kafka.log"

    @property
    def postgres_data(self) -> Path:
        return self.home / "postgres" / "data"

    @property
    def postgres_log(self) -> Path:
        return self.logs_dir / "postgres.log"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def keyring(self) -> Path:
        return self.home / "keyring.json"

    @property
    def env_file(self) -> Path:
        return self.home / "env"

    def ensure_dirs(self) -> None:
        for directory in (self.home, self.logs_dir, self.run_dir, self.keys_dir):
            directory.mkdir(parents=True, exist_ok=True)
