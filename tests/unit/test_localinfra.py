"""The local stack's generated files: Kafka properties, keyring, env file, layout (no processes started)."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.localinfra import kafka, postgres
from services.localinfra.envfile import parse_env, render_env, write_env
from services.localinfra.keys import LOCAL_KEYS, ensure_keys, load_private_key, raw_public_key
from services.localinfra.layout import Layout, default_home
from services.localinfra.procs import LocalInfraError
from services.localinfra.topics import TOPIC_ALREADY_EXISTS, _raise_on_errors


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_broker_is_a_single_combined_kraft_node_with_client_and_controller_listeners(tmp_path: Path) -> None:
    props = parse_properties(kafka.broker_properties(tmp_path / "data"))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["controller.quorum.bootstrap.servers"] == "localhost:9093"
    assert "CONTROLLER:PLAINTEXT" in props["listener.security.protocol.map"]
    assert props["log.dirs"] == str(tmp_path / "data")


def test_broker_internal_topics_fit_one_node_and_groups_start_without_delay(tmp_path: Path) -> None:
    props = parse_properties(kafka.broker_properties(tmp_path))

    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "min.insync.replicas",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_pom_pins_one_kafka_4_version_for_broker_and_tools() -> None:
    version = kafka.kafka_version()
    pom = kafka.KAFKA_POM.read_text()

    assert tuple(int(part) for part in version.split(".")[:2]) >= (4, 1)
    for artifact in ("kafka_2.13", "kafka-tools", "log4j-slf4j-impl"):
        assert f"<artifactId>{artifact}</artifactId>" in pom
    assert pom.count("<version>${kafka.version}</version>") == 2


def test_cluster_id_is_a_kafka_uuid_that_cannot_pass_for_a_flag() -> None:
    for _ in range(200):
        cluster_id = kafka.new_cluster_id()
        assert len(cluster_id) == 22
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
        assert not cluster_id.startswith("-")


def test_storage_tool_class_is_found_in_the_jars(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "kafka_2.13-9.9.9.jar", "w") as jar:
        jar.writestr("kafka/tools/StorageTool.class", b"")
    assert kafka.storage_tool_class(tmp_path) == "kafka.tools.StorageTool"

    with zipfile.ZipFile(tmp_path / "kafka-tools-9.9.9.jar", "w") as jar:
        jar.writestr("org/apache/kafka/tools/StorageTool.class", b"")
    assert kafka.storage_tool_class(tmp_path) == "org.apache.kafka.tools.StorageTool"


def test_maven_download_log_is_condensed_to_kafka_jars_and_a_periodic_summary() -> None:
    tally = kafka.DownloadTally(interval_s=3.0, last_report=0.0)
    base = "[INFO] Downloaded from central: https://repo.maven.apache.org/maven2"

    kafka_jar = tally.add(f"{base}/org/apache/kafka/kafka_2.13/4.1.1/kafka_2.13-4.1.1.jar (2.1 MB at 5 MB/s)", now=1.0)
    quiet_pom = tally.add(f"{base}/org/slf4j/slf4j-api/1.7.36/slf4j-api-1.7.36.pom (2.7 kB at 23 kB/s)", now=2.0)
    summary = tally.add(f"{base}/org/scala-lang/scala-library/2.13.16/scala-library-2.13.16.jar (5.9 MB)", now=4.5)
    unrelated = tally.add("[INFO] BUILD SUCCESS", now=10.0)

    assert kafka_jar == "kafka:   downloaded kafka_2.13-4.1.1.jar (2.1 MB)"
    assert quiet_pom is None
    assert summary == "kafka:   downloaded 3 files, 8.0 MB so far"
    assert unrelated is None


def test_postgres_listens_on_loopback_tcp_with_room_for_every_pool() -> None:
    settings = postgres.server_settings()

    assert "listen_addresses = '127.0.0.1'" in settings
    assert f"port = {postgres.PORT}" in settings
    assert "max_connections = 200" in settings
    assert postgres.database_url() == f"postgresql://postgres@127.0.0.1:{postgres.PORT}/blacklist_sync"


def test_keyring_lists_every_local_key_with_its_authorities_and_raw_public_key(tmp_path: Path) -> None:
    layout = Layout(tmp_path)

    created = ensure_keys(layout.keys_dir, layout.keyring)
    document = json.loads(layout.keyring.read_text())

    assert created == ["court-dev", "caac-dev", "railway-dev", "city-dev"]
    assert [(k["key_id"], k["authorities"]) for k in document["keys"]] == [
        ("court-dev", ["court.*"]),
        ("caac-dev", ["transport.caac"]),
        ("railway-dev", ["transport.railway"]),
        ("city-dev", ["city.*"]),
    ]
    for entry in document["keys"]:
        private = load_private_key(layout.keys_dir / f"{entry['key_id']}.pem")
        public = base64.b64decode(entry["public_key"])
        assert len(public) == 32
        assert public == raw_public_key(private)
        Ed25519PublicKey.from_public_bytes(public).verify(private.sign(b"listing"), b"listing")


def test_private_keys_are_pkcs8_pem_readable_only_by_their_owner(tmp_path: Path) -> None:
    ensure_keys(tmp_path / "keys", tmp_path / "keyring.json")

    for key in LOCAL_KEYS:
        path = tmp_path / "keys" / f"{key.key_id}.pem"
        assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
        assert path.stat().st_mode & 0o077 == 0


def test_existing_keys_are_kept_when_up_runs_again(tmp_path: Path) -> None:
    ensure_keys(tmp_path / "keys", tmp_path / "keyring.json")
    before = {p.name: p.read_bytes() for p in (tmp_path / "keys").iterdir()}
    keyring_before = (tmp_path / "keyring.json").read_text()

    created = ensure_keys(tmp_path / "keys", tmp_path / "keyring.json")

    assert created == []
    assert {p.name: p.read_bytes() for p in (tmp_path / "keys").iterdir()} == before
    assert (tmp_path / "keyring.json").read_text() == keyring_before


def test_env_file_is_plain_key_value_lines_for_the_running_stack(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:55432/blacklist_sync"
    content = render_env("localhost:9092", url, tmp_path / "keyring.json", tmp_path)

    assert content.splitlines()[:2] == ["KAFKA_BOOTSTRAP_SERVERS=localhost:9092", f"DATABASE_URL={url}"]
    assert parse_env(content) == {
        "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
        "DATABASE_URL": url,
        "AUTHORITY_KEYRING": str(tmp_path / "keyring.json"),
        "BLACKLIST_SYNC_HOME": str(tmp_path),
    }


def test_env_file_quotes_paths_with_spaces_so_the_shell_can_source_it(tmp_path: Path) -> None:
    home = tmp_path / "my home"
    content = render_env("localhost:9092", "postgresql://x@h/db", home / "keyring.json", home)
    write_env(tmp_path / "env", content)

    assert f"BLACKLIST_SYNC_HOME='{home}'" in (tmp_path / "env").read_text()
    assert parse_env((tmp_path / "env").read_text())["BLACKLIST_SYNC_HOME"] == str(home)


def test_layout_matches_what_the_contract_says_up_leaves_on_disk(tmp_path: Path) -> None:
    layout = Layout(tmp_path)

    assert layout.kafka_libs == tmp_path / "kafka" / "libs"
    assert layout.keyring == tmp_path / "keyring.json"
    assert layout.env_file == tmp_path / "env"
    assert layout.keys_dir == tmp_path / "keys"
    assert layout.kafka_log == tmp_path / "logs" / "kafka.log"


def test_home_comes_from_blacklist_sync_home_else_the_user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLACKLIST_SYNC_HOME", str(tmp_path / "bls"))
    assert default_home() == tmp_path / "bls"

    monkeypatch.delenv("BLACKLIST_SYNC_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_home() == tmp_path / ".blacklist-sync"


def test_topic_creation_tolerates_topics_created_meanwhile_but_not_other_errors() -> None:
    _raise_on_errors([("court.listings.v1", 0, None), ("airline.dlq.v1", TOPIC_ALREADY_EXISTS, "exists")])

    with pytest.raises(LocalInfraError, match=r"court\.listings\.v1: error 37"):
        _raise_on_errors([("court.listings.v1", 37, "Invalid partitions")])
