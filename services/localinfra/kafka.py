"""A single-node Apache Kafka (KRaft, combined broker+controller) from Maven Central jars and the local java."""

from __future__ import annotations

import base64
import functools
import os
import re
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.kit.settings import KafkaAuth, kafka_auth_from_env
from services.localinfra import access, procs
from services.localinfra.credentials import (
    CONTROLLER_IDENTITY,
    KafkaCredentials,
    controller_jaas,
    ensure_credentials,
    scram_jaas,
    write_secret,
)
from services.localinfra.layout import Layout, default_home
from services.localinfra.procs import LocalInfraError

Progress = Callable[[str], None]

# Overridable so that a second local stack (another home) can run beside the first one.
DEFAULT_BROKER_PORT = 9092
BROKER_PORT = int(os.environ.get("BLACKLIST_SYNC_KAFKA_PORT", str(DEFAULT_BROKER_PORT)))
CONTROLLER_PORT = BROKER_PORT + 1
BOOTSTRAP_SERVERS = f"localhost:{BROKER_PORT}"
CONTROLLER_BOOTSTRAP = f"localhost:{CONTROLLER_PORT}"
KAFKA_POM = Path(__file__).resolve().parents[2] / "deploy" / "local" / "kafka-pom.xml"
VERSION_MARKER = ".kafka-version"
# The box has 2 cores and also runs PostgreSQL and seven Python services.
JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
LOG_ROTATE_BYTES = 50_000_000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_DOWNLOADED = re.compile(r"Downloaded from \S+: (\S+) \(([^,)]+?)(?: at [^)]*)?\)")
_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def kafka_version(pom: Path = KAFKA_POM) -> str:
    """The Kafka version pinned in the pom (its kafka.version property): one place to change it."""
    if not pom.is_file():
        raise LocalInfraError(f"{pom} is missing: `up` fetches Kafka from a source checkout (pip install -e .)")
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", namespace)
    if node is None or not (node.text or "").strip():
        raise LocalInfraError(f"{pom} does not set <kafka.version>")
    return (node.text or "").strip()


def access_controlled() -> bool:
    """BLACKLIST_SYNC_KAFKA_ACCESS=scram: SASL/SCRAM identities and ACLs. The default, `open`, keeps CONTRACT v1's
    promise that Kafka's own tools and kcat reach localhost:9092 as they are."""
    mode = os.environ.get("BLACKLIST_SYNC_KAFKA_ACCESS", "open")
    if mode not in ("open", "scram"):
        raise LocalInfraError(f"BLACKLIST_SYNC_KAFKA_ACCESS={mode!r}: choose open or scram")
    return mode == "scram"


def broker_properties(data_dir: Path, credentials: KafkaCredentials | None) -> str:
    """server.properties of the single combined KRaft node: with credentials, SASL on every listener and ACLs
    enforced; without, plain listeners (BLACKLIST_SYNC_KAFKA_ACCESS=open)."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": CONTROLLER_BOOTSTRAP,
        "listeners": f"CLIENT://localhost:{BROKER_PORT},CONTROLLER://localhost:{CONTROLLER_PORT}",
        "advertised.listeners": f"CLIENT://localhost:{BROKER_PORT},CONTROLLER://localhost:{CONTROLLER_PORT}",
        "inter.broker.listener.name": "CLIENT",
        "controller.listener.names": "CONTROLLER",
        **(
            _secured_listeners(credentials)
            if credentials
            else {"listener.security.protocol.map": "CONTROLLER:PLAINTEXT,CLIENT:PLAINTEXT"}
        ),
        "log.dirs": str(data_dir),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        "default.replication.factor": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
        # A mistyped topic must fail loudly, not appear empty: topics come only from `up`.
        "auto.create.topics.enable": "false",
    }
    lines = ["# Written by `blacklist-sync up`; rewritten on every start. May hold passwords: mode 0600."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _secured_listeners(credentials: KafkaCredentials) -> dict[str, str]:
    admin = credentials.admin
    assert admin.username is not None and admin.password is not None
    return {
        # No PLAINTEXT listener at all: a client without credentials cannot even fetch metadata.
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT",
        "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-256",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256",
        "listener.name.client.scram-sha-256.sasl.jaas.config": scram_jaas(admin.username, admin.password),
        # SCRAM users live in the metadata log the controller serves, so the controller listener uses PLAIN.
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": controller_jaas(credentials.controller_password),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{admin.username};User:{CONTROLLER_IDENTITY}",
        "allow.everyone.if.no.acl.found": "false",
    }


# INFO to stdout, which the launcher appends to $HOME/logs/kafka.log; the request log and
# state-change chatter drown the interesting lines, so they only log warnings.
LOG4J2_PROPERTIES = """\
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
"""


def new_cluster_id() -> str:
    """A random Kafka Uuid in its base64 form (22 chars), as `kafka-storage random-uuid` prints."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like a command-line flag
            return text


