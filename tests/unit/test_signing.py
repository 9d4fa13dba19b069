"""Batched record signatures: RFC 6962 Merkle trees and audit paths, one Ed25519 verification per batch, keyring checks."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from schemas.events import Header
from services.kit.signing import (
    SIGNATURE_CONTEXT,
    Keyring,
    SigningKey,
    VerificationError,
    audit_path,
    leaf_hash,
    merkle_root,
    record_headers,
    root_from_path,
    sign_batch,
)

SIZES = range(1, 18)


# --- an independent reference, written straight from RFC 6962 section 2.1 -------------------------------------------


def ref_mth(data: Sequence[bytes]) -> bytes:
    """MTH(D[n]): the Merkle Tree Hash of a list of data entries."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two smaller than n
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def ref_path(m: int, data: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the audit path of entry m."""
    n = len(data)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*ref_path(m, data[:k]), ref_mth(data[k:])]
    return [*ref_path(m - k, data[k:]), ref_mth(data[:k])]


def batch(n: int) -> list[bytes]:
    return [f'{{"record": {i}}}'.encode() for i in range(n)]


# The RFC 6962 test vectors of the certificate-transparency reference implementations.
CT_INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_reference_implementation_reproduces_the_certificate_transparency_vectors() -> None:
    data = [bytes.fromhex(h) for h in CT_INPUTS]

    assert [ref_mth(data[:n]).hex() for n in range(1, 9)] == CT_ROOTS


@pytest.mark.parametrize("n", range(1, 9))
def test_merkle_root_matches_the_certificate_transparency_vector(n: int) -> None:
    leaves = [leaf_hash(bytes.fromhex(h)) for h in CT_INPUTS[:n]]

    assert merkle_root(leaves).hex() == CT_ROOTS[n - 1]


@pytest.mark.parametrize("n", SIZES)
def test_merkle_root_and_audit_paths_match_rfc_6962(n: int) -> None:
    values = batch(n)
    leaves = [leaf_hash(v) for v in values]

    assert merkle_root(leaves) == ref_mth(values)
    assert [audit_path(i, leaves) for i in range(n)] == [ref_path(i, values) for i in range(n)]


@pytest.mark.parametrize("n", SIZES)
def test_every_leaf_path_recomputes_the_root(n: int) -> None:
    leaves = [leaf_hash(v) for v in batch(n)]
    root = merkle_root(leaves)

    for i in range(n):
        assert root_from_path(leaves[i], i, n, audit_path(i, leaves)) == root


def test_batch_of_one_has_the_leaf_hash_as_root_and_an_empty_path() -> None:
    value = b'{"record": 0}'

    assert merkle_root([leaf_hash(value)]) == hashlib.sha256(b"\x00" + value).digest()
    assert audit_path(0, [leaf_hash(value)]) == []


def test_empty_batch_has_no_root() -> None:
    with pytest.raises(ValueError):
        merkle_root([])


@pytest.mark.parametrize("n", SIZES)
def test_tampered_value_does_not_recompute_the_root(n: int) -> None:
    values = batch(n)
    leaves = [leaf_hash(v) for v in values]
    root = merkle_root(leaves)

    for i in range(n):
        assert root_from_path(leaf_hash(values[i] + b" "), i, n, audit_path(i, leaves)) != root


@pytest.mark.parametrize("n", range(2, 18))
def test_tampered_index_does_not_recompute_the_root(n: int) -> None:
    leaves = [leaf_hash(v) for v in batch(n)]
    root = merkle_root(leaves)

    for i in range(n):
        path = audit_path(i, leaves)
        for j in [*range(n), n, n + 1, -1]:
            if j != i:
                assert root_from_path(leaves[i], j, n, path) != root, (i, j)


@pytest.mark.parametrize("n", range(2, 18))
def test_tampered_path_does_not_recompute_the_root(n: int) -> None:
    leaves = [leaf_hash(v) for v in batch(n)]
    root = merkle_root(leaves)

    for i in range(n):
        path = audit_path(i, leaves)
        for s in range(len(path)):
            flipped = bytearray(path[s])
            flipped[0] ^= 0x01
            assert root_from_path(leaves[i], i, n, [*path[:s], bytes(flipped), *path[s + 1 :]]) != root
        assert root_from_path(leaves[i], i, n, path[:-1]) is None
        assert root_from_path(leaves[i], i, n, [*path, root]) is None


@pytest.mark.parametrize("n", SIZES)
def test_a_lie_about_the_batch_size_never_yields_another_root(n: int) -> None:
    # The size is not signed; it only shapes the path, so a lie either fails or recomputes the very same signed root.
    leaves = [leaf_hash(v) for v in batch(n)]
    root = merkle_root(leaves)

    for i in range(n):
        path = audit_path(i, leaves)
        for claimed in range(40):
            assert root_from_path(leaves[i], i, claimed, path) in (root, None), (i, claimed)


@pytest.mark.parametrize(
    ("n", "index", "claimed"),
    [(1, 0, 2), (2, 1, 3), (3, 2, 4), (5, 4, 6), (8, 7, 9), (16, 15, 17), (17, 16, 16), (4, 3, 3)],
)
def test_tampered_size_that_changes_the_tree_shape_does_not_recompute_the_root(n: int, index: int, claimed: int) -> None:
    leaves = [leaf_hash(v) for v in batch(n)]

    assert root_from_path(leaves[index], index, claimed, audit_path(index, leaves)) is None


# --- sign_batch and Keyring.verify ----------------------------------------------------------------------------------


def as_record_headers(headers: dict[str, str]) -> dict[str, bytes]:
    return {str(name): value.encode() for name, value in headers.items()}


def signed(key: SigningKey, authority: str, values: Sequence[bytes]) -> list[dict[str, bytes]]:
    return [as_record_headers(h) for h in sign_batch(key, authority, values)]


def test_sign_batch_gives_each_record_its_position_and_one_shared_signature(signing_keys: dict[str, SigningKey]) -> None:
    headers = sign_batch(signing_keys["court-dev"], "court.bj-1st-intermediate", batch(5))

    assert [h[Header.MERKLE_INDEX] for h in headers] == ["0", "1", "2", "3", "4"]
    assert {h[Header.MERKLE_SIZE] for h in headers} == {"5"}
    assert len({h[Header.SIGNATURE] for h in headers}) == 1
    assert {h[Header.KEY_ID] for h in headers} == {"court-dev"}
    assert {h[Header.AUTHORITY] for h in headers} == {"court.bj-1st-intermediate"}


def test_batch_of_one_is_signed_over_its_leaf_hash_with_an_empty_path(signing_keys: dict[str, SigningKey]) -> None:
    value = b'{"record": 0}'
    [headers] = sign_batch(signing_keys["court-dev"], "court.x", [value])

    assert headers[Header.MERKLE_PATH] == ""
    public = signing_keys["court-dev"].private_key.public_key()
    public.verify(base64.b64decode(headers[Header.SIGNATURE]), SIGNATURE_CONTEXT + hashlib.sha256(b"\x00" + value).digest())


@pytest.mark.parametrize("n", [1, 2, 7, 17])
def test_every_record_of_a_signed_batch_verifies_with_one_ed25519_verification(
    n: int, signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    values = batch(n)

    authorities = [
        keyring.verify(v, h) for v, h in zip(values, signed(signing_keys["court-dev"], "court.bj-1", values), strict=True)
    ]

    assert authorities == ["court.bj-1"] * n
    assert keyring.verifications == 1


def test_each_batch_costs_its_own_verification(signing_keys: dict[str, SigningKey], keyring: Keyring) -> None:
    for authority in ("court.a", "court.b"):
        values = [v + authority.encode() for v in batch(3)]
        for v, h in zip(values, signed(signing_keys["court-dev"], authority, values), strict=True):
            keyring.verify(v, h)

    assert keyring.verifications == 2


def test_records_verify_on_their_own_in_any_order(signing_keys: dict[str, SigningKey], keyring: Keyring) -> None:
    values = batch(6)
    records = list(zip(values, signed(signing_keys["caac-dev"], "transport.caac", values), strict=True))

    for v, h in reversed(records):
        assert keyring.verify(v, h) == "transport.caac"


def reason(keyring: Keyring, value: bytes, headers: dict[str, bytes]) -> str:
    with pytest.raises(VerificationError) as caught:
        keyring.verify(value, headers)
    return caught.value.reason


def test_tampered_value_is_a_bad_signature_even_after_its_batch_was_cached(
    signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    values = batch(4)
    headers = signed(signing_keys["court-dev"], "court.x", values)
    keyring.verify(values[2], headers[2])

    assert reason(keyring, values[2].replace(b"2", b"3"), headers[2]) == "bad_signature"


def test_signature_by_a_key_not_the_one_in_the_keyring_is_a_bad_signature(keyring: Keyring) -> None:
    impostor = SigningKey("court-dev", Ed25519PrivateKey.generate())
    values = batch(3)

    assert {reason(keyring, v, h) for v, h in zip(values, signed(impostor, "court.x", values), strict=True)} == {"bad_signature"}


def test_key_id_missing_from_the_keyring_is_an_unknown_key(keyring: Keyring) -> None:
    stranger = SigningKey("court-prod-2031", Ed25519PrivateKey.generate())
    [headers] = signed(stranger, "court.x", batch(1))

    assert reason(keyring, batch(1)[0], headers) == "unknown_key"


@pytest.mark.parametrize(
    ("key_id", "authority"),
    [
        ("city-dev", "court.bj-1st-intermediate"),
        ("court-dev", "city.hangzhou"),
        ("caac-dev", "transport.railway"),
        ("railway-dev", "transport.caac"),
        ("court-dev", "courtyard.x"),
    ],
)
def test_key_that_does_not_cover_the_authority_is_unauthorized(
    key_id: str, authority: str, signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    [headers] = signed(signing_keys[key_id], authority, batch(1))

    assert reason(keyring, batch(1)[0], headers) == "unauthorized_authority"
    assert keyring.verifications == 0


@pytest.mark.parametrize(
    ("header", "raw"),
    [
        (Header.SIGNATURE, b"not base64!!"),
        (Header.SIGNATURE, b""),
        (Header.SIGNATURE, base64.b64encode(b"\x00" * 64)),
        (Header.MERKLE_PATH, b"%%%"),
        (Header.MERKLE_PATH, base64.b64encode(b"\x00" * 31)),
        (Header.MERKLE_SIZE, b"five"),
        (Header.MERKLE_SIZE, b"0"),
        (Header.MERKLE_SIZE, b"-3"),
        (Header.MERKLE_SIZE, b"3"),
        (Header.MERKLE_INDEX, b"x"),
        (Header.MERKLE_INDEX, b"-1"),
        (Header.MERKLE_INDEX, b"5"),
        (Header.MERKLE_INDEX, b"\xff"),
    ],
)
def test_malformed_signature_header_is_a_bad_signature(
    header: Header, raw: bytes, signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    values = batch(5)
    headers = signed(signing_keys["court-dev"], "court.x", values)[4]

    assert reason(keyring, values[4], headers | {header.value: raw}) == "bad_signature"


ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493


def test_a_signature_openssl_accepts_libsodium_accepts_and_malleated_ones_it_refuses(
    signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    """Verification runs on libsodium: it must accept what the signer (OpenSSL) signs, and refuse the same signature
    with S + L (non-canonical, RFC 8032 section 5.1.7), with a byte more, or with a bit flipped."""
    values = batch(3)
    headers = signed(signing_keys["court-dev"], "court.x", values)[1]
    signature = base64.b64decode(headers[Header.SIGNATURE.value])
    root = merkle_root([leaf_hash(v) for v in values])
    signing_keys["court-dev"].private_key.public_key().verify(signature, SIGNATURE_CONTEXT + root)  # OpenSSL: valid
    assert keyring.verify(values[1], headers) == "court.x"

    malleated = signature[:32] + (int.from_bytes(signature[32:], "little") + ED25519_ORDER).to_bytes(32, "little")
    flipped = signature[:5] + bytes([signature[5] ^ 1]) + signature[6:]
    for bad in (malleated, signature + b"\x00", flipped):
        assert reason(keyring, values[1], headers | {Header.SIGNATURE.value: base64.b64encode(bad)}) == "bad_signature"


@pytest.mark.parametrize("missing", [Header.KEY_ID, Header.AUTHORITY, Header.SIGNATURE, Header.MERKLE_SIZE, Header.MERKLE_INDEX])
def test_missing_signature_header_is_a_bad_signature(
    missing: Header, signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    values = batch(2)
    headers = signed(signing_keys["court-dev"], "court.x", values)[0]
    del headers[missing.value]

    assert reason(keyring, values[0], headers) == "bad_signature"


def test_missing_path_of_a_record_in_a_larger_batch_is_a_bad_signature(
    signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    values = batch(2)
    headers = signed(signing_keys["court-dev"], "court.x", values)[0]
    del headers[Header.MERKLE_PATH.value]

    assert reason(keyring, values[0], headers) == "bad_signature"


def test_keyring_without_a_keys_list_is_refused() -> None:
    with pytest.raises(ValueError):
        Keyring.from_json({"key": []})


def test_keyring_trusts_a_key_only_for_the_authorities_it_lists() -> None:
    key = SigningKey("hz-2026", Ed25519PrivateKey.generate())
    raw = key.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    keyring = Keyring.from_json(
        {"keys": [{"key_id": "hz-2026", "authorities": ["city.hangzhou"], "public_key": base64.b64encode(raw).decode()}]}
    )
    [value] = batch(1)

    assert keyring.key_ids() == ["hz-2026"]
    assert keyring.verify(value, signed(key, "city.hangzhou", [value])[0]) == "city.hangzhou"
    assert reason(keyring, value, signed(key, "city.chengdu", [value])[0]) == "unauthorized_authority"


def test_record_headers_carry_content_type_event_type_and_a_verifiable_signature(
    signing_keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    values = batch(3)
    kinds = ["listing.issued", "listing.amended", "listing.revoked"]
    headers = record_headers(signing_keys["court-dev"], "court.x", values, kinds)
    for value, kind, record in zip(values, kinds, headers, strict=True):
        names = [name for name, _ in record]
        assert names[:2] == ["content-type", "event-type"] and all(isinstance(n, str) for n in names)
        assert dict(record)["event-type"] == kind.encode()
        assert keyring.verify(value, dict(record)) == "court.x"
    assert keyring.verifications == 1


def test_record_headers_are_sign_batch_headers_encoded_after_content_and_event_type(
    signing_keys: dict[str, SigningKey],
) -> None:
    key = signing_keys["court-dev"]
    values = [f'{{"n":{n}}}'.encode() for n in range(7)]
    kinds = ["listing.issued", "listing.amended", "listing.revoked", "listing.issued", "x", "y", "z"]

    encoded = record_headers(key, "court.bj-1st-intermediate", values, kinds)

    # Ed25519 signatures are deterministic, so signing the same batch again gives the same headers.
    expected = [
        [("content-type", b"application/json"), ("event-type", kind.encode()), *((n, t.encode()) for n, t in signed.items())]
        for kind, signed in zip(kinds, sign_batch(key, "court.bj-1st-intermediate", values), strict=True)
    ]
    assert encoded == expected


def test_record_headers_refuse_a_batch_whose_event_types_do_not_match_its_values(signing_keys: dict[str, SigningKey]) -> None:
    with pytest.raises(ValueError, match="2 values but 1 event types"):
        record_headers(signing_keys["court-dev"], "court.x", [b"{}", b"{}"], ["listing.issued"])
