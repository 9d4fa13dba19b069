"""The shell-sourceable $BLACKLIST_SYNC_HOME/env file describing the running local stack."""

from __future__ import annotations

import shlex
from pathlib import Path


def render_env(
    bootstrap_servers: str, database_url: str, keyring_path: Path, home: Path, security_protocol: str | None = None
) -> str:
    """KEY=value lines, each value shell-quoted so `. "$BLACKLIST_SYNC_HOME/env"` works with any path.
    The protocol says whether clients authenticate; credentials themselves never go here."""
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "DATABASE_URL": database_url,
        "AUTHORITY_KEYRING": str(keyring_path),
        "BLACKLIST_SYNC_HOME": str(home),
        **({"KAFKA_SECURITY_PROTOCOL": security_protocol} if security_protocol else {}),
    }
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def parse_env(text: str) -> dict[str, str]:
    """Read back what render_env wrote (one shell word per value)."""
    parsed: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        words = shlex.split(value)
        parsed[key.strip()] = words[0] if words else ""
    return parsed


def write_env(path: Path, content: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(content)
    temporary.replace(path)
