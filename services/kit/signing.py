"""Batched record signatures of CONTRACT section 4: an RFC 6962 Merkle tree, one Ed25519 signature a batch."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from schemas.catalogue import AUTHORITY_ID, authority_matches
from schemas.events import Header

T = TypeVar("T")
SIGNATURE_CONTEXT = b"blacklist-sync.v1.batch:"
HASH_SIZE = 32
# Plain strings for the headers read or written for every record: an enum member read off its class costs a
# descriptor call.
_AUTHORITY = Header.AUTHORITY.value
_KEY_ID = Header.KEY_ID.value
_MERKLE_INDEX = Header.MERKLE_INDEX.value
_MERKLE_PATH = Header.MERKLE_PATH.value
_MERKLE_SIZE = Header.MERKLE_SIZE.value
_SIGNATURE = Header.SIGNATURE.value


def leaf_hash(value: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + value).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the RFC 6962 tree, leaves first; an odd last node is carried up unhashed,
    which yields exactly the tree of RFC 6962's split at the largest power of two."""
    if not leaves:
        raise ValueError("a batch holds at least one record")
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    return levels


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    return tree_levels(leaves)[-1][0]


def _path(index: int, levels: list[list[bytes]]) -> list[bytes]:
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index >>= 1
    return path


def audit_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Sibling hashes from leaf to root, RFC 6962 PATH(m, D[n])."""
    return _path(index, tree_levels(leaves))


def audit_paths(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """The audit path of every leaf, from one pass over the tree: O(n log n) for a batch."""
    levels = tree_levels(leaves)
    return [_path(i, levels) for i in range(len(leaves))]


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


MEMO_STRIDE = 3 * HASH_SIZE


class RootMemo:
    """`root_from_path` memoised as the pure function it is, so records of one signed batch share the hashing.

    The computation walks from the leaf up: after k steps its state is (fn, sn, r) and what remains is the path
    from byte k on, and the result depends on nothing else. The memo maps a state to the path suffix it was
    reached with and the result; a record whose walk reaches a state already seen with the very same remaining
    path takes that result, exactly what it would have computed. States are kept every third level (a lookup
    costs about what a hash does): records of one batch that a consumer sees together meet within a few levels
    and share the rest of the walk, which pays off most for the relay's large batches (5,000 records, 13 levels)."""

    def __init__(self, limit: int = 20_000) -> None:
        self._memo: dict[tuple[int, int, bytes], tuple[bytes, int, bytes | None]] = {}
        self._limit = limit  # entries (~0.3 KB each); cleared when full, which only costs hashing again

    def root(self, leaf: bytes, index: int, size: int, path: bytes) -> bytes | None:
        """`root_from_path(leaf, index, size, <path split in 32-byte hashes>)`; path's length is a multiple of 32."""
        if not 0 <= index < size:
            return None
        memo = self._memo
        fn, sn, r, at = index, size - 1, leaf, 0
        walked: list[tuple[int, int, bytes, int]] = []
        while True:
            if at % MEMO_STRIDE == 0 and at:  # states every third level: a lookup costs about what a hash does
                seen = memo.get((fn, sn, r))
                if seen is not None and seen[0][seen[1] :] == path[at:]:
                    result = seen[2]
                    break
                walked.append((fn, sn, r, at))
            if at == len(path) or sn == 0:
                result = r if at == len(path) and sn == 0 else None
                break
            p = path[at : at + HASH_SIZE]
            if fn & 1 or fn == sn:
                r = hashlib.sha256(b"\x01" + p + r).digest()
                if not fn & 1:
                    while fn != 0 and not fn & 1:
                        fn >>= 1
                        sn >>= 1
            else:
                r = hashlib.sha256(b"\x01" + r + p).digest()
            fn >>= 1
            sn >>= 1
            at += HASH_SIZE
        if len(memo) + len(walked) > self._limit:
            memo.clear()
        for fn, sn, r, at in walked:
            memo[(fn, sn, r)] = (path, at, result)
        return result


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
    return [{name: value.decode() for name, value in signed} for signed in _signature_headers(key, authority, values)]


def record_headers(
    key: SigningKey, authority: str, values: Sequence[bytes], event_types: Sequence[str]
) -> list[list[tuple[str, bytes]]]:
    """The full Kafka headers of each record of one signed batch (CONTRACT section 4), in order: content type, event
    type, then those of sign_batch."""
    if len(event_types) != len(values):
        raise ValueError(f"{len(values)} values but {len(event_types)} event types")
    content, event = (Header.CONTENT_TYPE.value, b"application/json"), Header.EVENT_TYPE.value
    return [
        [content, (event, event_type.encode()), *signed]
        for event_type, signed in zip(event_types, _signature_headers(key, authority, values), strict=True)
    ]