def java_executable() -> str:
    java = shutil.which("java")
    if java is None:
        raise LocalInfraError("java is not on PATH: Kafka 4 needs Java 17+ (apt-get install openjdk-17-jre-headless)")
    return java


def libs_ready(layout: Layout, version: str) -> bool:
    marker = layout.kafka_libs / VERSION_MARKER
    return marker.is_file() and marker.read_text().strip() == version


def fetch_jars(layout: Layout, progress: Progress) -> None:
    """Copy the Kafka jars and their runtime dependencies into kafka/libs via Maven (cached in ~/.m2)."""
    version = kafka_version()
    if libs_ready(layout, version):
        progress(f"kafka: Apache Kafka {version} jars already in {layout.kafka_libs}")
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalInfraError("mvn is not on PATH: it fetches the Kafka jars (apt-get install maven)")
    progress(f"kafka: fetching Apache Kafka {version} jars from Maven Central (first run can take minutes)")
    layout.kafka_dir.mkdir(parents=True, exist_ok=True)
    staging = layout.kafka_dir / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    command = [mvn, "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
    _run_maven(command, layout.logs_dir / "kafka-fetch.log", progress)
    (staging / VERSION_MARKER).write_text(version + "\n")
    shutil.rmtree(layout.kafka_libs, ignore_errors=True)
    staging.rename(layout.kafka_libs)
    jars = len(list(layout.kafka_libs.glob("*.jar")))
    progress(f"kafka: {jars} jars in {layout.kafka_libs}")


@dataclass
class DownloadTally:
    """Condenses Maven's line-per-file download log into a few progress lines."""

    interval_s: float = 3.0
    files: int = 0
    size_bytes: float = 0.0
    last_report: float = field(default_factory=time.monotonic)

    def add(self, line: str, now: float | None = None) -> str | None:
        """Count a Maven output line; return a progress line when one is due."""
        found = _DOWNLOADED.search(line)
        if found is None:
            return None
        url, size = found.group(1), found.group(2)
        self.files += 1
        self.size_bytes += _size_in_bytes(size)
        now = time.monotonic() if now is None else now
        name = url.rsplit("/", 1)[-1]
        if "/org/apache/kafka/" in url and name.endswith(".jar"):
            self.last_report = now
            return f"kafka:   downloaded {name} ({size})"
        if now - self.last_report >= self.interval_s:
            self.last_report = now
            return f"kafka:   downloaded {self.summary()} so far"
        return None

    def summary(self) -> str:
        return f"{self.files} files, {self.size_bytes / 1e6:.1f} MB"


def _size_in_bytes(text: str) -> float:
    number, _, unit = text.strip().partition(" ")
    try:
        return float(number) * _UNITS.get(unit, 1)
    except ValueError:
        return 0.0


def _run_maven(command: list[str], log_path: Path, progress: Progress) -> None:
    """Run mvn, keeping its full output in log_path and condensing its download log into progress lines."""
    tally = DownloadTally()
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=str(log_path.parent),
        ) as maven,
    ):
        assert maven.stdout is not None
        for raw in maven.stdout:
            line = _ANSI.sub("", raw).rstrip()
            log.write(line + "\n")
            message = tally.add(line)
            if message:
                progress(message)
    if maven.returncode != 0:
        raise LocalInfraError(f"mvn failed (exit {maven.returncode}); see {log_path}:\n{procs.tail(log_path)}")
    progress(f"kafka:   downloaded {tally.summary()}" if tally.files else "kafka:   all files from the ~/.m2 cache")


