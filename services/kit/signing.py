"""Batched record signatures of CONTRACT section 4: an RFC 6962 Merkle tree, one Ed25519 signature a batch."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.catalogue import authority_matches
from schemas.events import Header

SIGNATURE_CONTEXT = b"blacklist-sync.v1.batch:"
HASH_SIZE = 32


def leaf_hash(value: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + value).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (RFC 6962 section 2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        raise ValueError("a batch holds at least one record")
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def audit_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Sibling hashes from leaf to root, RFC 6962 PATH(m, D[n])."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*audit_path(index, leaves[:k]), merkle_root(leaves[k:])]
    return [*audit_path(index - k, leaves[k:]), merkle_root(leaves[:k])]


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """Recompute the root from one leaf and its audit path (RFC 9162 section 2.1.3.2); None if inconsistent."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private_key: Ed25519PrivateKey

    @classmethod
    def from_pem(cls, key_id: str, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"key {key_id} is not an Ed25519 private key")
        return cls(key_id, key)

    @classmethod
    def load(cls, keys_dir: Path, key_id: str) -> SigningKey:
        path = keys_dir / f"{key_id}.pem"
        if not path.exists():
            raise FileNotFoundError(f"signing key {path} is missing: run `blacklist-sync up` to create local keys")
        return cls.from_pem(key_id, path.read_bytes())

    def sign_root(self, root: bytes) -> bytes:
        return self.private_key.sign(SIGNATURE_CONTEXT + root)


def sign_batch(key: SigningKey, authority: str, values: Sequence[bytes]) -> list[dict[str, str]]:
    """Sign values as one batch; return the signature headers of each record, in order."""
    leaves = [leaf_hash(v) for v in values]
    signature = base64.b64encode(key.sign_root(merkle_root(leaves))).decode()
    size = str(len(values))
    return [
        {
            Header.AUTHORITY: authority,
            Header.KEY_ID: key.key_id,
            Header.MERKLE_SIZE: size,
            Header.MERKLE_INDEX: str(i),
            Header.MERKLE_PATH: base64.b64encode(b"".join(audit_path(i, leaves))).decode(),
            Header.SIGNATURE: signature,
        }
        for i in range(len(values))
    ]


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    authorities: tuple[str, ...]
    public_key: Ed25519PublicKey

    def covers(self, authority: str) -> bool:
        return any(authority_matches(p, authority) for p in self.authorities)


class VerificationError(Exception):
    """A record's signature headers do not verify; `reason` is the DLQ code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Keyring:
    """The public keys a consumer trusts, with a cache of verified batch signatures."""

    def __init__(self, keys: Sequence[TrustedKey], cache_size: int = 65536) -> None:
        self._keys = {k.key_id: k for k in keys}
        self._verified: OrderedDict[tuple[str, bytes, bytes], None] = OrderedDict()
        self._cache_size = cache_size
        self.verifications = 0  # Ed25519 verifications actually performed, for metrics and tests

    @classmethod
    def from_json(cls, document: Mapping[str, object]) -> Keyring:
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise ValueError("keyring must hold a 'keys' list")
        keys = []
        for e in entries:
            raw = base64.b64decode(e["public_key"], validate=True)
            keys.append(TrustedKey(e["key_id"], tuple(e["authorities"]), Ed25519PublicKey.from_public_bytes(raw)))
        return cls(keys)

    @classmethod
    def load(cls, path: Path) -> Keyring:
        if not path.exists():
            raise FileNotFoundError(f"keyring {path} is missing: run `blacklist-sync up` or set AUTHORITY_KEYRING")
        return cls.from_json(json.loads(path.read_text()))

    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, value: bytes, headers: Mapping[str, bytes]) -> str:
        """Check a record's signature headers; return the authority the key vouches for, or raise."""
        key_id = _text(headers, Header.KEY_ID)
        authority = _text(headers, Header.AUTHORITY)
        key = self._keys.get(key_id)
        if key is None:
            raise VerificationError("unknown_key", f"key id {key_id!r} is not in the keyring")
        if not key.covers(authority):
            raise VerificationError("unauthorized_authority", f"key {key_id} does not cover authority {authority!r}")
        try:
            size = int(_text(headers, Header.MERKLE_SIZE))
            index = int(_text(headers, Header.MERKLE_INDEX))
            path_bytes = base64.b64decode(headers.get(Header.MERKLE_PATH, b""), validate=True)
            signature = base64.b64decode(_text(headers, Header.SIGNATURE), validate=True)
        except (ValueError, TypeError) as exc:
            raise VerificationError("bad_signature", f"malformed signature headers: {exc}") from exc
        if size < 1 or size > 1 << 20 or len(path_bytes) % HASH_SIZE or len(path_bytes) > 64 * HASH_SIZE:
            raise VerificationError("bad_signature", "merkle size or path length out of range")
        path = [path_bytes[i : i + HASH_SIZE] for i in range(0, len(path_bytes), HASH_SIZE)]
        root = root_from_path(leaf_hash(value), index, size, path)
        if root is None:
            raise VerificationError("bad_signature", "audit path does not fit the merkle index and size")
        cache_key = (key_id, signature, root)
        if cache_key in self._verified:
            self._verified.move_to_end(cache_key)
            return authority
        try:
            self.verifications += 1
            key.public_key.verify(signature, SIGNATURE_CONTEXT + root)
        except InvalidSignature as exc:
            raise VerificationError("bad_signature", f"signature by {key_id} does not verify") from exc
        self._verified[cache_key] = None
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return authority


def _text(headers: Mapping[str, bytes], name: str) -> str:
    raw = headers.get(name)
    if raw is None:
        raise VerificationError("bad_signature", f"header {name} is missing")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise VerificationError("bad_signature", f"header {name} is not UTF-8") from exc