def _signature_headers(key: SigningKey, authority: str, values: Sequence[bytes]) -> list[list[tuple[str, bytes]]]:
    """Each record's signature headers, encoded. Those every record of the batch shares are built once (encoding
    them per record cost a publisher 6-8% of its CPU); only the index and the path are the record's own."""
    levels = tree_levels([leaf_hash(v) for v in values])
    shared = ((_AUTHORITY, authority.encode()), (_KEY_ID, key.key_id.encode()), (_MERKLE_SIZE, str(len(values)).encode()))
    signature = (_SIGNATURE, base64.b64encode(key.sign_root(levels[-1][0])))
    return [
        [*shared, (_MERKLE_INDEX, str(i).encode()), (_MERKLE_PATH, base64.b64encode(b"".join(_path(i, levels)))), signature]
        for i in range(len(values))
    ]


@dataclass(frozen=True)
class SignedRecord:
    """A Kafka record as a publisher sends it: key = listing_id, value, the headers of CONTRACT section 4."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


# A partition's share of a turn signed on its own from this many records: its consumer then meets the batch side by
# side and judges it as one tree (Keyring.verify_batch), at the price of one more Ed25519 check. Smaller shares
# (a turn of a few records spread over the partitions) are signed together: one check, and short audit paths.
PARTITION_BATCH_FROM = 64


def signed_batches(items: Sequence[T], partition: Callable[[T], object]) -> list[list[T]]:
    """How a publisher splits one authority's records of a turn into signed batches: one batch per partition that
    gets PARTITION_BATCH_FROM of them or more, the rest together as one; each batch in the order given."""
    shares: dict[object, list[T]] = {}
    for item in items:
        shares.setdefault(partition(item), []).append(item)
    large = [share for share in shares.values() if len(share) >= PARTITION_BATCH_FROM]
    if len(large) == len(shares):
        return large
    alone = {id(item) for share in large for item in share}
    return [*large, [item for item in items if id(item) not in alone]]


def sign_records(
    key: SigningKey,
    authority: str,
    pairs: Sequence[tuple[str, bytes]],
    batch: int,
    partition: Callable[[bytes], int] | None = None,
) -> list[SignedRecord]:
    """Sign (listing_id, value) pairs as the outbox relay does (benchmarks and the ops rehearsal build their records
    with it): in turns of `batch`, each turn split by `signed_batches` if `partition` is given (the relay's way),
    else signed whole."""
    records = []
    for start in range(0, len(pairs), batch):
        turn = pairs[start : start + batch]
        chunks = signed_batches(turn, lambda pair: partition(pair[0].encode())) if partition else [list(turn)]
        for chunk in chunks:
            values = [v for _, v in chunk]
            event_types = [json.loads(v)["event_type"] for v in values]
            for (listing_id, value), headers in zip(chunk, record_headers(key, authority, values, event_types), strict=True):
                records.append(SignedRecord(listing_id.encode(), value, headers))
    return records


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    authorities: tuple[str, ...]
    public_key: Ed25519PublicKey
    # The same key for libsodium, which checks an Ed25519 signature in about half of OpenSSL's time here (some
    # 100 against 220 µs on a loaded box): at 2,000 events/s a consumer checks a signature for every fetch.
    _sodium: VerifyKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sodium", VerifyKey(self.public_key.public_bytes_raw()))

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether `signature` is this key's Ed25519 signature of `message` (RFC 8032; libsodium also refuses a
        non-canonical S and small-order points, which no honest signer produces)."""
        try:
            self._sodium.verify(message, signature)
        except (BadSignatureError, ValueError):  # ValueError: not 64 bytes
            return False
        return True

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
        self._verified: set[tuple[str, bytes, bytes]] = set()  # (key id, signature, root) that verified; bounded
        self._coverage: dict[tuple[str, str], bool] = {}
        self._roots = RootMemo()
        self._batches: dict[tuple[bytes | None, ...], tuple[TrustedKey, str, int]] = {}
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
        """Check a record's signature headers; return the authority the key vouches for, or raise.

        The root is always computed from this record's own value, index, size and path, so every instance
        decides alike whatever it has cached (the memo of that computation is exact: see RootMemo); the Ed25519
        check is cached per (key id, signature, root)."""
        shared = (
            headers.get(_KEY_ID),
            headers.get(_AUTHORITY),
            headers.get(_SIGNATURE),
            headers.get(_MERKLE_SIZE),
        )
        batch = self._batches.get(shared)
        if batch is None:  # what every record of one signed batch shares is checked once per batch
            batch = self._batch_headers(headers)
            if len(self._batches) >= 4096:  # hostile headers must not grow it without bound
                self._batches.clear()
            self._batches[shared] = batch
        key, authority, size = batch
        key_id, signature_text = key.key_id, shared[2]
        try:
            index = int(_text(headers, _MERKLE_INDEX))
            path_bytes = base64.b64decode(headers.get(_MERKLE_PATH, b""), validate=True)
            if signature_text is None:
                raise ValueError("header x-signature is missing")
        except (ValueError, TypeError) as exc:
            raise VerificationError("bad_signature", f"malformed signature headers: {exc}") from exc
        if not 0 <= index < size <= 1 << 20 or len(path_bytes) % HASH_SIZE or len(path_bytes) > 64 * HASH_SIZE:
            raise VerificationError("bad_signature", "merkle index, size or path length out of range")
        root = self._roots.root(leaf_hash(value), index, size, path_bytes)
        if root is None:
            raise VerificationError("bad_signature", "audit path does not fit the merkle index and size")
        verified = (key_id, signature_text, root)
        if verified not in self._verified:
            self._verify_root(key, signature_text, root)
            if len(self._verified) >= self._cache_size:
                self._verified.clear()
            self._verified.add(verified)
        return authority

    def _batch_headers(self, headers: Mapping[str, bytes]) -> tuple[TrustedKey, str, int]:
        """The key, authority and size a record's headers name, checked in `verify`'s order of errors."""
        key_id = _text(headers, _KEY_ID)
        authority = _text(headers, _AUTHORITY)
        key = self._keys.get(key_id)
        if key is None:
            raise VerificationError("unknown_key", f"key id {key_id!r} is not in the keyring")
        if not self._covers(key, authority):
            raise VerificationError("unauthorized_authority", f"key {key_id} does not cover authority {authority!r}")
        try:
            size = int(_text(headers, _MERKLE_SIZE))
        except (ValueError, TypeError) as exc:
            raise VerificationError("bad_signature", f"malformed signature headers: {exc}") from exc
        return key, authority, size

    def verify_batch(self, records: Sequence[tuple[bytes, Mapping[str, bytes]]]) -> list[str | VerificationError]:
        """`verify` for each (value, headers), in order: the authority, or the error `verify` would raise.

        Decides exactly as `verify` does record by record, only cheaper: the records of one signed batch found in
        a fetch are judged together and its root's signature is checked once. A run of the batch (all of it, or
        what a partition holds of a batch keyed to it) has its part of the tree built once from its own values
        (see `PartialTree`); leaves scattered over the batch (a partition's share of one spread over all of them)
        have their own paths walked, merged where they meet (see `walk_together`). Every record those do not
        accept, and every record of a group that cannot be judged together, goes through `verify` itself."""
        results: list[str | VerificationError | None] = [None] * len(records)
        for members in _signed_batches(records).values():
            for position, authority in self._verify_whole(records, members).items():
                results[position] = authority
        for position, result in enumerate(results):
            if result is None:
                value, headers = records[position]
                try:
                    results[position] = self.verify(value, headers)
                except VerificationError as exc:
                    results[position] = exc
        return [r for r in results if r is not None]

    def _verify_whole(self, records: Sequence[tuple[bytes, Mapping[str, bytes]]], members: list[int]) -> dict[int, str]:
        """Positions of `members` (records sharing key, authority, signature and size) accepted together: the part
        of their tree that their own values determine is built once, its root's signature checked once, and each
        record is accepted only if its x-merkle-path is the canonical base64 of its audit path in that tree. Empty
        when they cannot be judged together (unreadable or repeated indexes, or a tree that does not verify)."""
        first = records[members[0]][1]
        try:
            size = int(_text(first, _MERKLE_SIZE))
            key = self._keys.get(_text(first, _KEY_ID))
            authority = _text(first, _AUTHORITY)
            by_index = {int(_text(records[m][1], _MERKLE_INDEX)): m for m in members}
        except (VerificationError, ValueError):
            return {}
        signature = first.get(_SIGNATURE)
        if key is None or signature is None or not 0 < size <= 1 << 20 or not self._covers(key, authority):
            return {}
        if len(by_index) != len(members) or min(by_index) < 0 or max(by_index) >= size:
            return {}  # a repeated record, or an index `verify` refuses: each one is judged on its own
        if 2 * len(members) < max(by_index) - min(by_index) + 1:
            # Scattered leaves (a partition's share of a batch spread over all partitions) share few nodes: each
            # record's own path is walked, and the walks are merged where they meet (see `walk_together`).
            walks = {}
            for index, position in by_index.items():
                value, headers = records[position]
                path = _decoded_path(headers)
                if path is None:
                    return {}
                walks[index] = (leaf_hash(value), path)
            root = walk_together(size, walks)
            if root is None or not self._signed(key, signature, root):
                return {}
            return dict.fromkeys(by_index.values(), authority)
        tree = PartialTree(size, {i: leaf_hash(records[p][0]) for i, p in by_index.items()})
        if not tree.complete(lambda i: _decoded_path(records[by_index[i]][1])) or not self._signed(key, signature, tree.root):
            return {}
        accepted = {}
        for index, path in tree.paths().items():
            position = by_index[index]
            if records[position][1].get(_MERKLE_PATH) == base64.b64encode(path):
                accepted[position] = authority
        return accepted

    def _signed(self, key: TrustedKey, signature: bytes, root: bytes) -> bool:
        """Whether `signature` by `key` covers `root`, as `verify` would find it (and caches it)."""
        verified = (key.key_id, signature, root)
        if verified not in self._verified:
            try:
                self._verify_root(key, signature, root)
            except VerificationError:
                return False  # some record is not what was signed: each one is judged on its own
            if len(self._verified) >= self._cache_size:
                self._verified.clear()
            self._verified.add(verified)
        return True

    def _covers(self, key: TrustedKey, authority: str) -> bool:
        if not AUTHORITY_ID.match(authority):  # hostile headers must not grow the memo below without bound
            return False
        known = self._coverage.get((key.key_id, authority))
        if known is None:
            if len(self._coverage) >= 4096:
                self._coverage.clear()
            known = self._coverage[(key.key_id, authority)] = key.covers(authority)
        return known

    def _verify_root(self, key: TrustedKey, signature_text: bytes, root: bytes) -> None:
        try:
            signature = base64.b64decode(signature_text, validate=True)
        except ValueError as exc:
            raise VerificationError("bad_signature", f"malformed x-signature: {exc}") from exc
        self.verifications += 1
        if not key.verify(signature, SIGNATURE_CONTEXT + root):
            raise VerificationError("bad_signature", f"signature by {key.key_id} does not verify")


class PartialTree:
    """The nodes of an RFC 6962 tree that some of its leaves determine, and the siblings their audit paths supply.

    Level l holds ceil(size / 2**l) nodes; an odd last node is carried up unhashed, as in `tree_levels`. A node is
    covered when a known leaf lies below it. Covered nodes are hashed from their children; the uncovered child of
    a covered node is read from the audit path of a known leaf below its sibling. Each known leaf's canonical audit
    path is then made only of nodes held here, and walking up from the leaf along it yields `root`: a record whose
    path is that canonical path recomputes `root` in `verify`, whatever the other records' paths said."""

    def __init__(self, size: int, leaves: Mapping[int, bytes]) -> None:
        self.widths = [size]
        while self.widths[-1] > 1:
            self.widths.append((self.widths[-1] + 1) // 2)
        self.nodes: list[dict[int, bytes]] = [dict(sorted(leaves.items()))]
        self.covered: list[list[int]] = [list(self.nodes[0])]  # per level, the nodes a known leaf lies below
        self.root = b""

    def complete(self, path_of: Callable[[int], bytes | None]) -> bool:
        """Hash the covered nodes level by level up to the root; False if a path lacks a sibling it must hold.

        `path_of(leaf)` is that leaf's decoded x-merkle-path (None if it does not decode)."""
        below = self.nodes[0]
        below_leaf = {i: i for i in below}  # a known leaf under each covered node
        paths: dict[int, bytes | None] = {}
        for level in range(1, len(self.widths)):
            width_below = self.widths[level - 1]
            here: dict[int, bytes] = {}
            here_leaf: dict[int, int] = {}
            for child in list(below_leaf):  # covered nodes, ascending: each parent is met first at its left child
                parent = child >> 1
                if parent in here:
                    continue
                here_leaf[parent] = leaf = below_leaf[child]
                if child | 1 >= width_below:
                    here[parent] = below[child]  # the odd last node, carried up
                    continue
                sibling = child ^ 1
                if sibling not in below:
                    if leaf not in paths:
                        paths[leaf] = path_of(leaf)
                    given = self._sibling(paths[leaf], leaf, level - 1)
                    if given is None:
                        return False
                    below[sibling] = given
                here[parent] = node_hash(below[child & ~1], below[child | 1])
            self.nodes.append(here)
            self.covered.append(list(here))
            below, below_leaf = here, here_leaf
        self.root = below[0]
        return True

    def _sibling(self, path: bytes | None, leaf: int, level: int) -> bytes | None:
        """The hash `path` (leaf's audit path) gives for leaf's sibling at `level`, if it holds one there."""
        if path is None:
            return None
        at = sum(HASH_SIZE for lv in range(level) if (leaf >> lv) ^ 1 < self.widths[lv])
        given = path[at : at + HASH_SIZE]
        return given if len(given) == HASH_SIZE else None

    def paths(self) -> dict[int, bytes]:
        """The canonical audit path of every known leaf, from the nodes held. Built from the root down, so the
        leaves under one node share the bytes above it: one concatenation per covered node, not one per level."""
        above: dict[int, bytes] = {0: b""}
        for level in range(len(self.widths) - 2, -1, -1):
            nodes, width = self.nodes[level], self.widths[level]
            here: dict[int, bytes] = {}
            for node in self.covered[level]:
                sibling = node ^ 1
                here[node] = nodes[sibling] + above[node >> 1] if sibling < width else above[node >> 1]
            above = here
        return above


def walk_together(size: int, walks: Mapping[int, tuple[bytes, bytes]]) -> bytes | None:
    """The root that every leaf's walk up its own audit path reaches, or None unless each one reaches the same root.

    `walks` maps a leaf's index to its hash and its decoded path. When the result is not None it equals
    `root_from_path(leaf, index, size, path)` for every one of them. The leaves are walked in index order, a level
    at a time as in `tree_levels` (node n has a sibling when n ^ 1 is within its level; an odd last node is carried
    up without using the path). Each walk stops at the level where it meets the previous leaf's walk: there it must
    hold the same node, and the rest of its path must be the same bytes as the rest of the path that went on from
    that node, so it would compute what that walk computed. The first walk goes to the root and must use up its
    path. Any difference gives None, even one that `root_from_path` alone would not notice."""
    if not 0 < size <= 1 << 20:
        return None
    widths = [size]
    while widths[-1] > 1:
        widths.append((widths[-1] + 1) // 2)
    top = len(widths) - 1
    # The nodes on the root path of the last leaf walked, and the path (with the bytes of it used) that went on from
    # each: every leaf walked so far reached the root through these, from the level where it met them.
    nodes: list[bytes] = [b""] * len(widths)
    rests: list[tuple[bytes, int]] = [(b"", 0)] * len(widths)
    previous = -1
    for index in sorted(walks):
        if not 0 <= index < size:
            return None
        r, path = walks[index]
        meet = top if previous < 0 else (index ^ previous).bit_length()
        at = 0
        for level in range(meet):
            nodes[level], rests[level] = r, (path, at)
            node = index >> level
            if node ^ 1 < widths[level]:
                given = path[at : at + HASH_SIZE]
                if len(given) != HASH_SIZE:
                    return None
                r = hashlib.sha256(b"\x01" + (given + r if node & 1 else r + given)).digest()
                at += HASH_SIZE
        if previous < 0:
            if at != len(path):
                return None
            nodes[top], rests[top] = r, (path, at)
        else:
            seen_path, seen_at = rests[meet]
            if r != nodes[meet] or path[at:] != seen_path[seen_at:]:
                return None
        previous = index
    return nodes[top]


def _decoded_path(headers: Mapping[str, bytes]) -> bytes | None:
    try:
        return base64.b64decode(headers.get(_MERKLE_PATH, b""), validate=True)
    except ValueError:
        return None


def _signed_batches(records: Sequence[tuple[bytes, Mapping[str, bytes]]]) -> dict[tuple[bytes | None, ...], list[int]]:
    """Positions of the records grouped by the headers one signed batch shares."""
    groups: dict[tuple[bytes | None, ...], list[int]] = {}
    for position, (_, headers) in enumerate(records):
        shared = (
            headers.get(_KEY_ID),
            headers.get(_AUTHORITY),
            headers.get(_SIGNATURE),
            headers.get(_MERKLE_SIZE),
        )
        groups.setdefault(shared, []).append(position)
    return groups


def _text(headers: Mapping[str, bytes], name: str) -> str:
    raw = headers.get(name)
    if raw is None:
        raise VerificationError("bad_signature", f"header {name} is missing")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise VerificationError("bad_signature", f"header {name} is not UTF-8") from exc
