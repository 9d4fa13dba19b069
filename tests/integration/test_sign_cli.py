"""`blacklist-sync sign` headers make a hand-built record acceptable to every consumer (the kcat path)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import pytest

from tests import kafka_clients
from tests.conftest import Infra
from tests.events import court_event, value_of
from tests.integration.helpers import fresh_person, wait_for_answer

pytestmark = pytest.mark.integration


def sign(value: bytes, infra: Infra, key_id: str = "court-dev") -> list[tuple[str, bytes]]:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "sign", "--key-id", key_id],
        input=value,
        capture_output=True,
        check=True,
        env={**os.environ, **infra.env()},
        timeout=60,
    )
    lines = done.stdout.decode().splitlines()
    return [(name, text.encode()) for name, text in (line.split("=", 1) for line in lines)]


async def test_record_signed_by_the_cli_and_sent_by_hand_blocks_boarding(services: dict[str, str], infra: Infra) -> None:
    person = fresh_person()
    listing_id = f"court.bj-1st-intermediate:manual-{uuid.uuid4().hex[:12]}"
    value = value_of(court_event(listing_id, person))
    headers = sign(value, infra)
    names = [name for name, _ in headers]
    assert names[:2] == ["content-type", "event-type"]
    assert {"x-authority", "x-key-id", "x-merkle-size", "x-merkle-index", "x-merkle-path", "x-signature"} <= set(names)
    assert dict(headers)["x-merkle-size"] == b"1" and dict(headers)["x-merkle-path"] == b""

    producer = kafka_clients.producer(infra.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait("court.listings.v1", value, key=listing_id.encode(), headers=headers)
    finally:
        await producer.stop()
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await wait_for_answer(client, services["airline"], person, "board_flight", allowed=False)
    assert answer["blocking"][0]["listing_id"] == listing_id


def test_sign_refuses_a_value_that_is_not_an_event(infra: Infra) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "sign", "--key-id", "court-dev"],
        input=b"{not an event",
        capture_output=True,
        env={**os.environ, **infra.env()},
        timeout=60,
    )
    assert done.returncode != 0
    assert b"not a valid event" in done.stderr
