"""The streaming job with --asr=embedded on Prism, fed by the real Kafka source: a spoken call
produced while the job runs comes out as utterance transcripts in the transcripts table,
beside its call row."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beam_jobs import warehouse
from beam_jobs.producer import CallAudio, call_events, new_producer, send_events
from tests.integration.harness import job_args, streaming_job
from transforms.recordings import resample

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGENT = "thank you for calling customer service how can I help you"
CUSTOMER = "I would like to close my account please"


def _say(text: str, path: Path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    x, rate = sf.read(path, dtype="float32")
    return resample(x, rate, 16000)


def test_streaming_job_writes_transcripts(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path
) -> None:
    assert shutil.which("espeak-ng"), "espeak-ng is missing: deploy/local/setup.sh installs it"
    agent, customer = _say(AGENT, tmp_path / "a.wav"), _say(CUSTOMER, tmp_path / "c.wav")
    n = len(agent) + len(customer) + 32000
    tracks = {"agent": np.zeros(n, np.float32), "customer": np.zeros(n, np.float32)}
    tracks["agent"][8000 : 8000 + len(agent)] = agent  # agent speaks, then the customer
    start_c = 8000 + len(agent) + 8000
    tracks["customer"][start_c : start_c + len(customer)] = customer
    call = CallAudio("tx-1", 16000, tracks, language_hint="en")
    out = tmp_path / "out"
    argv = job_args(kafka_bootstrap, topic, out, prism_location, "--asr=embedded",
                    "--live_interval_s=0")  # fmt: skip
    with streaming_job(argv):
        producer = new_producer(kafka_bootstrap)
        events = call_events(call, int(time.time() * 1000) + 2000)
        send_events(producer, topic, events, realtime=True, progress=False)
        producer.close()
        deadline = time.monotonic() + 90
        rows: list[tuple] = []
        while time.monotonic() < deadline and len(rows) < 2:
            if list((out / "transcripts").glob("*/*.parquet")):
                rows = warehouse.query(
                    f"SELECT channel, text, language FROM read_parquet('{out}/transcripts/*/*"
                    ".parquet') ORDER BY start_ms"
                )
            time.sleep(0.5)
    assert [r[0] for r in rows] == ["agent", "customer"], rows
    assert "help" in rows[0][1].lower() and "account" in rows[1][1].lower(), rows
    assert warehouse.final_calls(out)[0]["call_id"] == "tx-1"
