"""The local stack's generated files: Kafka properties and identities, keyring, env file, layout (no processes started)."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from faststream.security import SASLScram256

from schemas.catalogue import CONSUMERS, LISTING_TOPICS
from services.kit.kafka import client_options, faststream_security
from services.kit.settings import KafkaAuth, Settings, kafka_auth_from_env
from services.localinfra import access, compose, kafka, kafka_protocol, postgres, procs
from services.localinfra.credentials import (
    IDENTITIES,
    SCRAM_LOGIN,
    SERVICE_IDENTITIES,
    KafkaCredentials,
    client_properties,
    ensure_credentials,
    kcat_config,
)
from services.localinfra.envfile import parse_env, render_env, write_env
from services.localinfra.keys import LOCAL_KEYS, ensure_keys, load_private_key, raw_public_key
from services.localinfra.layout import Layout, default_home
from services.localinfra.procs import LocalInfraError
from services.localinfra.topics import TOPIC_ALREADY_EXISTS, _raise_on_errors


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.fixture
def credentials(tmp_path: Path) -> KafkaCredentials:
    return ensure_credentials(tmp_path / "kafka-credentials.json")[0]


def test_broker_is_a_single_combined_kraft_node_with_client_and_controller_listeners(
    tmp_path: Path, credentials: KafkaCredentials
) -> None:
    props = parse_properties(kafka.broker_properties(tmp_path / "data", credentials))
    client, controller = kafka.BROKER_PORT, kafka.CONTROLLER_PORT

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == f"CLIENT://localhost:{client},CONTROLLER://localhost:{controller}"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["controller.quorum.bootstrap.servers"] == f"localhost:{controller}"
    assert props["log.dirs"] == str(tmp_path / "data")


def test_broker_has_no_unauthenticated_listener_and_enforces_acls(tmp_path: Path, credentials: KafkaCredentials) -> None:
    props = parse_properties(kafka.broker_properties(tmp_path, credentials))
    protocols = dict(entry.split(":") for entry in props["listener.security.protocol.map"].split(","))

    assert protocols == {"CLIENT": "SASL_PLAINTEXT", "CONTROLLER": "SASL_PLAINTEXT"}
    assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-256"
    assert props["listener.name.controller.sasl.enabled.mechanisms"] == "PLAIN"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:controller"


def test_broker_authenticates_to_itself_with_the_passwords_of_the_credentials_file(
    tmp_path: Path, credentials: KafkaCredentials
) -> None:
    props = parse_properties(kafka.broker_properties(tmp_path, credentials))

    inter_broker = props["listener.name.client.scram-sha-256.sasl.jaas.config"]
    assert f'username="admin" password="{credentials.users["admin"]}"' in inter_broker
    controller = props["listener.name.controller.plain.sasl.jaas.config"]
    assert f'user_controller="{credentials.controller_password}"' in controller
    assert f'password="{credentials.controller_password}"' in controller


def test_broker_internal_topics_fit_one_node_and_groups_start_without_delay(
    tmp_path: Path, credentials: KafkaCredentials
) -> None:
    props = parse_properties(kafka.broker_properties(tmp_path, credentials))

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
    url = "postgresql://postgres@127.0.0.1:15432/blacklist_sync"
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


# --- Kafka identities: the credentials file, how a service finds its own, the ACL table ---------------------


def test_credentials_file_gives_every_identity_its_own_random_password_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "kafka-credentials.json"

    credentials, added = ensure_credentials(path)

    assert added == list(IDENTITIES)
    assert set(credentials.users) == {"admin", *SERVICE_IDENTITIES}
    passwords = [*credentials.users.values(), credentials.controller_password]
    assert len(set(passwords)) == len(passwords)
    assert all(len(p) >= 32 for p in passwords)
    assert path.stat().st_mode & 0o077 == 0
    assert json.loads(path.read_text())["users"] == credentials.users


def test_credentials_are_kept_when_up_runs_again_and_only_a_missing_identity_is_added(tmp_path: Path) -> None:
    path = tmp_path / "kafka-credentials.json"
    first, _ = ensure_credentials(path)
    document = json.loads(path.read_text())
    del document["users"]["admissions"]
    path.write_text(json.dumps(document))

    again, added = ensure_credentials(path)

    assert added == ["admissions"]
    assert again.users == {**first.users, "admissions": again.users["admissions"]}
    assert again.controller_password == first.controller_password


def test_loosened_credentials_file_is_made_private_again(tmp_path: Path) -> None:
    path = tmp_path / "kafka-credentials.json"
    ensure_credentials(path)
    path.chmod(0o644)

    ensure_credentials(path)

    assert path.stat().st_mode & 0o777 == 0o600


def test_damaged_credentials_file_is_a_clear_error_and_is_left_for_inspection(tmp_path: Path) -> None:
    path = tmp_path / "kafka-credentials.json"
    path.write_text('{"users": ')

    with pytest.raises(ValueError, match=r"kafka-credentials\.json is not JSON"):
        ensure_credentials(path)
    with pytest.raises(ValueError, match="remove it and run `blacklist-sync up` again"):
        kafka_auth_from_env("airline", tmp_path, {})
    assert path.read_text() == '{"users": '


def test_service_finds_its_own_identity_in_the_credentials_file(tmp_path: Path) -> None:
    credentials, _ = ensure_credentials(tmp_path / "kafka-credentials.json")

    airline = kafka_auth_from_env("airline", tmp_path, {})
    tools = kafka_auth_from_env(None, tmp_path, {})

    assert (airline.security_protocol, airline.mechanism, airline.username) == ("SASL_PLAINTEXT", "SCRAM-SHA-256", "airline")
    assert airline.password == credentials.users["airline"]
    assert (tools.username, tools.password) == ("admin", credentials.users["admin"])


def test_environment_overrides_the_credentials_file(tmp_path: Path) -> None:
    credentials, _ = ensure_credentials(tmp_path / "kafka-credentials.json")
    given = {"KAFKA_SASL_USERNAME": "svc-airline", "KAFKA_SASL_PASSWORD": "from-a-vault", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}

    explicit = kafka_auth_from_env("airline", tmp_path, given)
    named_only = kafka_auth_from_env("court", tmp_path, {"KAFKA_SASL_USERNAME": "airline"})
    anonymous = kafka_auth_from_env("airline", tmp_path, {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})

    assert (explicit.username, explicit.password, explicit.security_protocol) == ("svc-airline", "from-a-vault", "SASL_SSL")
    assert "ssl_context" in explicit.aiokafka_options()
    assert (named_only.username, named_only.password) == ("airline", credentials.users["airline"])
    assert anonymous.aiokafka_options() == {"security_protocol": "PLAINTEXT"}


def test_without_credentials_anywhere_a_client_connects_as_before(tmp_path: Path) -> None:
    auth = kafka_auth_from_env("airline", tmp_path, {})

    assert auth == KafkaAuth()
    assert auth.aiokafka_options() == {"security_protocol": "PLAINTEXT"}


def test_identity_missing_from_the_file_or_incomplete_configuration_is_a_clear_error(tmp_path: Path) -> None:
    ensure_credentials(tmp_path / "kafka-credentials.json")

    with pytest.raises(ValueError, match=r"no Kafka password for 'airline-canary' in .*kafka-credentials.json"):
        kafka_auth_from_env("airline-canary", tmp_path, {})
    with pytest.raises(ValueError, match="no Kafka password for 'court' in the environment"):
        kafka_auth_from_env(None, tmp_path / "elsewhere", {"KAFKA_SASL_USERNAME": "court"})
    with pytest.raises(ValueError, match="KAFKA_SECURITY_PROTOCOL=SSL is not one of"):
        kafka_auth_from_env("court", tmp_path, {"KAFKA_SECURITY_PROTOCOL": "SSL"})
    with pytest.raises(ValueError, match="KAFKA_SASL_MECHANISM=GSSAPI is not one of"):
        kafka_auth_from_env("court", tmp_path, {"KAFKA_SASL_MECHANISM": "GSSAPI"})
    with pytest.raises(ValueError, match="SASL_PLAINTEXT needs a Kafka username and password"):
        kafka_auth_from_env("court", tmp_path / "elsewhere", {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})


def test_settings_of_a_service_carry_its_identity_to_every_kafka_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials, _ = ensure_credentials(tmp_path / "kafka-credentials.json")
    monkeypatch.setenv("BLACKLIST_SYNC_HOME", str(tmp_path))
    for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM"):
        monkeypatch.delenv(name, raising=False)

    settings = Settings.from_env(service="ticketing")
    security = faststream_security(settings.kafka_auth)

    assert client_options(settings) | {"bootstrap_servers": "-"} == {
        "bootstrap_servers": "-",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "ticketing",
        "sasl_plain_password": credentials.users["ticketing"],
    }
    assert isinstance(security, SASLScram256)
    assert (security.username, security.password) == ("ticketing", credentials.users["ticketing"])
    assert faststream_security(KafkaAuth()) is None


def test_password_is_not_shown_when_an_identity_is_printed() -> None:
    assert "s3cret" not in repr(KafkaAuth("SASL_PLAINTEXT", "SCRAM-SHA-256", "court", "s3cret"))


def test_acl_table_lets_publishers_write_only_their_topic_and_consumers_only_their_dead_letters() -> None:
    writes = {(g.principal, g.name) for g in access.grants() if g.operation == access.Operation.WRITE}

    assert writes == {
        ("User:court", "court.listings.v1"),
        ("User:transport", "transport.listings.v1"),
        ("User:city-pilot", "city-pilot.listings.v1"),
        *((f"User:{consumer}", f"{consumer}.dlq.v1") for consumer in CONSUMERS),
    }


def test_acl_table_lets_consumers_read_every_listing_topic_in_their_own_group_and_publishers_read_nothing() -> None:
    reads = {(g.principal, g.resource, g.name) for g in access.grants() if g.operation == access.Operation.READ}

    assert reads == {
        *((f"User:{c}", access.Resource.TOPIC, topic) for c in CONSUMERS for topic in LISTING_TOPICS),
        *((f"User:{c}", access.Resource.GROUP, c) for c in CONSUMERS),
    }
    assert all(g.pattern == access.Pattern.LITERAL and g.permission == access.Permission.ALLOW for g in access.grants())
    assert {g.principal for g in access.grants()} == {f"User:{name}" for name in SERVICE_IDENTITIES}


def test_scram_credential_is_a_salted_pbkdf2_of_the_password_never_the_password() -> None:
    name, mechanism, iterations, salt, salted = access.scram_upsertion("court", "pw-123")
    _, _, _, other_salt, other_salted = access.scram_upsertion("court", "pw-123")

    assert (name, mechanism, iterations) == ("court", access.SCRAM_SHA_256, access.SCRAM_ITERATIONS)
    assert salted == hashlib.pbkdf2_hmac("sha256", b"pw-123", salt, iterations)
    assert salt != other_salt and salted != other_salted


def test_request_at_a_version_the_broker_lacks_fails_with_the_reason() -> None:
    call = kafka_protocol.create_acls([])

    assert call.prepare({30: (1, 3)}) is call.struct
    with pytest.raises(LocalInfraError, match=r"does not support CreateAcls v2 \(it offers none\); Kafka 2.8\+ is needed"):
        call.prepare({})


def test_admin_client_configs_for_kafka_tools_and_kcat_carry_the_admin_identity(tmp_path: Path) -> None:
    admin = ensure_credentials(tmp_path / "kafka-credentials.json")[0].admin

    java = parse_properties(client_properties(admin, "localhost:9092"))
    kcat = parse_properties(kcat_config(admin, "localhost:9092"))

    assert java["security.protocol"] == "SASL_PLAINTEXT" and java["sasl.mechanism"] == "SCRAM-SHA-256"
    assert java["sasl.jaas.config"] == f'{SCRAM_LOGIN} required username="admin" password="{admin.password}";'
    assert kcat == {
        "bootstrap.servers": "localhost:9092",
        "security.protocol": "sasl_plaintext",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "admin",
        "sasl.password": str(admin.password),
    }


def test_compose_one_shot_writes_the_broker_files_from_the_same_credentials(tmp_path: Path) -> None:
    assert compose.main(["--home", str(tmp_path / "home"), "--broker-dir", str(tmp_path / "secrets")]) == 0
    credentials = ensure_credentials(tmp_path / "home" / "kafka-credentials.json")[0]
    secrets = tmp_path / "secrets"

    jaas = (secrets / "kafka_server_jaas.conf").read_text()
    assert f'user_controller="{credentials.controller_password}"' in jaas.split("};")[0]
    assert f'username="admin" password="{credentials.users["admin"]}"' in jaas.split("};")[1]
    assert (secrets / "admin.password").read_text() == credentials.users["admin"]
    assert parse_properties((secrets / "admin-client.properties").read_text())["bootstrap.servers"] == "localhost:9092"
    assert {p.name: p.stat().st_mode & 0o777 for p in secrets.iterdir()} == dict.fromkeys(
        ["kafka_server_jaas.conf", "admin.password", "format.properties", "admin-client.properties"], 0o644
    )


def test_compose_formats_kafka_with_the_listeners_and_mechanisms_the_compose_file_gives_it() -> None:
    compose_file = (Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text()
    formatted = parse_properties(compose.FORMAT_PROPERTIES)
    environment = {
        "listeners": "KAFKA_LISTENERS",
        "advertised.listeners": "KAFKA_ADVERTISED_LISTENERS",
        "listener.security.protocol.map": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "inter.broker.listener.name": "KAFKA_INTER_BROKER_LISTENER_NAME",
        "sasl.enabled.mechanisms": "KAFKA_SASL_ENABLED_MECHANISMS",
        "sasl.mechanism.controller.protocol": "KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL",
        "log.dirs": "KAFKA_LOG_DIRS",
    }

    for key, variable in environment.items():
        assert f"      {variable}: {formatted[key]}\n" in compose_file, key
    assert "PLAINTEXT," not in formatted["listener.security.protocol.map"].replace("SASL_PLAINTEXT", "")


def test_open_access_has_plain_listeners_and_no_authorizer(tmp_path: Path) -> None:
    properties = kafka.broker_properties(tmp_path / "data", None)
    assert "listener.security.protocol.map=CONTROLLER:PLAINTEXT,CLIENT:PLAINTEXT" in properties
    assert "authorizer.class.name" not in properties
    assert "sasl" not in properties.lower()


def test_access_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BLACKLIST_SYNC_KAFKA_ACCESS", raising=False)
    assert not kafka.access_controlled()
    monkeypatch.setenv("BLACKLIST_SYNC_KAFKA_ACCESS", "scram")
    assert kafka.access_controlled()
    monkeypatch.setenv("BLACKLIST_SYNC_KAFKA_ACCESS", "sometimes")
    with pytest.raises(LocalInfraError, match="choose open or scram"):
        kafka.access_controlled()


def test_a_port_held_by_no_listener_gets_a_hint_naming_the_ephemeral_range_and_what_to_do() -> None:
    log = 'LOG:  could not bind IPv4 address "127.0.0.1": Address already in use\nFATAL:  could not create any TCP/IP sockets'
    hint = postgres.port_taken_hint(log, listening=False)
    assert f"Nothing listens on 127.0.0.1:{postgres.PORT}" in hint
    low, _ = procs.ephemeral_range()
    assert "BLACKLIST_SYNC_PG_PORT" in hint and f"below {low}" in hint
    assert postgres.port_taken_hint(log, listening=True) == ""  # another server: start() refuses that case itself
    assert postgres.port_taken_hint("FATAL:  data directory has wrong ownership", listening=False) == ""


def test_the_ephemeral_range_is_read_from_the_kernel_or_defaults_to_linux_s(tmp_path: Path) -> None:
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("40000\t50000\n")
    assert procs.ephemeral_range(ranges) == (40000, 50000)
    assert procs.ephemeral_range(tmp_path / "missing") == procs.LINUX_EPHEMERAL_RANGE
    ranges.write_text("garbage\n")
    assert procs.ephemeral_range(ranges) == procs.LINUX_EPHEMERAL_RANGE


def test_free_ports_lie_below_the_ephemeral_range_and_are_bindable() -> None:
    low, _ = procs.ephemeral_range()
    for _ in range(20):
        port = procs.free_port(pair=True)
        assert port + 1 < low
        assert procs.bindable(port) and procs.bindable(port + 1)


def test_the_default_postgres_port_lies_below_the_ephemeral_range() -> None:
    first_ephemeral, _ = procs.LINUX_EPHEMERAL_RANGE
    assert first_ephemeral > postgres.DEFAULT_PORT
    assert first_ephemeral > kafka.DEFAULT_BROKER_PORT + 1  # and its controller's


class LaggingBroker:
    """Stands in for a broker connection whose DescribeAcls lags its CreateAcls: the first `lag` describes after a
    create still answer with the ACLs from before it, as a KRaft broker does until it has applied the change."""

    def __init__(self, held: set[access.Grant], lag: int) -> None:
        self.held, self.applied, self.lag = set(held), set(held), lag
        self.describes = 0

    async def send(self, call: Any) -> Any:
        kind = type(call.struct).__name__
        if kind.startswith("CreateAcls"):
            self.held |= {access.Grant(p, r, n, o, pt, pm, h) for r, n, pt, p, h, o, pm, _ in call.struct.creations}
            return SimpleNamespace(results=[(0, None)] * len(call.struct.creations))
        assert kind.startswith("DescribeAcls"), kind
        self.describes += 1
        if self.held != self.applied:
            if self.lag:
                self.lag -= 1
            else:
                self.applied = set(self.held)
        acl: list[Any] = [
            (g.resource, g.name, g.pattern, [(g.principal, g.host, g.operation, g.permission, {})], {}) for g in self.applied
        ]
        return SimpleNamespace(error_code=0, error_message=None, resources=acl)


async def test_converging_acls_returns_only_once_the_broker_holds_the_new_table() -> None:
    table = [g for g in access.grants() if g.principal == "User:airline"]
    broker = LaggingBroker(set(table[1:]), lag=3)

    missing, extra = await access.converge_acls(cast(Any, broker), table)

    assert (missing, extra) == ([table[0]], [])
    assert broker.applied == set(table)  # a describe right after it returns sees the grant it created
    assert broker.describes == 1 + 3 + 1  # the look before, three stale answers, then the one that matched


async def test_acls_the_broker_never_applies_are_an_error_that_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "SETTLE_POLL_S", 0.01)
    table = {g for g in access.grants() if g.principal == "User:airline"}
    broker = LaggingBroker(set(), lag=10**6)
    broker.held = set(table)
    with pytest.raises(LocalInfraError, match=r"did not match the table within 0s .*run `blacklist-sync up` again"):
        await access.until_in_force(cast(Any, broker), table, timeout_s=0.05)
