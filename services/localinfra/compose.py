"""docker-compose's first one-shot: the stack's Kafka credentials (once) and the files the Kafka container reads."""

#   python -m services.localinfra.compose --broker-dir /etc/kafka/blacklist-sync
# writes $BLACKLIST_SYNC_HOME/kafka-credentials.json (0600, shared with `init` and the services) and, in the
# broker's secrets volume, the JAAS file, the admin password (for `kafka-storage format --add-scram`), the
# properties the storage tool formats with, and an admin client config for the healthcheck and Kafka's tools.

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from services.localinfra.credentials import (
    KafkaCredentials,
    client_properties,
    controller_jaas,
    credentials_path,
    ensure_credentials,
    scram_jaas,
    write_secret,
)
from services.localinfra.layout import default_home

# Mirrors the kafka service of docker-compose.yml: the storage tool only needs the node's identity and listeners.
FORMAT_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@kafka:9093
controller.listener.names=CONTROLLER
listeners=INTERNAL://:19092,CONTROLLER://:9093,HOST://:9092
advertised.listeners=INTERNAL://kafka:19092,HOST://localhost:9092
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,HOST:SASL_PLAINTEXT
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.controller.protocol=PLAIN
log.dirs=/var/lib/kafka/data
"""


def broker_jaas_file(credentials: KafkaCredentials) -> str:
    """JAAS for the apache/kafka image (KAFKA_OPTS=-Djava.security.auth.login.config=…): PLAIN controller, SCRAM elsewhere."""
    admin = credentials.admin
    assert admin.username is not None and admin.password is not None
    return (
        f"controller.KafkaServer {{\n  {controller_jaas(credentials.controller_password)}\n}};\n"
        f"KafkaServer {{\n  {scram_jaas(admin.username, admin.password)}\n}};\n"
    )


def write_broker_files(credentials: KafkaCredentials, directory: Path) -> list[Path]:
    """What the Kafka container needs; 0644 because it runs as another user (the volume is mounted only there and here)."""
    admin = credentials.admin
    assert admin.password is not None
    files = {
        "kafka_server_jaas.conf": broker_jaas_file(credentials),
        "admin.password": admin.password,
        "format.properties": FORMAT_PROPERTIES,
        "admin-client.properties": client_properties(admin, "localhost:9092"),
    }
    for name, content in files.items():
        write_secret(directory / name, content, mode=0o644)
    return [directory / name for name in files]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create the Kafka credentials of a stack (once) and the broker's files.")
    parser.add_argument("--home", type=Path, default=None, help="default: $BLACKLIST_SYNC_HOME")
    parser.add_argument("--broker-dir", type=Path, required=True, help="the Kafka container's secrets directory")
    args = parser.parse_args(argv)
    path = credentials_path(args.home or default_home())
    credentials, added = ensure_credentials(path)
    print(f"kafka credentials: {path} ({'added ' + ', '.join(added) if added else 'unchanged'})")
    for written in write_broker_files(credentials, args.broker_dir):
        print(f"kafka broker file: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
