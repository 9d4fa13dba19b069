"""Keyring.verify_batch decides every record exactly as Keyring.verify does on its own, whatever was tampered with,
and verifies a signed batch found whole in one fetch with a single tree and a single Ed25519 check."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import Header
from services.kit.signing import (
    Keyring,
    RootMemo,
    SigningKey,
    VerificationError,
    audit_paths,
    leaf_hash,
    merkle_root,
    root_from_path,
    sign_batch,
    walk_together,
)

Record = tuple[bytes, dict[str, bytes]]


def signed_records(key: SigningKey, authority: str, values: Sequence[bytes]) -> list[Record]:
    return [
        (value, {name: text.encode() for name, text in headers.items()})
        for value, headers in zip(values, sign_batch(key, authority, values), strict=True)
    ]


def one_by_one(keyring: Keyring, records: Sequence[Record]) -> list[str | tuple[str, str]]:
    """Each record judged alone, by a keyring that has seen nothing before it (every memo and cache cold)."""
    out: list[str | tuple[str, str]] = []
    for value, headers in records:
        try:
            out.append(Keyring.from_json(keyring_document(keyring)).verify(value, headers))
        except VerificationError as exc:
            out.append((exc.reason, exc.detail))
    return out


def batched(keyring: Keyring, records: Sequence[Record]) -> list[str | tuple[str, str]]:
    return [r if isinstance(r, str) else (r.reason, r.detail) for r in keyring.verify_batch(records)]


def non_canonical(path: bytes) -> bytes:
    """The same bytes in another base64 spelling: the last character's unused low bits set (decodes alike)."""
    if not path.endswith(b"="):
        return path
    text = path.rstrip(b"=")
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-1:])
    return text[:-1] + alphabet[last | 1 : (last | 1) + 1] + path[len(text) :]


TAMPERINGS = ("value", "path", "non_canonical_path", "index", "size", "signature", "key_id", "authority", "drop", "repeat")


def tamper(records: list[Record], how: str, at: int) -> list[Record]:
    value, headers = records[at]
    headers = dict(headers)
    if how == "value":
        value = value + b" "
    elif how == "path":
        headers[Header.MERKLE_PATH] = base64.b64encode(b"\x01" * 32 + base64.b64decode(headers[Header.MERKLE_PATH])[32:])
    elif how == "non_canonical_path":
        headers[Header.MERKLE_PATH] = non_canonical(headers[Header.MERKLE_PATH])
    elif how == "index":
        headers[Header.MERKLE_INDEX] = str((int(headers[Header.MERKLE_INDEX]) + 1) % len(records)).encode()
    elif how == "size":
        headers[Header.MERKLE_SIZE] = b" " + headers[Header.MERKLE_SIZE]  # int() reads it alike; the group differs
    elif how == "signature":
        headers[Header.SIGNATURE] = base64.b64encode(b"\x00" * 64)
    elif how == "key_id":
        headers[Header.KEY_ID] = b"caac-dev"
    elif how == "authority":
        headers[Header.AUTHORITY] = b"court.other"
    out = list(records)
    if how == "drop":
        del out[at]
    elif how == "repeat":
        out.append(records[at])
    else:
        out[at] = (value, headers)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(1, 19), min_size=1, max_size=3),
    tamperings=st.lists(st.tuples(st.sampled_from(TAMPERINGS), st.integers(0, 10_000)), max_size=3),
    shuffle=st.randoms(use_true_random=False),
)
def test_batch_verification_decides_every_record_as_verifying_it_alone(
    signing_keys: dict[str, SigningKey], keyring: Keyring, sizes: list[int], tamperings: list[tuple[str, int]], shuffle: object
) -> None:
    records: list[Record] = []
    for n, size in enumerate(sizes):
        values = [f'{{"batch":{n},"record":{i}}}'.encode() for i in range(size)]
        records += signed_records(signing_keys["court-dev"], f"court.b{n}", values)
    for how, at in tamperings:
        records = tamper(records, how, at % len(records)) if records else records
    shuffle.shuffle(records)  # type: ignore[attr-defined]
    fresh = Keyring.from_json(keyring_document(keyring))

    assert batched(keyring, records) == one_by_one(fresh, records)


