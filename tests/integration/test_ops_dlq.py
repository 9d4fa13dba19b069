"""`ops dlq list` and `ops dlq redrive` on the real DLQ topic: a record refused for an unknown key applies once trusted."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from schemas.catalogue import FAMILIES
from services.kit.signing import SigningKey
from services.ops.bench import COURT, listing_event, signed
from tests.conftest import Infra
from tests.integration.helpers import ask, fresh_person, wait_for_answer
from tests.integration.test_ops_support import caught_up, fetch, hash_key, publish, publish_records, run_cli

pytestmark = pytest.mark.integration
COURT_TOPIC = FAMILIES["court"].topic


def rotated_key() -> SigningKey:
    """A court key the consumers do not trust yet (as after a key rotation the keyring missed)."""
    return SigningKey(f"court-rotated-{uuid.uuid4().hex[:6]}", Ed25519PrivateKey.generate())


def keyring_trusting(infra: Infra, key: SigningKey, directory: Path) -> Path:
    """The live keyring plus `key` for the court family, written beside the test."""
    document = json.loads(infra.keyring_path.read_text())
    raw = key.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    document["keys"].append({"key_id": key.key_id, "authorities": ["court.*"], "public_key": base64.b64encode(raw).decode()})
    path = directory / "keyring.json"
    path.write_text(json.dumps(document))
    return path


def event_id_of(value: bytes) -> str:
    found: str = json.loads(value)["event_id"]
    return found


async def letters_of(infra: Infra, consumer: str, event_id: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll `ops dlq list --json` until `count` letters of the event are there."""
    deadline = time.monotonic() + timeout
    while True:
        listed = await run_cli(infra, "ops", "dlq", "list", consumer, "--json")
        assert listed.code == 0, listed.err
        found = [letter for letter in json.loads(listed.out) if letter["event_id"] == event_id]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} letters of {event_id} not in {consumer}'s DLQ after {timeout}s: {found}")
        await asyncio.sleep(0.5)


async def redrives_of(infra: Infra, event_id: str) -> list[tuple[str, str | None]]:
    rows = await fetch(
        infra, "SELECT outcome, reason, redriven_by FROM airline.dlq_redrives WHERE event_id = $1 ORDER BY id", event_id
    )
    assert all(r["redriven_by"] for r in rows), "every redrive names who ran it"
    return [(r["outcome"], r["reason"]) for r in rows]


async def test_dlq_list_shows_reason_source_time_and_listing_id(services: dict[str, str], infra: Infra) -> None:
    listing_id = f"{COURT}:dlq-{uuid.uuid4().hex[:8]}"
    value = listing_event(listing_id, fresh_person(), hash_key())
    await publish_records(COURT_TOPIC, signed(rotated_key(), COURT, [(listing_id, value)]))

    letter = (await letters_of(infra, "airline", event_id_of(value)))[0]
    shown = await run_cli(infra, "ops", "dlq", "list", "airline")

    assert letter["reason"] == "unknown_key" and "is not in the keyring" in letter["detail"]
    assert letter["listing_id"] == listing_id
    assert letter["source"].startswith(f"{COURT_TOPIC}/")
    assert abs(datetime.now(UTC) - datetime.fromisoformat(letter["at"])) < timedelta(minutes=5)
    line = next(line for line in shown.out.splitlines() if listing_id in line)
    assert "unknown_key" in line and letter["source"] in line and letter["dlq"] in line


async def test_letter_refused_for_an_unknown_key_is_applied_by_redrive_once_the_key_is_trusted(
    services: dict[str, str], infra: Infra, tmp_path: Path
) -> None:
    subject, key = fresh_person(), rotated_key()
    listing_id = f"{COURT}:dlq-{uuid.uuid4().hex[:8]}"
    value = listing_event(listing_id, subject, hash_key(), restrictions=["FLIGHT"])
    await publish_records(COURT_TOPIC, signed(key, COURT, [(listing_id, value)]))
    event_id = event_id_of(value)
    await letters_of(infra, "airline", event_id)
    await caught_up(infra, "airline")
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await ask(client, services["airline"], subject, "board_flight"))["allowed"] is True

    refused = await run_cli(infra, "ops", "dlq", "redrive", "airline", "--event-id", event_id)
    assert refused.code != 0 and "refused again" in refused.err, refused.out + refused.err
    await letters_of(infra, "airline", event_id, count=2)  # dead-lettered again, as a new letter
    trusted = keyring_trusting(infra, key, tmp_path)
    redriven = await run_cli(
        infra, "ops", "dlq", "redrive", "airline", "--event-id", event_id, env={"AUTHORITY_KEYRING": str(trusted)}
    )
    nothing_left = await run_cli(
        infra, "ops", "dlq", "redrive", "airline", "--event-id", event_id, env={"AUTHORITY_KEYRING": str(trusted)}
    )

    assert redriven.code == 0, redriven.err
    assert "1 applied" in redriven.out, redriven.out
    async with httpx.AsyncClient(timeout=10) as client:
        refusal = await wait_for_answer(client, services["airline"], subject, "board_flight", allowed=False, timeout=5)
    assert [b["listing_id"] for b in refusal["blocking"]] == [listing_id]
    assert await redrives_of(infra, event_id) == [("dead_lettered", "unknown_key"), ("applied", None)]
    assert nothing_left.code == 0 and "redrove 0 dead letters" in nothing_left.out


async def test_redriven_record_older_than_the_copy_is_a_no_op(services: dict[str, str], infra: Infra, tmp_path: Path) -> None:
    subject, key = fresh_person(), rotated_key()
    listing_id = f"{COURT}:dlq-{uuid.uuid4().hex[:8]}"
    first = listing_event(listing_id, subject, hash_key(), restrictions=["FLIGHT"])
    await publish_records(COURT_TOPIC, signed(key, COURT, [(listing_id, first)]))
    revoked = listing_event(listing_id, subject, hash_key(), version=2, restrictions=["FLIGHT"], revoked=True)
    await publish(infra, COURT_TOPIC, "court-dev", COURT, [(listing_id, revoked)])
    await letters_of(infra, "airline", event_id_of(first))
    await caught_up(infra, "airline")

    redriven = await run_cli(
        infra,
        "ops",
        "dlq",
        "redrive",
        "airline",
        "--event-id",
        event_id_of(first),
        env={"AUTHORITY_KEYRING": str(keyring_trusting(infra, key, tmp_path))},
    )

    assert redriven.code == 0, redriven.err
    assert "1 no-op" in redriven.out, redriven.out
    assert await redrives_of(infra, event_id_of(first)) == [("no_op", None)]
    marker = await fetch(infra, "SELECT version, id_hash FROM airline.listings WHERE listing_id = $1", listing_id)
    assert [(r["version"], r["id_hash"]) for r in marker] == [(2, None)], "the revocation's marker stands"
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await ask(client, services["airline"], subject, "board_flight"))["allowed"] is True


async def test_redrive_of_an_event_id_no_letter_carries_fails_with_a_reason(infra: Infra) -> None:
    missing = str(uuid.uuid4())

    ran = await run_cli(infra, "ops", "dlq", "redrive", "airline", "--event-id", missing)

    assert ran.code != 0
    assert ran.err.strip() == f"blacklist-sync: no dead letter carries event id {missing}"
