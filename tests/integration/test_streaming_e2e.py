"""The streaming job on Prism against the real broker: 20 calls over 4 partitions, produced
while the job runs, plus malformed events. The job must keep running and emit final rows
while production is still going on: the second ten calls are produced only once a first
final row is out (or after a generous bound, which then fails the test), so a slow or busy
machine's start-up does not decide the outcome."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import apache_beam as beam
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
from schemas.call_state_events import latest_states
from tests.integration.harness import call_state_topic, job_args, partition_of, streaming_job

pytestmark = pytest.mark.integration

CALL_S = 4.0


def test_twenty_calls_streamed_with_dead_letters(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    calls = [synthetic_call(f"e2e-{i:02d}", CALL_S, seed=i) for i in range(20)]
    assert {partition_of(c.call_id) for c in calls} == {0, 1, 2, 3}
    start_ms = int(time.time() * 1000) + 2000
    # The first ten calls staggered over ~8 s; the other ten follow once a final row is out.
    streams = [call_events(c, start_ms + i * 800) for i, c in enumerate(calls[:10])]
    # e2e-03 loses agent seq 5 and 6 (a gap); e2e-04 repeats customer seq 3 (a duplicate).
    streams[3] = [e for e in streams[3] if not (e.channel == "agent" and e.seq in (5, 6))]
    dup = next(e for e in streams[4] if e.channel == "customer" and e.seq == 3)
    streams[4].insert(streams[4].index(dup) + 1, dup)
    expected_s = {c.call_id: (CALL_S, CALL_S) for c in calls}
    expected_s["e2e-03"] = (CALL_S - 0.2, CALL_S)

    malformed = [
        (b"m-header", _headers(channel=b"\xff\xfe"), b"\x00\x00"),
        (b"m-codec", _headers(codec=b"opus"), b"\x00\x00"),
        (b"m-version", _headers(schema_version=b"7"), b"\x00\x00"),
        (b"m-trunc", _headers(), b"\x00\x00\x00"),
    ]
    producer = new_producer(kafka_bootstrap)
    done = threading.Event()
    first_final = threading.Event()

    def produce() -> None:
        for key, headers, value in malformed:
            producer.send(topic, key=key, value=value, headers=headers)
        send_events(producer, topic, interleave(streams), realtime=True, progress=False)
        first_final.wait(timeout=240)
        # Stamped from now: capture times behind the watermark would be late data.
        later_ms = int(time.time() * 1000) + 500
        later = [call_events(c, later_ms + i * 800) for i, c in enumerate(calls[10:])]
        send_events(producer, topic, interleave(later), realtime=True, progress=False)
        done.set()

    argv = job_args(
        kafka_bootstrap, topic, out, prism_location, "--inactivity_gap_s=5", "--live_interval_s=1"
    )
    with streaming_job(argv) as result:
        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        first_final_while_producing = False
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            finals = warehouse.final_calls(out)
            if finals and not done.is_set():
                first_final_while_producing = True
                first_final.set()
            if len(finals) >= len(calls) and done.is_set():
                break
            time.sleep(0.3)
        thread.join(timeout=5)
        producer.close()
        time.sleep(2)  # anything else the job would (wrongly) emit
        assert result.state == beam.runners.runner.PipelineState.RUNNING

    assert first_final_while_producing, "no final row came out while production was running"
    rows = warehouse.all_call_rows(out)
    finals = [r for r in rows if r["is_final"]]
    assert sorted(r["call_id"] for r in finals) == sorted(expected_s)  # exactly once each
    for r in finals:
        assert r["version"] == 1 and r["close_reason"] == "end_of_call"
        assert (r["agent_audio_s"], r["customer_audio_s"]) == pytest.approx(
            expected_s[r["call_id"]]
        ), r["call_id"]
    by_id = {r["call_id"]: r for r in finals}
    assert by_id["e2e-03"]["missing_seqs"] == "agent:5-6"
    assert by_id["e2e-04"]["duplicate_chunks"] == 1
    assert len(rows) == len(finals)  # live states go to the call-state topic, keyed by call:
    states = read_topic(kafka_bootstrap, call_state_topic(topic))
    assert any(not e["is_final"] for e in states), "live states were expected while calls were open"
    latest = latest_states(states)
    assert {c: (e["is_final"], e["chunk_count"]) for c, e in latest.items()} == {
        r["call_id"]: (True, r["chunk_count"]) for r in finals
    }

    reasons = {(d["call_id"], d["reason"]) for d in warehouse.dead_letters(out)}
    assert {
        ("m-header", "bad_header"),
        ("m-codec", "unknown_codec"),
        ("m-version", "unsupported_schema_version"),
        ("m-trunc", "truncated_pcm"),
        ("e2e-03", "seq_gap"),
        ("e2e-04", "duplicate_seq"),
    } <= reasons


def _headers(**override: bytes) -> list[tuple[str, bytes]]:
    base = {
        "schema_version": b"1",
        "channel": b"agent",
        "seq": b"0",
        "codec": b"pcm_s16le",
        "sample_rate_hz": b"16000",
        "channels": b"1",
    }
    base.update(override)
    return list(base.items())
