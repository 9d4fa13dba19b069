"""Who may do what on Kafka: one SCRAM identity per service, and ACLs that give each only its own job."""

# Publishers write only their own listing topic. Consumers read the listing topics in their own group and
# write only their own dead-letter topic. The admin is a super user (broker setting), so it needs no ACL.
# A client without credentials cannot even connect: every client listener is SASL only.

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from aiokafka.conn import AIOKafkaConnection, create_conn
from aiokafka.errors import KafkaError, for_code

from schemas.catalogue import CONSUMERS, FAMILIES, LISTING_TOPICS, dlq_topic
from services.kit.settings import KafkaAuth
from services.localinfra import kafka_protocol
from services.localinfra.procs import LocalInfraError, quiet_logger

Progress = Callable[[str], None]
SCRAM_SHA_256 = 1  # the mechanism id AlterUserScramCredentials uses
SCRAM_ITERATIONS = 8192  # Kafka's minimum is 4096
SETTLE_TIMEOUT_S = 10.0  # for the broker to apply an ACL change the controller accepted
SETTLE_POLL_S = 0.05


class Resource(IntEnum):
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class Operation(IntEnum):
    ANY = 1
    READ = 3
    WRITE = 4
    DESCRIBE = 8


class Pattern(IntEnum):
    ANY = 1
    LITERAL = 3


class Permission(IntEnum):
    ANY = 1
    ALLOW = 3


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL on one literally named resource, from any host."""

    principal: str
    resource: int
    name: str
    operation: int
    pattern: int = Pattern.LITERAL
    permission: int = Permission.ALLOW
    host: str = "*"

    def binding(self) -> tuple[int, str, int, str, str, int, int]:
        return (self.resource, self.name, self.pattern, self.principal, self.host, self.operation, self.permission)

    def __str__(self) -> str:
        return f"{self.principal} {Operation(self.operation).name} {Resource(self.resource).name.lower()} {self.name}"


def principal(identity: str) -> str:
    return f"User:{identity}"


def grants() -> list[Grant]:
    """The whole table, derived from the catalogue: adding a consumer or a family adds its rows."""
    table: list[Grant] = []
    for family in FAMILIES.values():
        table += _on_topic(family.service, family.topic, Operation.WRITE, Operation.DESCRIBE)
    for consumer in CONSUMERS:
        for topic in LISTING_TOPICS:
            table += _on_topic(consumer, topic, Operation.READ, Operation.DESCRIBE)
        table.append(Grant(principal(consumer), Resource.GROUP, consumer, Operation.READ))
        # An idempotent producer needs WRITE on a topic, nothing cluster-wide (KIP-679).
        table += _on_topic(consumer, dlq_topic(consumer), Operation.WRITE, Operation.DESCRIBE)
    return sorted(table)


def _on_topic(identity: str, topic: str, *operations: Operation) -> list[Grant]:
    return [Grant(principal(identity), Resource.TOPIC, topic, operation) for operation in operations]


def scram_upsertion(name: str, password: str, iterations: int = SCRAM_ITERATIONS) -> tuple[str, int, int, bytes, bytes]:
    """RFC 5802 salted password: the broker stores only this, never the password."""
    salt = os.urandom(32)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return (name, SCRAM_SHA_256, iterations, salt, salted)


async def connect(bootstrap_servers: str, auth: KafkaAuth, timeout_ms: int = 15000) -> AIOKafkaConnection:
    """A single authenticated connection to the first node that answers (a broker forwards these requests)."""
    failures = []
    for address in bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with quiet_logger("aiokafka"):  # PLAIN logs a warning about clear text on every connection
                return await create_conn(host, int(port), request_timeout_ms=timeout_ms, **auth.aiokafka_options())
        except (KafkaError, OSError, ValueError) as exc:
            failures.append(f"{address}: {exc}")
    raise LocalInfraError(f"cannot reach Kafka as {auth.username or 'anonymous'}: " + "; ".join(failures))


async def upsert_scram(connection: AIOKafkaConnection, users: dict[str, str]) -> None:
    """Set every user's SCRAM-SHA-256 password (create or replace): the cluster then agrees with the file."""
    response = await connection.send(
        kafka_protocol.alter_user_scram_credentials([scram_upsertion(name, pw) for name, pw in sorted(users.items())])
    )
    _raise_on_errors("set SCRAM credentials", [(r[0], r[1], r[2]) for r in response.results])


