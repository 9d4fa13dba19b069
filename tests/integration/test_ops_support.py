"""Helpers shared by the ops tool tests (no tests here): run `blacklist-sync ops`, Kafka's own tools, copies, processes."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from schemas.catalogue import LISTING_TOPICS, schema_name
from services.consumers import store
from services.kit.settings import Settings
from services.kit.signing import SignedRecord, SigningKey
from services.ops.bench import produce, signed
from tests import kafka_clients
from tests.conftest import Infra
from tests.integration.helpers import wait_caught_up

CLI_TIMEOUT_S = 240.0
GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def run_cli(infra: Infra, *args: str, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT_S) -> Ran:
    """`blacklist-sync ARGS…` as an operator runs it: a separate process, its exit status and both streams."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **infra.env(), **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"blacklist-sync {' '.join(args)} did not finish in {timeout:.0f}s") from None
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def kafka_tool(infra: Infra, *args: str, timeout: float = 120.0) -> Ran:
    """Kafka's own consumer-groups tool from the jars `up` installed, as the admin identity."""
    libs = infra.home / "kafka" / "libs"
    assert libs.is_dir(), f"Kafka's jars are missing in {libs}: run `blacklist-sync up`"
    extra: list[str] = []
    config = _command_config()
    if config is not None:
        extra = ["--command-config", str(config)]
    process = await asyncio.create_subprocess_exec(
        "java",
        "-cp",
        f"{libs}/*",
        GROUP_COMMAND,
        "--bootstrap-server",
        infra.bootstrap_servers,
        *extra,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"kafka-consumer-groups {' '.join(args)} did not finish in {timeout:.0f}s") from None
    finally:
        if config is not None:
            config.unlink()  # it holds the admin password
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def _command_config() -> Path | None:
    """Client properties for the Java tool when the cluster needs credentials (the tests' admin identity)."""
    auth = kafka_clients.admin_identity()
    if not auth.uses_sasl:
        return None
    module = "scram.ScramLoginModule" if auth.mechanism.startswith("SCRAM") else "plain.PlainLoginModule"
    lines = [
        f"security.protocol={auth.security_protocol}",
        f"sasl.mechanism={auth.mechanism}",
        f"sasl.jaas.config=org.apache.kafka.common.security.{module} required"
        f' username="{auth.username}" password="{auth.password}";',
    ]
    handle, name = tempfile.mkstemp(prefix="ops-test-", suffix=".properties")
    with os.fdopen(handle, "w") as file:
        file.write("\n".join(lines) + "\n")
    return Path(name)


def describe_rows(output: str) -> list[dict[str, str]]:
    """Rows of `kafka-consumer-groups --describe`, keyed by its column headers."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in output.splitlines():
        cells = line.split()
        if cells[:2] == ["GROUP", "TOPIC"]:
            header = cells
        elif header and len(cells) >= 6 and cells[0] != "GROUP":
            rows.append(dict(zip(header, cells, strict=False)))
    return rows


async def publish(infra: Infra, topic: str, key_id: str, authority: str, pairs: Sequence[tuple[str, bytes]]) -> None:
    """Sign (listing_id, value) pairs with a local key as one batch and produce them in order."""
    key = SigningKey.load(infra.home / "keys", key_id)
    await produce(Settings.from_env(), topic, signed(key, authority, pairs))


async def publish_records(topic: str, records: Sequence[SignedRecord]) -> None:
    await produce(Settings.from_env(), topic, records)


def hash_key() -> bytes:
    return Settings.from_env().subject_hash_key


async def caught_up(infra: Infra, consumer: str, timeout: float = 60.0) -> None:
    for topic in LISTING_TOPICS:
        await wait_caught_up(infra.bootstrap_servers, consumer, topic, timeout)


async def copy_of(infra: Infra, consumer: str) -> list[tuple[object, ...]]:
    """Every row of a consumer's copy (markers included), as plain tuples ordered by listing id."""
    conn = await asyncpg.connect(infra.database_url, server_settings={"search_path": schema_name(consumer)})
    try:
        return [tuple(r) for r in await store.snapshot(conn)]
    finally:
        await conn.close()


async def execute(infra: Infra, sql: str, *args: object) -> str:
    conn = await asyncpg.connect(infra.database_url)
    try:
        status: str = await conn.execute(sql, *args)
        return status
    finally:
        await conn.close()


async def fetch(infra: Infra, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(infra.database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def child_service_pid(app: str) -> int:
    """The pid of a service this test session started (a child of this process), found by its ASGI app."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == me and app.encode() in command:
            return int(entry.name)
    raise AssertionError(f"no child process of this test session runs {app}; the services fixture starts them")


def wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state == "Z":  # exited; its parent (the services fixture's Popen) reaps it later
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} still running after {timeout:.0f}s")
