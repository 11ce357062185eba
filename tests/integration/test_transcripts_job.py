"""The streaming job with ASR on Prism, fed by the real Kafka source: a spoken call produced
while the job runs comes out as utterance transcripts in the transcripts table, beside its
call row, and as live transcript events on the transcripts topic (contract v1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import soundfile as sf
from kafka import KafkaConsumer

from beam_jobs import warehouse
from beam_jobs.demo.producer import CallAudio, call_events, new_producer, send_events
from beam_jobs.services.local import create_topic, unique_name
from beam_jobs.services.random_models import build_random_qwen3_asr
from schemas.transcript_events import SCHEMA_PATH
from tests.integration.harness import job_args, streaming_job, wait_until
from transforms.core.audio import resample

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGENT = "thank you for calling customer service how can I help you"
CUSTOMER = "I would like to close my account please"


def _say(text: str, path: Path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    x, rate = sf.read(path, dtype="float32")
    return resample(x, rate, 16000)


def spoken_call(call_id: str, tmp_path: Path) -> CallAudio:
    """The agent speaks, then the customer (English, espeak-ng)."""
    assert shutil.which("espeak-ng"), "espeak-ng is missing: deploy/local/setup.sh installs it"
    agent, customer = _say(AGENT, tmp_path / "a.wav"), _say(CUSTOMER, tmp_path / "c.wav")
    n = len(agent) + len(customer) + 32000
    tracks = {"agent": np.zeros(n, np.float32), "customer": np.zeros(n, np.float32)}
    tracks["agent"][8000 : 8000 + len(agent)] = agent
    start_c = 8000 + len(agent) + 8000
    tracks["customer"][start_c : start_c + len(customer)] = customer
    return CallAudio(call_id, 16000, tracks, language_hint="en")


def live_transcripts(
    bootstrap: str, topic: str, call_id: str, count: int, timeout_s: float
) -> list[Any]:
    """The first ``count`` records of ``topic`` keyed ``call_id`` (or fewer at the deadline)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(got) < count:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r for r in records if r.key == call_id.encode())
    finally:
        consumer.close()
    return got


def run_spoken_call(
    bootstrap: str, prism: str, topic: str, tmp_path: Path, asr: str, call_id: str
) -> tuple[list[tuple], list[Any]]:
    """Produce one spoken call while the job runs; its transcript rows and Kafka records. Each
    wait ends as soon as what it waits for is there (the rows are read again at the end: CI
    once saw the final row come after the transcripts' commit, but read the rows before it);
    the bounds only fail a job that never gets there."""
    live_topic = unique_name("callqa-live")
    create_topic(bootstrap, live_topic, partitions=2)
    out = tmp_path / "out"
    argv = job_args(bootstrap, topic, out, prism, f"--asr={asr}", "--live_interval_s=0",
                    f"--transcripts_topic={live_topic}", "--asr_max_new_tokens=32")  # fmt: skip

    def rows() -> list[tuple]:
        return [
            (t["channel"], t["text"], t["language"], t["backend"], t["start_ms"])
            for t in sorted(warehouse.transcripts(out), key=lambda t: t["start_ms"])
            if t["call_id"] == call_id
        ]

    with streaming_job(argv):
        producer = new_producer(bootstrap)
        events = call_events(spoken_call(call_id, tmp_path), int(time.time() * 1000) + 2000)
        send_events(producer, topic, events, realtime=True, progress=False)
        producer.close()
        records = live_transcripts(bootstrap, live_topic, call_id, 2, timeout_s=180)
        wait_until(f"{call_id}: two transcript rows", lambda: len(rows()) >= 2, 120, poll_s=0.5)
        # The final row follows its transcripts (and the watermark passing the marker).
        finals = warehouse.wait_for_final_calls(out, [call_id], timeout_s=120)
    assert call_id in finals, finals
    schema = json.loads(SCHEMA_PATH.read_text())
    for r in records:
        jsonschema.validate(json.loads(r.value), schema)
        assert dict(r.headers) == {"schema_version": b"1", "type": b"transcript"}
    return rows(), records


def test_streaming_job_writes_and_publishes_transcripts(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path
) -> None:
    rows, records = run_spoken_call(
        kafka_bootstrap, prism_location, topic, tmp_path, "embedded", "tx-1"
    )
    assert [r[0] for r in rows] == ["agent", "customer"], rows
    assert "help" in rows[0][1].lower() and "account" in rows[1][1].lower(), rows
    events = sorted((json.loads(r.value) for r in records), key=lambda e: e["start_ms"])
    assert [(e["channel"], e["text"], e["start_ms"]) for e in events] == [
        (r[0], r[1], r[4]) for r in rows
    ]
    assert all(e["language"] == "en" and e["language_class"] == "en" for e in events)


def test_qwen3_asr_path_runs_in_the_streaming_job(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path
) -> None:
    """The transformers Qwen3-ASR path through the same stage, job and sinks (tiny random
    model: the text is noise; the utterances, their times and the contract are not)."""
    model = build_random_qwen3_asr(tmp_path / "tiny-qwen3-asr")
    rows, records = run_spoken_call(
        kafka_bootstrap, prism_location, topic, tmp_path, str(model), "tx-q"
    )
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("agent", "en", "transformers"),
        ("customer", "en", "transformers"),
    ], rows
    assert len(records) == 2
