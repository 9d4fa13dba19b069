"""Pseudonymization of CONTRACT section 2: keyed hashes and masks, never raw ids downstream."""

from __future__ import annotations

import hashlib
import hmac


def id_hash(key: bytes, kind: str, raw_id: str) -> str:
    return hmac.new(key, f"{kind}:{raw_id.strip().upper()}".encode(), hashlib.sha256).hexdigest()


def mask_id(raw_id: str) -> str:
    """Keep the first six and last four characters, as the published registers do."""
    value = raw_id.strip().upper()
    if len(value) <= 10:
        return value[:2] + "*" * max(len(value) - 4, 1) + value[-2:]
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_name(name: str) -> str:
    """'Zhang San' -> 'Zhang *'; a single token keeps its first character."""
    parts = name.strip().split()
    if len(parts) > 1:
        return f"{parts[0]} *"
    return (parts[0][:1] if parts else "?") + " *"
