"""A secured broker: the job reads over SASL/PLAIN, in the clear and over TLS (a CA made for the
session), with --kafka_client_config; wrong credentials and a broker certificate the client
does not trust fail before submission with a sentence that names what to set."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from beam_jobs import warehouse
from beam_jobs.cli import main
from beam_jobs.demo.producer import (
    call_events,
    interleave,
    new_producer,
    send_events,
    synthetic_call,
)
from beam_jobs.services.local import KafkaBroker
from tests.conftest import SASL_USER
from tests.integration.harness import job_args
from tests.tls import TlsFiles

pytestmark = pytest.mark.integration

PROTOCOLS = ["SASL_PLAINTEXT", "SASL_SSL"]


def _listener(broker: KafkaBroker | None, protocol: str) -> str:
    """The private broker's address for ``protocol``."""
    if broker is None:
        pytest.skip("needs the private test broker (KAFKA_BOOTSTRAP_SERVERS is set)")
    address = {"SASL_PLAINTEXT": broker.sasl_port, "SASL_SSL": broker.ssl_port}[protocol]
    assert address is not None, f"the test broker has no {protocol} listener"
    return f"127.0.0.1:{address}"


def _client(protocol: str, password: str, ca: Path | None = None) -> dict[str, str]:
    """kafka-python settings for ``protocol``; ``ca``: the ``ssl_cafile`` (else the system's)."""
    settings = {
        "security_protocol": protocol,
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": SASL_USER[0],
        "sasl_plain_password": password,
    }
    return settings if ca is None else {**settings, "ssl_cafile": str(ca)}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_job_reads_a_sasl_listener(
    protocol: str,
    kafka_broker: KafkaBroker | None,
    broker_tls: TlsFiles,
    prism_location: str,
    topic: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    address = _listener(kafka_broker, protocol)
    client = _client(protocol, SASL_USER[1], broker_tls.ca if protocol == "SASL_SSL" else None)
    start_ms = int(time.time() * 1000) - 30_000
    streams = [call_events(synthetic_call(f"s-{i}", 2.0, seed=i), start_ms) for i in range(3)]
    producer = new_producer(address, tuple(client.items()))
    send_events(producer, topic, interleave(streams), progress=False)
    producer.close()

    out = tmp_path / "out"
    config = f"--kafka_client_config={json.dumps(client)}"
    argv = job_args(address, topic, out, prism_location, config, "--live_interval_s=0",
                    streaming=False)  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        assert main(["run", *argv]) == 0
    rows = warehouse.final_calls(out)
    assert [(r["call_id"], r["chunk_count"]) for r in rows] == [(f"s-{i}", 40) for i in range(3)]
    # The password is in no log record, nothing printed (the job's and its workers' output)
    # and no file the job wrote (tables, dead letters, checkpoints).
    secret = SASL_USER[1]
    printed = capfd.readouterr()
    assert secret not in printed.out + printed.err
    assert not [r.name for r in caplog.records if secret in r.getMessage()]
    assert not [f for f in out.rglob("*") if f.is_file() and secret.encode() in f.read_bytes()]


@pytest.mark.parametrize(
    ("protocol", "password", "sentence"),
    [
        ("SASL_PLAINTEXT", "wrong", "cannot reach Kafka"),
        # no ssl_cafile: the system's CAs, which did not sign the broker's certificate
        ("SASL_SSL", SASL_USER[1], "presents a TLS certificate this client does not trust "
         "(unable to get local issuer certificate); set ssl_cafile in --kafka_client_config"),
    ],
    ids=["wrong-password", "untrusted-certificate"],
)  # fmt: skip
def test_a_refused_client_is_reported_before_submission(
    protocol: str,
    password: str,
    sentence: str,
    kafka_broker: KafkaBroker | None,
    topic: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = _listener(kafka_broker, protocol)
    client = json.dumps(_client(protocol, password))
    rc = main(["run", "--bounded", f"--kafka_bootstrap_servers={address}", f"--kafka_topic={topic}",
               f"--output_dir={tmp_path}", f"--kafka_client_config={client}"])  # fmt: skip
    assert rc == 2
    error = [line for line in capsys.readouterr().err.splitlines() if "callqa: error:" in line]
    assert len(error) == 1 and sentence in error[0] and "--kafka_client_config" in error[0]
