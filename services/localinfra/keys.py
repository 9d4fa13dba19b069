"""Local authorities' Ed25519 signing keys and the public keyring consumers trust (CONTRACT section 10)."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class LocalKey:
    key_id: str
    authorities: tuple[str, ...]


LOCAL_KEYS: tuple[LocalKey, ...] = (
    LocalKey("court-dev", ("court.*",)),
    LocalKey("caac-dev", ("transport.caac",)),
    LocalKey("railway-dev", ("transport.railway",)),
    LocalKey("city-dev", ("city.*",)),
)


def private_key_path(keys_dir: Path, key_id: str) -> Path:
    return keys_dir / f"{key_id}.pem"


def ensure_private_key(path: Path) -> Ed25519PrivateKey:
    """Load the PKCS#8 PEM key at path, creating it (mode 0600) only if it does not exist yet."""
    if path.exists():
        return load_private_key(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{path} is not an Ed25519 private key")
    return key


def raw_public_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def keyring_document(public_keys: dict[str, bytes], local_keys: tuple[LocalKey, ...] = LOCAL_KEYS) -> dict[str, Any]:
    """The keyring JSON: one entry per key id, public key as base64 of the raw 32 bytes."""
    return {
        "keys": [
            {
                "key_id": key.key_id,
                "authorities": list(key.authorities),
                "public_key": base64.b64encode(public_keys[key.key_id]).decode("ascii"),
            }
            for key in local_keys
        ]
    }


def ensure_keys(keys_dir: Path, keyring_path: Path) -> list[str]:
    """Create missing local keys and (re)write the keyring from the keys on disk; returns the new key ids."""
    created = [k.key_id for k in LOCAL_KEYS if not private_key_path(keys_dir, k.key_id).exists()]
    public_keys = {k.key_id: raw_public_key(ensure_private_key(private_key_path(keys_dir, k.key_id))) for k in LOCAL_KEYS}
    keyring_path.write_text(json.dumps(keyring_document(public_keys), indent=2) + "\n")
    return created
