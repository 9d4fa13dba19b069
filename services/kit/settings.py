"""Configuration of CONTRACT section 9, read from the environment once at start-up."""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TOKENS: dict[str, str] = {
    "court.*": "court-dev-token",
    "transport.caac": "caac-dev-token",
    "transport.railway": "railway-dev-token",
    "city.*": "city-dev-token",
}
DEFAULT_SUBJECT_HASH_KEY = "dev-only-subject-key"
LOCAL_KEY_IDS: dict[str, tuple[str, ...]] = {
    "court-dev": ("court.*",),
    "caac-dev": ("transport.caac",),
    "railway-dev": ("transport.railway",),
    "city-dev": ("city.*",),
}
# Kafka identities: `up` writes one password per service and the admin into this file (mode 0600).
KAFKA_CREDENTIALS_FILE = "kafka-credentials.json"
ADMIN_IDENTITY = "admin"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
DEFAULT_SASL_MECHANISM = "SCRAM-SHA-256"


def home_dir() -> Path:
    return Path(os.environ.get("BLACKLIST_SYNC_HOME") or Path.home() / ".blacklist-sync")


def local_env(home: Path) -> dict[str, str]:
    """The KEY=value lines `blacklist-sync up` wrote for the running local stack."""
    path = home / "env"
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip().removeprefix("export ").strip(): v.strip().strip("'\"") for k, v in pairs}


@dataclass(frozen=True)
class KafkaAuth:
    """How one Kafka client proves who it is: nothing (PLAINTEXT) or a SASL identity."""

    security_protocol: str = "PLAINTEXT"
    mechanism: str = DEFAULT_SASL_MECHANISM
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} is not one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.mechanism not in SASL_MECHANISMS:
            raise ValueError(f"KAFKA_SASL_MECHANISM={self.mechanism} is not one of {', '.join(SASL_MECHANISMS)}")
        if self.uses_sasl and not (self.username and self.password):
            raise ValueError(f"{self.security_protocol} needs a Kafka username and password (KAFKA_SASL_USERNAME/PASSWORD)")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def aiokafka_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin, connection)."""
        if not self.uses_sasl:
            return {"security_protocol": self.security_protocol}
        options: dict[str, Any] = {
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }
        if self.security_protocol == "SASL_SSL":
            options["ssl_context"] = ssl.create_default_context()
        return options


def read_kafka_credentials(home: Path) -> dict[str, str] | None:
    """username -> password from the file `up` writes, or None when there is no such file (no access control)."""
    path = home / KAFKA_CREDENTIALS_FILE
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is unreadable or not JSON ({exc}); remove it and run `blacklist-sync up` again") from exc
    users = document.get("users") if isinstance(document, dict) else None
    if not isinstance(users, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in users.items()):
        raise ValueError(f'{path} must hold {{"users": {{"<name>": "<password>"}}}}; remove it and run `blacklist-sync up` again')
    return users


def kafka_auth_from_env(service: str | None, home: Path, environ: Mapping[str, str] | None = None) -> KafkaAuth:
    """The identity of `service` (None: the admin identity of ops tools and tests).

    The environment wins (KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM /
    KAFKA_SECURITY_PROTOCOL); what it leaves out comes from the credentials file `up` wrote in `home`.
    Without either, the client connects as before, with no authentication.
    """
    # The env file `up` wrote says whether the local broker authenticates at all (it never holds a password).
    environ = environ if environ is not None else {**local_env(home), **os.environ}
    protocol = environ.get("KAFKA_SECURITY_PROTOCOL") or None
    mechanism = environ.get("KAFKA_SASL_MECHANISM") or DEFAULT_SASL_MECHANISM
    if protocol == "PLAINTEXT":
        return KafkaAuth("PLAINTEXT", mechanism)
    username = environ.get("KAFKA_SASL_USERNAME") or None
    password = environ.get("KAFKA_SASL_PASSWORD") or None
    if password is None:
        users = read_kafka_credentials(home)
        if users is None and username is None:  # no access control configured anywhere: connect as before
            return KafkaAuth(protocol or "PLAINTEXT", mechanism)
        username = username or service or ADMIN_IDENTITY
        password = _password_of(username, users, home)
    return KafkaAuth(protocol or "SASL_PLAINTEXT", mechanism, username or service or ADMIN_IDENTITY, password)


def _password_of(username: str, users: dict[str, str] | None, home: Path) -> str:
    password = (users or {}).get(username)
    if password is None:
        where = str(home / KAFKA_CREDENTIALS_FILE) if users is not None else "the environment"
        raise ValueError(f"no Kafka password for {username!r} in {where}: set KAFKA_SASL_PASSWORD, or run `blacklist-sync up`")
    return password


@dataclass(frozen=True)
class Settings:
    home: Path
    kafka_bootstrap_servers: str
    database_url: str
    publisher_tokens: dict[str, str]
    subject_hash_key: bytes
    keyring_path: Path
    signing_keys: dict[str, str] = field(default_factory=dict)
    service: str | None = None
    kafka_auth: KafkaAuth = field(default_factory=KafkaAuth)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @classmethod
    def from_env(cls, service: str | None = None) -> Settings:
        """Settings of `service` (its Kafka identity included); None for tools that act as the admin."""
        home = home_dir()
        local = local_env(home)

        def get(name: str, default: str) -> str:
            return os.environ.get(name) or local.get(name) or default

        tokens_raw = os.environ.get("PUBLISHER_TOKENS")
        tokens = json.loads(tokens_raw) if tokens_raw else dict(DEFAULT_TOKENS)
        if not isinstance(tokens, dict) or not all(isinstance(v, str) for v in tokens.values()):
            raise ValueError('PUBLISHER_TOKENS must be a JSON object {"<authority>": "<token>"}')
        signing_raw = os.environ.get("SIGNING_KEYS")
        signing = json.loads(signing_raw) if signing_raw else {}
        return cls(
            home=home,
            kafka_bootstrap_servers=get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
            database_url=get("DATABASE_URL", "postgresql://postgres@127.0.0.1:15432/blacklist_sync"),
            publisher_tokens=tokens,
            subject_hash_key=get("SUBJECT_HASH_KEY", DEFAULT_SUBJECT_HASH_KEY).encode(),
            keyring_path=Path(get("AUTHORITY_KEYRING", str(home / "keyring.json"))),
            signing_keys=signing,
            service=service,
            kafka_auth=kafka_auth_from_env(service, home),
        )
