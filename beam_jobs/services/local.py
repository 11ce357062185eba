"""Local services the README commands and the tests need: a Kafka broker and the Prism runner.

Both are installed from package registries into a cache directory (``$CALLQA_HOME``, default
``~/.cache/callqa``) on first use: Kafka 4.4.0 from Maven Central jars, Prism 2.77.0 built with
``go install``. Nothing is downloaded from GitHub or any other site.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

_LOG = logging.getLogger(__name__)

KAFKA_VERSION = "4.4.0"
LOG4J_VERSION = "2.24.3"  # Kafka 4.4 logs through SLF4J 1.7: use log4j-slf4j-impl, not slf4j2
PRISM_VERSION = "v2.77.0"  # must match the apache-beam pin

_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.callqa</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders><Console name="out" target="SYSTEM_OUT">
    <PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/><Logger name="org.apache.kafka" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="out"/></Root>
  </Loggers>
</Configuration>
"""


def cache_dir() -> Path:
    """Where installed services and their data live: ``$CALLQA_HOME`` or ``~/.cache/callqa``."""
    root = Path(os.environ.get("CALLQA_HOME", Path.home() / ".cache" / "callqa"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def locked_environment(name: str, *, with_callqa: bool = False) -> Path:
    """The python of a virtual environment holding exactly ``deploy/lock/{name}.txt`` (hashes
    checked), for tools the job's environment cannot hold (Airflow, Beam's GCP extra). Made
    with uv on first use under ``$CALLQA_HOME/envs/{name}-{lock digest}`` and kept, so a changed
    lock file gets a new environment. ``with_callqa`` adds this checkout, editable, without
    dependencies (the lock holds them); the checkout's path is then part of the key."""
    root = Path(__file__).resolve().parents[2]
    lock = root / "deploy" / "lock" / f"{name}.txt"
    if not lock.is_file():
        raise RuntimeError(f"no lock file {lock}: run from a checkout of callqa")
    key = lock.read_bytes() + str(with_callqa).encode()
    if with_callqa:  # it holds one checkout, editable: another checkout gets its own
        key += str(root).encode()
    digest = hashlib.sha256(key).hexdigest()[:12]
    env = cache_dir() / "envs" / f"{name}-{digest}"
    python = env / "bin" / "python"
    if (env / ".installed").exists():
        return python
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or _require(
        "uv", f"make the {name} environment"
    )
    _LOG.info("making the %s environment from %s in %s", name, lock, env)
    subprocess.run([uv, "venv", "-q", "--clear", "--python", sys.executable, str(env)], check=True)
    install = [uv, "pip", "install", "-q", "--python", str(python)]
    subprocess.run([*install, "--require-hashes", "-r", str(lock)], check=True)
    if with_callqa:
        subprocess.run([*install, "--no-deps", "-e", str(root)], check=True)
    (env / ".installed").write_text(lock.read_text())
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _require(tool: str, what: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"`{tool}` is not on PATH; it is needed to {what}. Install it first.")
    return path


def install_kafka() -> Path:
    """Kafka jars in ``<cache>/kafka-<version>/libs`` (Maven Central, ~54 MB, ~10 s)."""
    home = cache_dir() / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    marker = home / ".installed"
    if marker.exists():
        return home
    mvn = _require("mvn", "download Kafka from Maven Central")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_POM)
    (home / "log4j2.xml").write_text(_LOG4J2)
    settings = home / "settings.xml"
    settings.write_text(
        "<settings><mirrors><mirror><id>central</id><mirrorOf>*</mirrorOf>"
        "<url>https://repo.maven.apache.org/maven2</url></mirror></mirrors></settings>"
    )
    _LOG.info("installing Kafka %s jars into %s", KAFKA_VERSION, libs)
    subprocess.run(
        [mvn, "-B", "-q", "-s", str(settings), "-f", str(home / "pom.xml"),
         "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={libs}"],
        check=True,
    )  # fmt: skip
    marker.write_text(KAFKA_VERSION)
    return home


@dataclass
class KafkaBroker:
    """A single-node KRaft broker+controller on 127.0.0.1 with its data on disk."""

    data_dir: Path
    port: int = 19092
    controller_port: int = 19093
    #: Optional second listener with SASL/PLAIN authentication (tests of secured clients).
    sasl_port: int | None = None
    sasl_users: tuple[tuple[str, str], ...] = ()
    #: Optional SASL_SSL listener: TLS, then the same SASL/PLAIN users. It needs the broker's
    #: certificate (PEM, then any intermediate CAs) and its unencrypted PKCS#8 key (PEM).
    ssl_port: int | None = None
    ssl_certificate: Path | None = None
    ssl_key: Path | None = None

    def __post_init__(self) -> None:
        if self.ssl_port is not None and (self.ssl_certificate is None or self.ssl_key is None):
            raise ValueError("a SASL_SSL listener (ssl_port) needs ssl_certificate and ssl_key")

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str | None:
        return None if self.sasl_port is None else f"127.0.0.1:{self.sasl_port}"

    @property
    def ssl_bootstrap_servers(self) -> str | None:
        return None if self.ssl_port is None else f"127.0.0.1:{self.ssl_port}"

    def _listener_lines(self) -> list[str]:
        plain = f"PLAINTEXT://127.0.0.1:{self.port}"
        ctl = f"CONTROLLER://127.0.0.1:{self.controller_port}"
        secured = {
            protocol: f"{protocol}://127.0.0.1:{port}"
            for protocol, port in (("SASL_PLAINTEXT", self.sasl_port), ("SASL_SSL", self.ssl_port))
            if port is not None
        }
        lines = [
            f"listeners={','.join([plain, ctl, *secured.values()])}",
            f"advertised.listeners={','.join([plain, *secured.values()])}",
            "listener.security.protocol.map="
            + ",".join(
                ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT", *(f"{p}:{p}" for p in secured)]
            ),
        ]
        if not secured:
            return lines
        users = " ".join(f'user_{u}="{p}"' for u, p in self.sasl_users)
        lines += ["inter.broker.listener.name=PLAINTEXT", "sasl.enabled.mechanisms=PLAIN"]
        lines += [
            f"listener.name.{protocol.lower()}.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
            for protocol in secured
        ]
        if "SASL_SSL" in secured and self.ssl_certificate and self.ssl_key:
            # Inline PEM: a PEM keystore read from a file needs an encrypted key
            lines += [
                "listener.name.sasl_ssl.ssl.keystore.type=PEM",
                "listener.name.sasl_ssl.ssl.keystore.certificate.chain="
                + _properties_value(self.ssl_certificate),
                "listener.name.sasl_ssl.ssl.keystore.key=" + _properties_value(self.ssl_key),
            ]
        return lines

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def pid(self) -> int | None:
        try:
            pid = int(self._pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return None if exited(pid) else pid

    def is_running(self) -> bool:
        return self.pid() is not None and _port_open("127.0.0.1", self.port)

    def _write_config(self) -> Path:
        props = self.data_dir / "server.properties"
        logs = self.data_dir / "logs"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                    *self._listener_lines(),
                    "controller.listener.names=CONTROLLER",
                    f"log.dirs={logs}",
                    "num.partitions=4",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "",
                ]
            )
        )
        return props

    def start(self, timeout_s: float = 60.0) -> None:
        """Install (first time), format (first time) and start the broker; wait until ready."""
        if self.is_running():
            return
        home = install_kafka()
        java = _require("java", "run the Kafka broker")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        classpath = str(home / "libs" / "*")
        jvm = [java, "-Xms256m", "-Xmx512m", f"-Dlog4j2.configurationFile={home / 'log4j2.xml'}"]
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = subprocess.run(
                [*jvm, "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]  # fmt: skip
            subprocess.run(
                [*jvm, "-cp", classpath, "kafka.tools.StorageTool", "format", "--standalone",
                 "-t", cluster_id, "-c", str(props)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [*jvm, "-cp", classpath, "kafka.Kafka", str(props)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"Kafka exited with {proc.returncode}; see {self.log_file}")
            if _port_open("127.0.0.1", self.port) and _metadata_ok(self.bootstrap_servers):
                return
            time.sleep(0.5)
        raise RuntimeError(f"Kafka did not become ready in {timeout_s:.0f} s; see {self.log_file}")

    def stop(self, timeout_s: float = 30.0, kill: bool = False) -> None:
        """Shut the broker down (SIGTERM, SIGKILL after ``timeout_s``); ``kill``: at once,
        as a crash would (the next start recovers its logs)."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if exited(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
            exited(pid)
        self._pid_file.unlink(missing_ok=True)


def _properties_value(pem: Path) -> str:
    """A PEM file as one line of a ``.properties`` file, which reads ``\\n`` as a line break."""
    return pem.read_text().strip().replace("\n", "\\n")


def exited(pid: int) -> bool:
    """Whether process ``pid`` is gone. A child of this process that exited stays a zombie,
    which signal 0 still reaches, until it is reaped: reap it here (a broker started by this
    process used to wait out the whole stop timeout, 30 s, at the end of every test session)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass  # not our child: only the OS knows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _metadata_ok(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def default_broker() -> KafkaBroker:
    """The broker the README commands use: ``<cache>/kafka-data`` on 127.0.0.1:19092."""
    return KafkaBroker(cache_dir() / "kafka-data")


def create_topic(bootstrap: str, topic: str, partitions: int = 4, compact: bool = False) -> bool:
    """Create ``topic`` if it does not exist; True if it was created. ``compact``: with
    ``cleanup.policy=compact`` (a key's latest record is kept: the call-state topic)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        if topic in admin.list_topics():
            return False
        try:
            configs = {"cleanup.policy": "compact"} if compact else {}
            new = NewTopic(topic, num_partitions=partitions, replication_factor=1,
                           topic_configs=configs)  # fmt: skip
            admin.create_topics([new])
        except TopicAlreadyExistsError:
            return False
        deadline = time.monotonic() + 15
        while topic not in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.1)
        return True
    finally:
        admin.close()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def prism_binary(install: bool = True) -> Path:
    """Path to the Prism runner binary (``$CALLQA_PRISM`` or ``<cache>/bin/prism``).

    Built with ``go install github.com/apache/beam/sdks/v2/go/cmd/prism@v2.77.0`` on first use
    (~2 min on 2 cores, 63 MB). Beam must never download it itself: pass this path as
    ``--prism_location``.
    """
    override = os.environ.get("CALLQA_PRISM")
    if override:
        path = Path(override)
        if not path.exists():
            raise RuntimeError(f"CALLQA_PRISM={override} does not exist")
        return path
    path = cache_dir() / "bin" / "prism"
    if path.exists() or not install:
        return path
    go = _require("go", "build the Prism runner (go install ...prism@" + PRISM_VERSION + ")")
    env = dict(os.environ, GOBIN=str(path.parent), GOFLAGS="-mod=mod")
    _LOG.info("building Prism %s into %s (about 2 minutes)", PRISM_VERSION, path)
    subprocess.run(
        [go, "install", f"github.com/apache/beam/sdks/v2/go/cmd/prism@{PRISM_VERSION}"],
        check=True, env=env,
    )  # fmt: skip
    return path