async def current_grants(connection: AIOKafkaConnection, principals: Iterable[str]) -> set[Grant]:
    """The ACLs the cluster holds for these principals (whatever their resource, pattern or permission)."""
    wanted = set(principals)
    anything = (Resource.ANY, None, Pattern.ANY, None, None, Operation.ANY, Permission.ANY)
    response = await connection.send(kafka_protocol.describe_acls(anything))
    _raise_on_errors("describe ACLs", [("describe", response.error_code, response.error_message)])
    found = set()
    for resource_type, name, pattern, acls, _ in response.resources:
        for who, host, operation, permission, _ in acls:
            if who in wanted:
                found.add(Grant(who, resource_type, name, operation, pattern, permission, host))
    return found


async def converge_acls(connection: AIOKafkaConnection, table: list[Grant]) -> tuple[list[Grant], list[Grant]]:
    """Make the ACLs of the table's principals exactly the table: create what is missing, delete the rest."""
    existing = await current_grants(connection, {g.principal for g in table})
    missing = sorted(set(table) - existing)
    extra = sorted(existing - set(table))
    if missing:
        response = await connection.send(kafka_protocol.create_acls([g.binding() for g in missing]))
        _raise_on_errors("create ACLs", [(str(g), r[0], r[1]) for g, r in zip(missing, response.results, strict=True)])
    if extra:
        response = await connection.send(kafka_protocol.delete_acls([g.binding() for g in extra]))
        _raise_on_errors("delete ACLs", [(str(g), r[0], r[1]) for g, r in zip(extra, response.filter_results, strict=True)])
    if missing or extra:
        await until_in_force(connection, set(table))
    return missing, extra


async def until_in_force(connection: AIOKafkaConnection, table: set[Grant], timeout_s: float = SETTLE_TIMEOUT_S) -> None:
    """Wait until the broker holds exactly the table for its principals. The controller has accepted a change when
    CreateAcls or DeleteAcls answers; the broker, which describes ACLs and authorizes clients, applies it from the
    metadata log a moment later. Without the wait, a service started right after `up` could be refused, and a
    describe right after a change could miss it (a CI run's did)."""
    principals = {g.principal for g in table}
    deadline = time.monotonic() + timeout_s
    while (held := await current_grants(connection, principals)) != table:
        if time.monotonic() > deadline:
            raise LocalInfraError(
                f"Kafka's ACLs did not match the table within {timeout_s:.0f}s ({len(table - held)} missing,"
                f" {len(held - table)} extra); run `blacklist-sync up` again, and see the broker's log if it recurs"
            )
        await asyncio.sleep(SETTLE_POLL_S)


async def provision(
    bootstrap_servers: str, auth: KafkaAuth, users: dict[str, str], progress: Progress, table: list[Grant] | None = None
) -> None:
    """Give every identity its password and the cluster exactly the ACL table, as `auth` (a super user)."""
    table = grants() if table is None else table
    connection = await connect(bootstrap_servers, auth)
    try:
        await upsert_scram(connection, users)
        missing, extra = await converge_acls(connection, table)
    finally:
        connection.close()
    progress(f"kafka: SCRAM identities {', '.join(sorted(users))}")
    changes = f"{len(missing)} created, {len(extra)} removed" if missing or extra else "unchanged"
    progress(f"kafka: ACLs {changes} ({len(table)} in the table)")


def _raise_on_errors(what: str, results: Iterable[tuple[str, int, Any]]) -> None:
    failures = [f"{subject}: {for_code(code).__name__} {message or ''}".strip() for subject, code, message in results if code]
    if failures:
        raise LocalInfraError(f"Kafka refused to {what}: " + "; ".join(failures))