def write_config(layout: Layout, credentials: KafkaCredentials | None) -> None:
    layout.kafka_config_dir.mkdir(parents=True, exist_ok=True)
    write_secret(layout.kafka_properties, broker_properties(layout.kafka_data, credentials))
    layout.kafka_log4j.write_text(LOG4J2_PROPERTIES)


def local_credentials(layout: Layout, progress: Progress) -> KafkaCredentials:
    """The identities of this home, created on first use (random passwords, mode 0600)."""
    credentials, added = ensure_credentials(layout.kafka_credentials)
    if added:
        progress(f"kafka: created passwords for {', '.join(added)} in {layout.kafka_credentials}")
    return credentials


def storage_tool_class(libs: Path) -> str:
    """The storage tool's main class: it moved from kafka.tools to org.apache.kafka.tools in newer releases."""
    for jar in sorted(libs.glob("kafka*.jar")):
        with zipfile.ZipFile(jar) as archive:
            if "org/apache/kafka/tools/StorageTool.class" in archive.namelist():
                return "org.apache.kafka.tools.StorageTool"
    return "kafka.tools.StorageTool"


def classpath(layout: Layout) -> str:
    return f"{layout.kafka_libs}/*"


def format_storage(layout: Layout, progress: Progress) -> None:
    """Format the log directory once (standalone KRaft quorum); an already formatted one is kept."""
    if (layout.kafka_data / "meta.properties").exists():
        return
    if not layout.kafka_cluster_id.exists():
        layout.kafka_cluster_id.write_text(new_cluster_id() + "\n")
    cluster_id = layout.kafka_cluster_id.read_text().strip()
    progress(f"kafka: formatting storage in {layout.kafka_data} (cluster id {cluster_id})")
    command = [
        java_executable(),
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={layout.kafka_log4j}",
        "-cp",
        classpath(layout),
        storage_tool_class(layout.kafka_libs),
        "format",
        "--standalone",
        "--ignore-formatted",
        "-t",
        cluster_id,
        "-c",
        str(layout.kafka_properties),
    ]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise LocalInfraError(f"Kafka storage format failed:\n{result.stdout}\n{result.stderr}".strip())


def running(layout: Layout) -> bool:
    return procs.live_pid(layout.kafka_pid, str(layout.kafka_properties)) is not None


def start(layout: Layout, progress: Progress) -> None:
    """Start the broker from already fetched jars (no-op if ours runs), set identities and ACLs, wait until it answers."""
    started = time.monotonic()
    credentials = local_credentials(layout, progress) if access_controlled() else None
    pid = procs.live_pid(layout.kafka_pid, str(layout.kafka_properties))
    if pid is not None:
        _require_current_config(layout, credentials)
        progress(f"kafka: already running (pid {pid}) at {BOOTSTRAP_SERVERS}")
        alive: Callable[[], bool] = functools.partial(procs.alive, pid)
    else:
        alive = _start_new(layout, credentials, progress)
    if credentials is not None:
        _provision_when_up(credentials, alive, layout.kafka_log, progress)
    auth = credentials.admin if credentials else KafkaAuth("PLAINTEXT")
    wait_ready(BOOTSTRAP_SERVERS, READY_TIMEOUT_S, alive=alive, log=layout.kafka_log, auth=auth)
    mode = "SASL/SCRAM, ACLs on" if credentials else "open: no authentication (BLACKLIST_SYNC_KAFKA_ACCESS=scram turns it on)"
    progress(f"kafka: ready in {time.monotonic() - started:.1f}s ({mode})")


def _start_new(layout: Layout, credentials: KafkaCredentials | None, progress: Progress) -> Callable[[], bool]:
    if not libs_ready(layout, kafka_version()):
        raise LocalInfraError(f"no Kafka jars in {layout.kafka_libs}: run `blacklist-sync up` first")
    for port in (BROKER_PORT, CONTROLLER_PORT):
        if procs.port_open("localhost", port):
            raise LocalInfraError(
                f"localhost:{port} is taken by a process `up` did not start; stop it, "
                "or set KAFKA_BOOTSTRAP_SERVERS to use an existing Kafka"
            )
    write_config(layout, credentials)
    format_storage(layout, progress)
    return _launch(layout, progress)