def keyring_document(keyring: Keyring) -> dict[str, object]:
    """The same trusted keys in a new keyring, so the one-by-one side starts with an empty cache."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    keys = []
    for key_id in keyring.key_ids():
        trusted = keyring._keys[key_id]
        raw = trusted.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        keys.append({"key_id": key_id, "authorities": list(trusted.authorities), "public_key": base64.b64encode(raw).decode()})
    return {"keys": keys}


@pytest.mark.parametrize("size", [1, 2, 5, 64, 500])
def test_a_whole_signed_batch_costs_one_verification_and_no_per_record_fallback(
    signing_keys: dict[str, SigningKey], keyring: Keyring, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = signed_records(signing_keys["court-dev"], "court.x", [f'{{"r":{i}}}'.encode() for i in range(size)])
    monkeypatch.setattr(Keyring, "verify", lambda *_: pytest.fail("a whole batch must not fall back to verify()"))

    assert keyring.verify_batch(list(reversed(records))) == ["court.x"] * size
    assert keyring.verifications == 1


def test_a_forged_record_in_a_whole_batch_is_refused_and_its_honest_neighbours_accepted(
    signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    records = signed_records(signing_keys["court-dev"], "court.x", [f'{{"r":{i}}}'.encode() for i in range(8)])
    records[3] = (b'{"r":"forged"}', records[3][1])

    results = keyring.verify_batch(records)

    assert [r for i, r in enumerate(results) if i != 3] == ["court.x"] * 7
    assert isinstance(results[3], VerificationError) and results[3].reason == "bad_signature"


def edited(path: Sequence[bytes], edit: str, extra: bytes, data: st.DataObject) -> list[bytes]:
    """An audit path with one hash flipped, dropped or `extra` added; other edits leave it as it is."""
    out = list(path)
    if edit == "flip" and out:
        at = data.draw(st.integers(0, len(out) - 1))
        out[at] = bytes([out[at][0] ^ 1]) + out[at][1:]
    elif edit == "drop" and out:
        out.pop(data.draw(st.integers(0, len(out) - 1)))
    elif edit == "add":
        out.append(extra)
    return out


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 40), limit=st.sampled_from([3, 20_000]), data=st.data())
def test_the_root_memo_computes_exactly_what_root_from_path_computes(size: int, limit: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(f"record {i}".encode()) for i in range(size)]
    paths = audit_paths(leaves)
    memo = RootMemo(limit=limit)  # a small limit clears the memo mid-run
    for _ in range(40):
        i = data.draw(st.integers(0, size - 1))
        path = edited(paths[i], data.draw(st.sampled_from(["none", "none", "flip", "drop", "add"])), leaves[0], data)
        index = data.draw(st.sampled_from([i, i, i ^ 1, size, -1]))
        claimed = data.draw(st.sampled_from([size, size, size + 1, max(1, size - 1)]))
        leaf = leaves[i] if data.draw(st.booleans()) else leaves[(i + 1) % size]

        assert memo.root(leaf, index, claimed, b"".join(path)) == root_from_path(leaf, index, claimed, path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    size=st.integers(1, 40),
    data=st.data(),
    tamperings=st.lists(st.tuples(st.sampled_from(TAMPERINGS), st.integers(0, 10_000)), max_size=2),
    shuffle=st.randoms(use_true_random=False),
)
def test_part_of_a_signed_batch_is_decided_as_verifying_each_record_alone(
    signing_keys: dict[str, SigningKey],
    keyring: Keyring,
    size: int,
    data: st.DataObject,
    tamperings: list[tuple[str, int]],
    shuffle: object,
) -> None:
    """What a partition's fetch holds of a batch: a run of it, or any subset, tampered with or not."""
    values = [f'{{"record":{i}}}'.encode() for i in range(size)]
    whole = signed_records(signing_keys["court-dev"], "court.part", values)
    if data.draw(st.booleans()):
        start = data.draw(st.integers(0, size - 1))
        records = whole[start : data.draw(st.integers(start + 1, size))]
    else:
        records = [r for r in whole if data.draw(st.booleans())] or whole[:1]
    for how, at in tamperings:
        records = tamper(records, how, at % len(records)) if records else records
    shuffle.shuffle(records)  # type: ignore[attr-defined]
    fresh = Keyring.from_json(keyring_document(keyring))

    assert batched(keyring, records) == one_by_one(fresh, records)


