"""Live, final, late and too-late data on the runner the job uses (Prism, real Kafka): a call
produced at real-time pace has live rows, its end-of-call marker makes it final (v1), a chunk
that comes back later but within the allowed lateness makes a corrected v2, and a chunk after
the call expired becomes a ``too_late`` dead letter while v2 stands."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from beam_jobs import warehouse
from beam_jobs.demo.live import read_topic
from beam_jobs.demo.producer import call_events, new_producer, send_events, synthetic_call
from schemas.call_state_events import latest_states
from tests.integration.harness import call_state_topic, job_args, streaming_job, warm_up

pytestmark = pytest.mark.integration

ALLOWED_LATENESS_S = 30.0  # room for a slow machine's final row before the call expires


def _wait(predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def _final_version(out: Path, call_id: str) -> int | None:
    rows = [r for r in warehouse.final_calls(out) if r["call_id"] == call_id]
    return rows[0]["version"] if rows else None


def test_live_final_late_correction_and_too_late(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = job_args(kafka_bootstrap, topic, out, prism_location, "--live_interval_s=1",
                    "--correction_delay_s=1", f"--allowed_lateness_s={ALLOWED_LATENESS_S}",
                    "--inactivity_gap_s=5")  # fmt: skip
    producer = new_producer(kafka_bootstrap)
    with streaming_job(argv):
        # the job up first: the late chunk must come within the allowed lateness of a final
        # row, and a slow start would spend it (the idle watermark moves with the clock)
        warm_up(kafka_bootstrap, topic, out)
        call = synthetic_call("late-1", 3.0, seed=7)
        events = call_events(call, int(time.time() * 1000) + 1000)
        agent = [e for e in events if e.channel == "agent"]
        held_back = agent[10]  # 1 s into the call: sent only after the call is final
        on_time = [e for e in events if e is not held_back]
        send_events(producer, topic, on_time, realtime=True, progress=False)
        assert _wait(lambda: _final_version(out, "late-1") == 1, 60), "no final row"
        send_events(producer, topic, [held_back], realtime=False, progress=False)
        assert _wait(lambda: _final_version(out, "late-1") == 2, 60), "no correction"
        # Past end + allowed lateness (the idle source moves the watermark with the clock).
        time.sleep(ALLOWED_LATENESS_S + 4)
        send_events(producer, topic, [held_back._replace(seq=999)], realtime=False, progress=False)
        assert _wait(
            lambda: any(d["reason"] == "too_late" for d in warehouse.dead_letters(out)), 30
        ), "no too_late dead letter"
        producer.close()

    rows = [r for r in warehouse.all_call_rows(out) if r["call_id"] == "late-1"]
    finals = sorted((r["version"], r["close_reason"], r["chunk_count"]) for r in rows
                    if r["is_final"])  # fmt: skip
    assert finals == [(1, "end_of_call", len(on_time)), (2, "late_correction", len(events))]
    assert all(r["is_final"] for r in rows)  # live states go to the call-state topic:
    states = [e for e in read_topic(kafka_bootstrap, call_state_topic(topic))
              if e["call_id"] == "late-1"]  # fmt: skip
    assert any(not e["is_final"] and e["version"] == 0 for e in states), "no live states"
    latest = latest_states(states)["late-1"]
    assert (latest["version"], latest["close_reason"]) == (2, "late_correction")
    assert _final_version(out, "late-1") == 2  # the consumer query keeps v2
    late = [d for d in warehouse.dead_letters(out) if d["reason"] == "too_late"]
    assert [(d["call_id"], d["stage"]) for d in late] == [("late-1", "aggregate")]
