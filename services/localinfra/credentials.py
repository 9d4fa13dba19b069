"""Kafka identities of a stack: a random password per service and for the admin, kept 0600 in $BLACKLIST_SYNC_HOME."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from schemas.catalogue import CONSUMERS, PUBLISHERS
from services.kit.settings import ADMIN_IDENTITY, DEFAULT_SASL_MECHANISM, KAFKA_CREDENTIALS_FILE, KafkaAuth

# Every client identity; the admin is a super user (used by `up`, the ops tools and the tests).
IDENTITIES: tuple[str, ...] = (ADMIN_IDENTITY, *PUBLISHERS, *CONSUMERS)
SERVICE_IDENTITIES: tuple[str, ...] = (*PUBLISHERS, *CONSUMERS)
# Broker <-> controller only, over SASL/PLAIN: KRaft cannot use SCRAM there (SCRAM users live in the metadata log).
CONTROLLER_IDENTITY = "controller"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


@dataclass(frozen=True)
class KafkaCredentials:
    users: dict[str, str]
    controller_password: str

    def auth(self, name: str) -> KafkaAuth:
        return KafkaAuth("SASL_PLAINTEXT", DEFAULT_SASL_MECHANISM, name, self.users[name])

    @property
    def admin(self) -> KafkaAuth:
        return self.auth(ADMIN_IDENTITY)

    @property
    def controller(self) -> KafkaAuth:
        return KafkaAuth("SASL_PLAINTEXT", "PLAIN", CONTROLLER_IDENTITY, self.controller_password)

    def document(self) -> dict[str, object]:
        return {
            "mechanism": DEFAULT_SASL_MECHANISM,
            "users": self.users,
            "controller": {"username": CONTROLLER_IDENTITY, "password": self.controller_password},
        }


def credentials_path(home: Path) -> Path:
    return home / KAFKA_CREDENTIALS_FILE


def new_password() -> str:
    # URL-safe base64: no quote, bracket, comma or '=' to escape in JAAS, properties, shell or --add-scram.
    return secrets.token_urlsafe(24)


def ensure_credentials(path: Path) -> tuple[KafkaCredentials, list[str]]:
    """Load the credentials file, adding a password for every identity it lacks; returns (credentials, names added)."""
    existing = _load(path)
    users = dict(existing.users) if existing else {}
    added = [name for name in IDENTITIES if name not in users]
    users.update({name: new_password() for name in added})
    controller = existing.controller_password if existing else new_password()
    credentials = KafkaCredentials(users, controller)
    if added or existing is None:
        write_secret(path, json.dumps(credentials.document(), indent=2) + "\n")
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)  # someone loosened it: these are passwords
    return credentials, added


def _load(path: Path) -> KafkaCredentials | None:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ValueError(f"{path} is not JSON ({exc}); remove it and run `blacklist-sync up` again") from exc
    try:
        users = {str(k): str(v) for k, v in document["users"].items()}
        return KafkaCredentials(users, str(document["controller"]["password"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} lacks users or the controller password; remove it and run `blacklist-sync up` again") from exc


def write_secret(path: Path, content: str, mode: int = 0o600) -> None:
    """Write atomically with `mode` from the first byte (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w") as out:
        out.write(content)
    temporary.replace(path)


def scram_jaas(username: str, password: str) -> str:
    return f'{SCRAM_LOGIN} required username="{username}" password="{password}";'


def controller_jaas(password: str) -> str:
    """Server and client side of the controller listener: one static PLAIN user."""
    user = CONTROLLER_IDENTITY
    return f'{PLAIN_LOGIN} required username="{user}" password="{password}" user_{user}="{password}";'


def client_properties(auth: KafkaAuth, bootstrap_servers: str | None = None) -> str:
    """A client config for Kafka's own tools (`--command-config` / `--consumer.config`)."""
    assert auth.username is not None and auth.password is not None
    lines = ["# Written by `blacklist-sync up`: the admin identity for Kafka's own tools (--command-config)."]
    if bootstrap_servers:
        lines.append(f"bootstrap.servers={bootstrap_servers}")
    lines += [
        f"security.protocol={auth.security_protocol}",
        f"sasl.mechanism={auth.mechanism}",
        f"sasl.jaas.config={scram_jaas(auth.username, auth.password)}",
    ]
    return "\n".join(lines) + "\n"


def kcat_config(auth: KafkaAuth, bootstrap_servers: str) -> str:
    """The same identity for kcat / librdkafka (`kcat -F FILE`)."""
    return (
        "# Written by `blacklist-sync up`: the admin identity for kcat (kcat -F this-file).\n"
        f"bootstrap.servers={bootstrap_servers}\n"
        f"security.protocol={auth.security_protocol.lower()}\n"
        f"sasl.mechanisms={auth.mechanism}\n"
        f"sasl.username={auth.username}\n"
        f"sasl.password={auth.password}\n"
    )