@pytest.mark.parametrize(("size", "start", "stop"), [(5000, 1200, 2033), (833, 0, 400), (833, 400, 833), (64, 1, 63)])
def test_a_run_of_a_signed_batch_costs_one_verification_and_no_per_record_fallback(
    signing_keys: dict[str, SigningKey], keyring: Keyring, size: int, start: int, stop: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = [f'{{"r":{i}}}'.encode() for i in range(size)]
    records = signed_records(signing_keys["court-dev"], "court.x", values)[start:stop]
    monkeypatch.setattr(Keyring, "verify", lambda *_: pytest.fail("a run of a batch must not fall back to verify()"))

    assert keyring.verify_batch(records) == ["court.x"] * (stop - start)
    assert keyring.verifications == 1


def test_a_forged_path_in_a_run_is_refused_and_the_rest_of_the_run_accepted(
    signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    records = signed_records(signing_keys["court-dev"], "court.x", [f'{{"r":{i}}}'.encode() for i in range(100)])[10:30]
    value, headers = records[0]
    path = base64.b64decode(headers[Header.MERKLE_PATH])
    records[0] = (value, {**headers, Header.MERKLE_PATH: base64.b64encode(path[:-32] + b"\x02" * 32)})

    results = keyring.verify_batch(records)

    assert results[1:] == ["court.x"] * 19
    assert isinstance(results[0], VerificationError) and results[0].reason == "bad_signature"


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 70), data=st.data())
def test_walking_leaves_together_yields_only_the_root_each_one_walks_to(size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(f"record {i}".encode()) for i in range(size)]
    paths = audit_paths(leaves)
    chosen = data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=size, unique=True))
    walks = {i: (leaves[i], b"".join(paths[i])) for i in chosen}
    tampered = data.draw(st.booleans())
    if tampered:
        i = data.draw(st.sampled_from(chosen))
        edit = data.draw(st.sampled_from(["flip", "drop", "add", "leaf", "index"]))
        path = edited(paths[i], edit, leaves[0], data)
        walks[i] = (leaves[(i + 1) % size] if edit == "leaf" else leaves[i], b"".join(path))
        if edit == "index":
            walks[data.draw(st.sampled_from([-1, size, size + 3]))] = walks.pop(i)
    claimed = data.draw(st.sampled_from([size, size, size + 1, max(1, size - 1)]))

    root = walk_together(claimed, walks)

    if root is not None:  # never a root that some leaf's own walk would not reach
        assert all(root_from_path(leaf, i, claimed, _split(path)) == root for i, (leaf, path) in walks.items())
    if not tampered and claimed == size:
        assert root == merkle_root(leaves)


def _split(path: bytes) -> list[bytes]:
    return [path[at : at + 32] for at in range(0, len(path), 32)]


def test_a_partitions_share_of_a_batch_costs_one_verification_and_no_per_record_fallback(
    signing_keys: dict[str, SigningKey], keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay spreads a signed batch over the topic's partitions: one partition holds every sixth record or so."""
    values = [f'{{"r":{i}}}'.encode() for i in range(500)]
    records = signed_records(signing_keys["court-dev"], "court.x", values)[2::6]
    monkeypatch.setattr(Keyring, "verify", lambda *_: pytest.fail("a share of a batch must not fall back to verify()"))

    assert keyring.verify_batch(records) == ["court.x"] * len(records)
    assert keyring.verifications == 1


@pytest.mark.parametrize("how", TAMPERINGS)
def test_a_tampered_record_in_a_partitions_share_is_decided_as_verifying_each_record_alone(
    signing_keys: dict[str, SigningKey], keyring: Keyring, how: str
) -> None:
    values = [f'{{"r":{i}}}'.encode() for i in range(500)]
    records = tamper(signed_records(signing_keys["court-dev"], "court.x", values)[1::7], how, 30)
    fresh = Keyring.from_json(keyring_document(keyring))

    assert batched(keyring, records) == one_by_one(fresh, records)
