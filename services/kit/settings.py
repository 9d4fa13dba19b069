"""Configuration of CONTRACT section 9, read from the environment once at start-up."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

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


def home_dir() -> Path:
    return Path(os.environ.get("BLACKLIST_SYNC_HOME") or Path.home() / ".blacklist-sync")


def _local_env(home: Path) -> dict[str, str]:
    """The KEY=value lines `blacklist-sync up` wrote for the running local stack."""
    path = home / "env"
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip().removeprefix("export ").strip(): v.strip().strip("'\"") for k, v in pairs}


@dataclass(frozen=True)
class Settings:
    home: Path
    kafka_bootstrap_servers: str
    database_url: str
    publisher_tokens: dict[str, str]
    subject_hash_key: bytes
    keyring_path: Path
    signing_keys: dict[str, str] = field(default_factory=dict)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @classmethod
    def from_env(cls) -> Settings:
        home = home_dir()
        local = _local_env(home)

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
            database_url=get("DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/blacklist_sync"),
            publisher_tokens=tokens,
            subject_hash_key=get("SUBJECT_HASH_KEY", DEFAULT_SUBJECT_HASH_KEY).encode(),
            keyring_path=Path(get("AUTHORITY_KEYRING", str(home / "keyring.json"))),
            signing_keys=signing,
        )
