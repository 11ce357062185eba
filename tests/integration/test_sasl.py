"""A secured broker: the job reads over SASL/PLAIN with --kafka_client_config, and wrong
credentials fail before submission with a sentence that names the setting."""

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

pytestmark = pytest.mark.integration


def _client(password: str) -> dict[str, str]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": SASL_USER[0],
        "sasl_plain_password": password,
    }


def test_job_reads_a_sasl_listener(
    kafka_broker: KafkaBroker | None,
    prism_location: str,
    topic: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if kafka_broker is None or kafka_broker.sasl_bootstrap_servers is None:
        pytest.skip("needs the private test broker (KAFKA_BOOTSTRAP_SERVERS is set)")
    sasl = kafka_broker.sasl_bootstrap_servers
    start_ms = int(time.time() * 1000) - 30_000
    streams = [call_events(synthetic_call(f"s-{i}", 2.0, seed=i), start_ms) for i in range(3)]
    producer = new_producer(sasl, **_client(SASL_USER[1]))
    send_events(producer, topic, interleave(streams), progress=False)
    producer.close()

    out = tmp_path / "out"
    config = f"--kafka_client_config={json.dumps(_client(SASL_USER[1]))}"
    argv = job_args(sasl, topic, out, prism_location, config, "--live_interval_s=0",
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


def test_wrong_sasl_password_is_reported_before_submission(
    kafka_broker: KafkaBroker | None, topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if kafka_broker is None or kafka_broker.sasl_bootstrap_servers is None:
        pytest.skip("needs the private test broker (KAFKA_BOOTSTRAP_SERVERS is set)")
    sasl = kafka_broker.sasl_bootstrap_servers
    wrong = json.dumps(_client("wrong"))
    rc = main(["run", "--bounded", f"--kafka_bootstrap_servers={sasl}", f"--kafka_topic={topic}",
               f"--output_dir={tmp_path}", f"--kafka_client_config={wrong}"])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot reach Kafka" in err and "--kafka_client_config" in err
