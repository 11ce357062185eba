"""Watermark test: partition 0 runs 60 s behind the others (a backlog at job start, then a
producer whose capture times lag the wall clock by 60 s) while partitions 1-3 are live.

The source's watermark must never pass a chunk it has not read: 0 chunks late (every chunk
reaches a zero-lateness 1 s window on time) and 0 premature finals (every call closes once,
by inactivity, with all of its chunks)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from beam_jobs import warehouse
from beam_jobs.demo.producer import call_events, new_producer, synthetic_call
from tests.integration.harness import call_ids_on, job_args, streaming_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LAG_S = 60
GAP_S = 3


def _on_time_chunks(out: Path) -> int:
    files = list((out / "_audit_on_time_chunks").glob("*.parquet"))
    if not files:
        return 0
    rows = warehouse.query(
        f"SELECT sum(chunks) FROM read_parquet('{out}/_audit_on_time_chunks/*.parquet')"
    )
    return int(rows[0][0] or 0)


def test_lagging_partition_never_overtaken(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    t0 = int(time.time() * 1000)
    lagging = call_ids_on(0, 3, "lag")
    live = [cid for p in (1, 2, 3) for cid in call_ids_on(p, 2, f"live{p}")]
    # (send wall time ms, event): lagging calls start 70 s ago and are sent 60 s after capture.
    plan = []
    for i, cid in enumerate(lagging):
        for e in call_events(synthetic_call(cid, 14.0, seed=i), t0 - 70_000 + i * 1000):
            plan.append((e.capture_time_ms + LAG_S * 1000, e._replace(end_of_call=False)))
    for i, cid in enumerate(live):
        for e in call_events(synthetic_call(cid, 6.0, seed=10 + i), t0 + 3000 + i * 300):
            plan.append((e.capture_time_ms, e._replace(end_of_call=False)))
    plan.sort(key=lambda x: x[0])
    expected_chunks = {cid: sum(1 for _, e in plan if e.call_id == cid) for cid in lagging + live}
    producer = new_producer(kafka_bootstrap)
    backlog = [e for send_ms, e in plan if send_ms <= t0]
    rest = [(s, e) for s, e in plan if s > t0]
    assert len(backlog) > 500 and rest
    for e in backlog:  # the 60 s backlog on partition 0, there before the job starts
        producer.send(topic, key=e.kafka_key(), value=e.audio, headers=e.kafka_headers())
    producer.flush()

    def produce_rest() -> None:
        for send_ms, e in rest:
            delay = send_ms / 1000 - time.time()
            if delay > 0:
                time.sleep(delay)
            producer.send(topic, key=e.kafka_key(), value=e.audio, headers=e.kafka_headers())
        producer.flush()

    argv = job_args(
        kafka_bootstrap, topic, out, prism_location,
        f"--inactivity_gap_s={GAP_S}", "--live_interval_s=0", "--audit_lateness",
        "--max_out_of_orderness_s=2", "--idle_slack_s=1",  # the defaults, distinct on purpose
    )  # fmt: skip
    with streaming_job(argv):
        thread = threading.Thread(target=produce_rest, daemon=True)
        thread.start()
        rows = warehouse.wait_for_final_calls(out, expected_chunks, timeout_s=LAG_S + 90)
        thread.join(timeout=10)
        deadline = time.monotonic() + 15  # the audit's last windows close after the finals
        while _on_time_chunks(out) < len(plan) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
    producer.close()

    assert set(rows) == set(expected_chunks), "some calls never got a final row"
    all_rows = warehouse.all_call_rows(out)
    assert all(r["version"] == 1 for r in all_rows), "a correction means a premature final"
    for cid, n in expected_chunks.items():
        assert rows[cid]["chunk_count"] == n, f"{cid} finalized before all its chunks were read"
        assert rows[cid]["close_reason"] == "inactivity"
    assert _on_time_chunks(out) == len(plan), "chunks arrived behind the watermark (late)"
    assert not [d for d in warehouse.dead_letters(out) if d["reason"] == "too_late"]
