"""id_hash keeps a keyed HMAC per key and copies it: every hash must still be that of its own key."""

from __future__ import annotations

import hashlib
import hmac

from services.kit.subjects import id_hash


def reference(key: bytes, kind: str, raw_id: str) -> str:
    return hmac.new(key, f"{kind}:{raw_id.strip().upper()}".encode(), hashlib.sha256).hexdigest()


def test_hashes_under_many_keys_interleaved_are_each_their_own_keys() -> None:
    keys = [f"key-{n}".encode() * 4 for n in range(40)]  # more keys than the cache holds, so it empties on the way

    for round_ in range(3):
        for n, key in enumerate(keys):
            raw = f"11010119800101{n:03d}{round_}"
            assert id_hash(key, "person", raw) == reference(key, "person", raw)


def test_a_hash_does_not_carry_the_previous_id_into_the_next() -> None:
    key = b"k" * 32

    first, second = id_hash(key, "person", "A1"), id_hash(key, "person", "B2")

    assert (first, second) == (reference(key, "person", "A1"), reference(key, "person", "B2"))
    assert id_hash(key, "person", "A1") == first
