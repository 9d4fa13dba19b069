"""The committed signing vectors (schemas/vectors/signing-v1.json) hold for services/kit/signing.py, the consumers' code."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.kit.intake import admit
from services.kit.signing import (
    SIGNATURE_CONTEXT,
    Keyring,
    SigningKey,
    VerificationError,
    audit_path,
    leaf_hash,
    merkle_root,
    root_from_path,
    sign_batch,
)
from services.kit.subjects import id_hash

VECTORS_FILE = Path(__file__).parents[2] / "schemas" / "vectors" / "signing-v1.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
BATCHES = {b["name"]: b for b in VECTORS["batches"]}
NEGATIVES = {n["name"]: n for n in VECTORS["negative"]}
SIGNATURE_HEADERS = ("x-authority", "x-key-id", "x-merkle-size", "x-merkle-index", "x-merkle-path", "x-signature")


def value(record: dict[str, Any]) -> bytes:
    return base64.b64decode(record["value_base64"], validate=True)


def values(batch: dict[str, Any]) -> list[bytes]:
    return [value(r) for r in batch["records"]]


def wire_headers(headers: dict[str, str]) -> dict[str, bytes]:
    """Headers as a Kafka consumer receives them: UTF-8 bytes."""
    return {name: text.encode() for name, text in headers.items()}


def keyring() -> Keyring:
    """A fresh keyring (no cached verification) holding exactly the vectors' keyring document."""
    return Keyring.from_json(VECTORS["keyring"])


def signing_key(key_id: str) -> SigningKey:
    (entry,) = (k for k in VECTORS["keys"] if k["key_id"] == key_id)
    return SigningKey.from_pem(key_id, entry["private_key_pkcs8_pem"].encode())


def test_vectors_cover_batch_sizes_1_2_3_5_8_13_and_each_kind_of_refusal() -> None:
    assert sorted(b["size"] for b in BATCHES.values()) == [1, 2, 3, 5, 8, 13]
    assert {"tampered_value", "wrong_index", "wrong_path", "wrong_size", "wrong_key"} <= set(NEGATIVES)
    assert {n["expected_reason"] for n in NEGATIVES.values()} == {"bad_signature", "unknown_key", "unauthorized_authority"}


def test_value_text_is_exactly_the_utf8_text_of_the_signed_bytes() -> None:
    records = [r for b in BATCHES.values() for r in b["records"]]

    assert all(r["value_text"].encode("utf-8") == value(r) for r in records)
    assert any(not r["value_text"].isascii() for r in records), "some value must need UTF-8 beyond ASCII"


def test_signature_context_is_the_one_consumers_verify_with() -> None:
    assert bytes.fromhex(VECTORS["signature_context_hex"]) == SIGNATURE_CONTEXT
    assert VECTORS["signature_context_text"].encode() == SIGNATURE_CONTEXT


@pytest.mark.parametrize("name", sorted(BATCHES))
def test_leaves_root_and_audit_paths_equal_what_services_signing_computes(name: str) -> None:
    batch = BATCHES[name]
    leaves = [leaf_hash(v) for v in values(batch)]
    root = bytes.fromhex(batch["root_hex"])

    assert [r["leaf_hex"] for r in batch["records"]] == [leaf.hex() for leaf in leaves]
    assert merkle_root(leaves) == root
    assert bytes.fromhex(batch["signed_message_hex"]) == SIGNATURE_CONTEXT + root
    for i, record in enumerate(batch["records"]):
        path = audit_path(i, leaves)
        assert record["audit_path_hex"] == [p.hex() for p in path]
        assert base64.b64decode(record["headers"]["x-merkle-path"]) == b"".join(path)
        assert root_from_path(leaves[i], i, batch["size"], path) == root


@pytest.mark.parametrize("name", sorted(BATCHES))
def test_signing_the_batch_with_the_vector_key_reproduces_every_signature_header(name: str) -> None:
    batch = BATCHES[name]

    signed = sign_batch(signing_key(batch["key_id"]), batch["authority"], values(batch))

    assert [{str(k): v for k, v in h.items()} for h in signed] == [
        {h: r["headers"][h] for h in SIGNATURE_HEADERS} for r in batch["records"]
    ]


def test_public_keys_and_keyring_entries_derive_from_the_committed_seeds() -> None:
    for entry in VECTORS["keys"]:
        private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(entry["seed_hex"]))
        public = base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()

        assert public == entry["public_key_base64"] == entry["keyring_entry"]["public_key"]
        assert signing_key(entry["key_id"]).private_key.private_bytes_raw() == private.private_bytes_raw()
        assert entry["keyring_entry"] in VECTORS["keyring"]["keys"]


def test_every_record_verifies_with_one_ed25519_verification_per_batch() -> None:
    trusted = keyring()

    for batch in BATCHES.values():
        for record in batch["records"]:
            assert trusted.verify(value(record), wire_headers(record["headers"])) == batch["authority"]

    assert trusted.verifications == len(BATCHES)


def test_every_record_is_admitted_by_a_consumer_under_its_key() -> None:
    trusted = keyring()

    for batch in BATCHES.values():
        for record in batch["records"]:
            event = admit(record["key_text"].encode(), value(record), wire_headers(record["headers"]), trusted)
            assert event.listing.listing_id == record["key_text"]
            assert event.listing.authority == batch["authority"]


def test_subject_hashes_follow_section_2() -> None:
    key = VECTORS["subject_hash_key_text"].encode()

    for subject in VECTORS["subject_hashes"]:
        assert id_hash(key, subject["kind"], subject["id"]) == subject["id_hash"]
    listed = {
        r["subject_id"]: json.loads(r["value_text"])["listing"]["subject"]["id_hash"]
        for b in BATCHES.values()
        for r in b["records"]
    }
    assert all(id_hash(key, "person", raw) == digest for raw, digest in listed.items())


def refusal(case: dict[str, Any], trusted: Keyring) -> VerificationError:
    with pytest.raises(VerificationError) as refused:
        trusted.verify(base64.b64decode(case["value_base64"]), wire_headers(case["headers"]))
    return refused.value


@pytest.mark.parametrize("name", sorted(NEGATIVES))
def test_negative_case_is_refused_with_its_expected_reason(name: str) -> None:
    case = NEGATIVES[name]

    assert refusal(case, keyring()).reason == case["expected_reason"]


@pytest.mark.parametrize("name", sorted(NEGATIVES))
def test_negative_case_is_refused_even_after_its_genuine_batch_verified(name: str) -> None:
    case = NEGATIVES[name]
    trusted = keyring()
    genuine = BATCHES[case["made_from"]["batch"]]
    for record in genuine["records"]:  # the verified-tree cache now holds this batch
        trusted.verify(value(record), wire_headers(record["headers"]))

    assert refusal(case, trusted).reason == case["expected_reason"]


@pytest.mark.parametrize("name", sorted(NEGATIVES))
def test_negative_case_differs_from_its_genuine_record_only_where_it_says(name: str) -> None:
    case = NEGATIVES[name]
    genuine = BATCHES[case["made_from"]["batch"]]["records"][case["made_from"]["index"]]
    changed = {h for h in genuine["headers"] if genuine["headers"][h] != case["headers"][h]}
    changed |= {"value"} if case["value_base64"] != genuine["value_base64"] else set()

    assert len(changed) == 1, changed