def _require_current_config(layout: Layout, credentials: KafkaCredentials | None) -> None:
    """A broker started with other settings (say, before access control) keeps them until it restarts."""
    try:
        current = layout.kafka_properties.read_text()
    except FileNotFoundError:
        current = ""
    if current != broker_properties(layout.kafka_data, credentials):
        raise LocalInfraError(
            f"the running Kafka (config {layout.kafka_properties}) was started with other settings, "
            "e.g. before access control; restart it: `blacklist-sync down` then `blacklist-sync up` (data is kept)"
        )


def _launch(layout: Layout, progress: Progress) -> Callable[[], bool]:
    command = [
        java_executable(),
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={layout.kafka_log4j}",
        f"-Dkafka.logs.dir={layout.logs_dir}",
        "-cp",
        classpath(layout),
        "kafka.Kafka",
        str(layout.kafka_properties),
    ]
    procs.rotate(layout.kafka_log, LOG_ROTATE_BYTES)
    with layout.kafka_log.open("a") as log:
        broker = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    procs.write_pid(layout.kafka_pid, broker.pid)
    progress(f"kafka: started (pid {broker.pid}), waiting for {BOOTSTRAP_SERVERS}; log: {layout.kafka_log}")
    return lambda: broker.poll() is None


def _provision_when_up(credentials: KafkaCredentials, alive: Callable[[], bool], log: Path, progress: Progress) -> None:
    """Through the controller listener (its static PLAIN identity), set every SCRAM password and the ACL table.

    This needs no SCRAM user to exist yet, so a fresh node, a node formatted before access control and a
    node whose credentials file was replaced all end up agreeing with the file.
    """
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if not alive():
            raise LocalInfraError(f"Kafka exited during start-up{_log_hint(log)}")
        try:
            with procs.quiet_logger("aiokafka"):
                procs.run_coroutine(access.provision(CONTROLLER_BOOTSTRAP, credentials.controller, credentials.users, progress))
            return
        except (LocalInfraError, KafkaError, OSError, TimeoutError) as exc:  # still booting: the quorum has no leader yet
            if time.monotonic() > deadline:
                raise LocalInfraError(f"could not set Kafka identities and ACLs: {exc}{_log_hint(log)}") from exc
            time.sleep(0.5)


def wait_ready(
    bootstrap_servers: str,
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
    log: Path | None = None,
    auth: KafkaAuth | None = None,
) -> None:
    """Block until the cluster answers a metadata request with a broker and a controller.

    `auth` is who asks (default: the admin identity from the environment or $BLACKLIST_SYNC_HOME).
    """
    auth = auth or kafka_auth_from_env(None, default_home())
    deadline = time.monotonic() + timeout_s
    with procs.quiet_logger("aiokafka"):  # "Unable connect" warnings are expected while it boots
        while time.monotonic() < deadline:
            if not alive():
                raise LocalInfraError(f"Kafka exited during start-up{_log_hint(log)}")
            if procs.run_coroutine(_answers(bootstrap_servers, auth)):
                return
            time.sleep(0.5)
    who = f" to {auth.username}" if auth.username else ""
    raise LocalInfraError(f"Kafka at {bootstrap_servers} did not answer{who} within {timeout_s:.0f}s{_log_hint(log)}")


def _log_hint(log: Path | None) -> str:
    return f"; see {log}:\n{procs.tail(log)}" if log else ""


async def _answers(bootstrap_servers: str, auth: KafkaAuth) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000, **auth.aiokafka_options())
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers")) and cluster.get("controller_id", -1) != -1
    except (KafkaError, OSError, TimeoutError):  # not up yet: ask again
        return False
    finally:
        await admin.close()


def stop(layout: Layout, progress: Progress) -> None:
    """SIGTERM the broker `up` started (SIGKILL after STOP_TIMEOUT_S); nothing else is touched."""
    pid = procs.live_pid(layout.kafka_pid, str(layout.kafka_properties))
    if pid is None:
        procs.remove(layout.kafka_pid)
        progress("kafka: not running")
        return
    progress(f"kafka: stopping (pid {pid})")
    killed = procs.terminate(pid, STOP_TIMEOUT_S)
    procs.remove(layout.kafka_pid)
    progress("kafka: killed after timeout" if killed else "kafka: stopped")
