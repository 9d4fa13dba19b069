"""A single-node Apache Kafka (KRaft, combined broker+controller) from Maven Central jars and the local java."""

from __future__ import annotations

import base64
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

from services.localinfra import procs
from services.localinfra.layout import Layout
from services.localinfra.procs import LocalInfraError

Progress = Callable[[str], None]

# Overridable so that a second local stack (another home) can run beside the first one.
BROKER_PORT = int(os.environ.get("BLACKLIST_SYNC_KAFKA_PORT", "9092"))
CONTROLLER_PORT = BROKER_PORT + 1
BOOTSTRAP_SERVERS = f"localhost:{BROKER_PORT}"
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


def broker_properties(data_dir: Path) -> str:
    """server.properties of the single combined KRaft node."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"localhost:{CONTROLLER_PORT}",
        "listeners": f"PLAINTEXT://localhost:{BROKER_PORT},CONTROLLER://localhost:{CONTROLLER_PORT}",
        "advertised.listeners": f"PLAINTEXT://localhost:{BROKER_PORT},CONTROLLER://localhost:{CONTROLLER_PORT}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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
    lines = ["# Written by `blacklist-sync up`; rewritten on every start."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


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


def write_config(layout: Layout) -> None:
    layout.kafka_config_dir.mkdir(parents=True, exist_ok=True)
    layout.kafka_properties.write_text(broker_properties(layout.kafka_data))
    layout.kafka_log4j.write_text(LOG4J2_PROPERTIES)


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
    """Start the broker from already fetched jars and formatted storage; no-op if ours already runs."""
    pid = procs.live_pid(layout.kafka_pid, str(layout.kafka_properties))
    if pid is not None:
        progress(f"kafka: already running (pid {pid}) at {BOOTSTRAP_SERVERS}")
        wait_ready(BOOTSTRAP_SERVERS, READY_TIMEOUT_S, alive=lambda: procs.alive(pid), log=layout.kafka_log)
        return
    if not libs_ready(layout, kafka_version()):
        raise LocalInfraError(f"no Kafka jars in {layout.kafka_libs}: run `blacklist-sync up` first")
    for port in (BROKER_PORT, CONTROLLER_PORT):
        if procs.port_open("localhost", port):
            raise LocalInfraError(
                f"localhost:{port} is taken by a process `up` did not start; stop it, "
                "or set KAFKA_BOOTSTRAP_SERVERS to use an existing Kafka"
            )
    write_config(layout)
    format_storage(layout, progress)
    _launch(layout, progress)


def _launch(layout: Layout, progress: Progress) -> None:
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
    started = time.monotonic()
    procs.rotate(layout.kafka_log, LOG_ROTATE_BYTES)
    with layout.kafka_log.open("a") as log:
        broker = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    procs.write_pid(layout.kafka_pid, broker.pid)
    progress(f"kafka: started (pid {broker.pid}), waiting for {BOOTSTRAP_SERVERS}; log: {layout.kafka_log}")
    wait_ready(BOOTSTRAP_SERVERS, READY_TIMEOUT_S, alive=lambda: broker.poll() is None, log=layout.kafka_log)
    progress(f"kafka: ready in {time.monotonic() - started:.1f}s")


def wait_ready(
    bootstrap_servers: str,
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
    log: Path | None = None,
) -> None:
    """Block until the cluster answers a metadata request with a broker and a controller."""
    deadline = time.monotonic() + timeout_s
    with procs.quiet_logger("aiokafka"):  # "Unable connect" warnings are expected while it boots
        while time.monotonic() < deadline:
            if not alive():
                raise LocalInfraError(f"Kafka exited during start-up{_log_hint(log)}")
            if procs.run_coroutine(_answers(bootstrap_servers)):
                return
            time.sleep(0.5)
    raise LocalInfraError(f"Kafka at {bootstrap_servers} did not answer within {timeout_s:.0f}s{_log_hint(log)}")


def _log_hint(log: Path | None) -> str:
    return f"; see {log}:\n{procs.tail(log)}" if log else ""


async def _answers(bootstrap_servers: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
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
