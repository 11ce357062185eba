"""The same streaming job on the Flink runner (Beam's Flink 1.16 job server, embedded cluster,
built by deploy/flink/setup.sh from Maven Central): calls produced while it runs come out as
final rows while it keeps running, with live rows before them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import apache_beam as beam
import pytest

from beam_jobs import warehouse
from beam_jobs.demo.producer import (
    call_events,
    interleave,
    new_producer,
    send_events,
    synthetic_call,
)
from tests.integration.harness import streaming_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def flink_job_server_jar() -> str:
    done = subprocess.run(
        [str(ROOT / "deploy" / "flink" / "setup.sh")],
        check=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def test_streaming_job_on_flink(
    kafka_bootstrap: str, flink_job_server_jar: str, topic: str, tmp_path: Path
) -> None:
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
    assert sorted(rows) == sorted(c.call_id for c in calls)
    for r in rows.values():
        assert (r["version"], r["chunk_count"], r["agent_audio_s"]) == (1, 80, 4.0)
    assert any(not r["is_final"] for r in warehouse.all_call_rows(out))
