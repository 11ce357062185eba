"""A non-Python producer: events made with Debian's kcat (-k key, -H headers, raw file as the
value) are accepted by the job, exactly as the README documents."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from beam_jobs import warehouse
from beam_jobs.pipeline import run
from tests.integration.harness import job_args
from transforms.core.audio import encode

pytestmark = pytest.mark.integration


def _kcat(bootstrap: str, topic: str, key: str, headers: dict[str, str], payload: Path) -> None:
    cmd = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-k", key]
    for name, value in headers.items():
        cmd += ["-H", f"{name}={value}"]
    subprocess.run([*cmd, str(payload)], check=True, timeout=30)


def test_kcat_events_are_accepted(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path
) -> None:
    assert shutil.which("kcat"), "kcat is missing: deploy/local/test.sh installs it (apt-get)"
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)).astype(np.float32)
    pcm = tmp_path / "chunk.s16le"
    pcm.write_bytes(encode(tone, "pcm_s16le"))  # 100 ms at 16 kHz = 3,200 bytes
    ulaw = tmp_path / "chunk.ulaw"
    ulaw.write_bytes(encode(tone[::2], "pcm_mulaw"))  # 100 ms at 8 kHz = 800 bytes
    now_ms = int(time.time() * 1000)
    common = {"schema_version": "1", "channels": "1", "tenant": "kcat", "language_hint": "en"}
    for seq in range(3):
        _kcat(kafka_bootstrap, topic, "kcat-pcm", {
            **common, "channel": "agent", "seq": str(seq), "codec": "pcm_s16le",
            "sample_rate_hz": "16000", "capture_time_ms": str(now_ms + 100 * seq),
            "end_of_call": "true" if seq == 2 else "false",
        }, pcm)  # fmt: skip
    _kcat(
        kafka_bootstrap,
        topic,
        "kcat-ulaw",
        {
            **common,
            "channel": "customer",
            "seq": "0",
            "codec": "pcm_mulaw",
            "sample_rate_hz": "8000",
            "end_of_call": "true",
        },
        ulaw,
    )  # fmt: skip  (no capture_time_ms: the Kafka CreateTime is the event time)
    odd = tmp_path / "chunk.odd"
    odd.write_bytes(b"\x01\x02\x03")  # not a whole number of 16-bit samples
    _kcat(kafka_bootstrap, topic, "kcat-bad", {
        **common, "channel": "agent", "seq": "0", "codec": "pcm_s16le",
        "sample_rate_hz": "16000", "end_of_call": "true",
    }, odd)  # fmt: skip

    out = tmp_path / "out"
    run(
        job_args(
            kafka_bootstrap, topic, out, prism_location, "--live_interval_s=0", streaming=False
        )
    )

    rows = {r["call_id"]: r for r in warehouse.final_calls(out)}
    assert rows["kcat-pcm"]["agent_audio_s"] == pytest.approx(0.3)
    assert rows["kcat-pcm"]["chunk_count"] == 3 and rows["kcat-pcm"]["tenant"] == "kcat"
    assert rows["kcat-ulaw"]["customer_audio_s"] == pytest.approx(0.1)
    assert abs(rows["kcat-ulaw"]["start_ms"] - now_ms) < 60_000  # from CreateTime
    assert [(d["call_id"], d["reason"]) for d in warehouse.dead_letters(out)] == [
        ("kcat-bad", "truncated_pcm")
    ]
