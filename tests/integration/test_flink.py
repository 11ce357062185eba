"""The same streaming job on the Flink runner (Beam's Flink 1.16 job server, embedded cluster,
built by deploy/flink/setup.sh from Maven Central): calls produced while it runs come out as
final rows while it keeps running, with live rows before them.

With deploy/flink/conf (``FLINK_CONF_DIR``, as deploy/flink/run.sh sets it), every port of the
embedded Flink cluster is on 127.0.0.1. The job server's gRPC ports (job, artifact, expansion
and the Fn API servers of the LOOPBACK worker) bind to all interfaces whatever the settings:
Beam 2.56's ``ServerFactory`` builds them with ``NettyServerBuilder.forPort``. The test tells
them apart by their protocol (HTTP/2) and checks that nothing else listens beyond loopback."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import apache_beam as beam
import psutil
import pytest

from beam_jobs import warehouse
from beam_jobs.demo.live import read_topic
from beam_jobs.demo.producer import (
    call_events,
    interleave,
    new_producer,
    send_events,
    synthetic_call,
)
from tests.integration.harness import call_state_topic, streaming_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def flink_job_server_jar() -> str:
    done = subprocess.run(
        [str(ROOT / "deploy" / "flink" / "setup.sh")],
        check=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def _speaks_http2(port: int) -> bool:
    """Whether the server on ``port`` answers the HTTP/2 preface with a SETTINGS frame (gRPC)."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        try:
            head = sock.recv(9)
        except TimeoutError:
            return False
    return len(head) == 9 and head[3] == 4  # frame type 4: SETTINGS


def _open_ports(jar: str) -> list[tuple[str, int]]:
    """(address, port) of every listening socket of the job server JVM started by this test."""
    (jvm,) = [
        p for p in psutil.Process().children(recursive=True)
        if any(jar in arg for arg in p.cmdline())
    ]  # fmt: skip
    return [
        (c.laddr.ip, c.laddr.port)
        for c in jvm.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    ]


def test_streaming_job_on_flink(
    kafka_bootstrap: str,
    flink_job_server_jar: str,
    topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLINK_CONF_DIR", str(ROOT / "deploy" / "flink" / "conf"))
    out = tmp_path / "out"
    argv = [
        "--runner=FlinkRunner",
        "--flink_master=[local]",
        f"--flink_job_server_jar={flink_job_server_jar}",
        "--environment_type=LOOPBACK",
        "--streaming",
        "--max_bundle_time_mills=100",
        f"--kafka_bootstrap_servers={kafka_bootstrap}",
        f"--kafka_topic={topic}",
        f"--kafka_group_id={topic}",
        f"--output_dir={out}",
        "--live_interval_s=1",
        f"--call_state_topic={call_state_topic(topic)}",
    ]
    calls = [synthetic_call(f"fl-{i}", 4.0, seed=i) for i in range(6)]
    with streaming_job(argv) as result:
        start_ms = int(time.time() * 1000) + 3000
        streams = [call_events(c, start_ms + i * 300) for i, c in enumerate(calls)]
        producer = new_producer(kafka_bootstrap)
        send_events(producer, topic, interleave(streams), realtime=True, progress=False)
        producer.close()
        rows = warehouse.wait_for_final_calls(out, [c.call_id for c in calls], timeout_s=90)
        assert result.state == beam.runners.runner.PipelineState.RUNNING
        ports = _open_ports(flink_job_server_jar)
        loopback = [p for ip, p in ports if ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
        exposed = [p for ip, p in ports if p not in loopback]
        not_grpc = [p for p in exposed if not _speaks_http2(p)]
    print(f"job server ports: {len(loopback)} on loopback, {len(exposed)} on all interfaces "
          f"(gRPC: {len(exposed) - len(not_grpc)})")  # fmt: skip
    assert loopback, ports  # the embedded cluster's (blob server, REST, shuffle)
    assert not_grpc == [], ports  # beyond loopback only Beam's gRPC servers
    assert sorted(rows) == sorted(c.call_id for c in calls)
    for r in rows.values():
        assert (r["version"], r["chunk_count"], r["agent_audio_s"]) == (1, 80, 4.0)
    assert all(r["is_final"] for r in warehouse.all_call_rows(out))
    states = read_topic(kafka_bootstrap, call_state_topic(topic))
    assert any(not e["is_final"] for e in states), "no live states on the call-state topic"
