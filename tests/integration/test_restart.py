"""Delivery guarantee: kill -9 the job mid-stream, start it again: every produced call has
exactly one final row with all of its chunks (none lost, none duplicated or overwritten by a
partial replay), and the restart position came from committed checkpoints. For both
warehouses: Parquet files, and Iceberg tables (``--warehouse=iceberg``, read back through
DuckDB's iceberg extension and pyiceberg alike). With Iceberg the checkpoint files are deleted
before the restart: the delivery ledger in the tables' snapshots is where it resumes."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from beam_jobs import warehouse
from beam_jobs.bench.capacity import start_job
from beam_jobs.demo.producer import (
    call_events,
    interleave,
    new_producer,
    send_events,
    synthetic_call,
)
from tests.integration.harness import job_args, kill_job_process, wait_until, warm_up
from transforms.io.iceberg import CatalogConfig, ensure_tables
from transforms.io.iceberg_sink import warehouse_ledger

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _checkpoints(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (out / "_checkpoints").rglob("p*.json")]


@pytest.mark.parametrize(
    "warehouse_format", [pytest.param("parquet", marks=pytest.mark.full), "iceberg"]
)  # CI: the default warehouse
def test_kill_minus_9_and_restart_loses_and_duplicates_nothing(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path, warehouse_format: str
) -> None:
    out = tmp_path / "out"
    # Short and long calls interleaved: short ones expire (and are committed) while long
    # ones started earlier are still open, so the frontier lags and some done ranges sit above it.
    # Long enough that the kill (after 3 finals and a commit; a call closes once the watermark
    # passes its end-of-call marker, ~3 s after it) still comes while long calls stream.
    durations = [32.0, 3.0, 28.0, 2.5, 4.0, 30.0, 3.5, 2.0, 26.0, 3.0, 5.0, 2.5]
    calls = [synthetic_call(f"rs-{i:02d}", d, seed=i) for i, d in enumerate(durations)]
    argv = job_args(
        kafka_bootstrap, topic, out, prism_location,
        "--inactivity_gap_s=3", "--live_interval_s=0", "--allowed_lateness_s=1",
        "--commit_interval_s=0.5", f"--warehouse={warehouse_format}",
        "--warehouse_commit_interval_s=1",
    )  # fmt: skip
    producer = new_producer(kafka_bootstrap)
    log = tmp_path / "job.log"
    job = start_job(argv, log)
    try:
        expected = warm_up(kafka_bootstrap, topic, out, log, alive=lambda: job.poll() is None)
        committed_at_start = sum(cp["frontier"] for cp in _checkpoints(out))
        start_ms = int(time.time() * 1000) + 3000
        streams = [call_events(c, start_ms + i * 600) for i, c in enumerate(calls)]
        expected |= {c.call_id: len(s) for c, s in zip(calls, streams, strict=True)}
        thread = threading.Thread(
            target=send_events,
            args=(producer, topic, interleave(streams)),
            kwargs={"realtime": True, "progress": False},
            daemon=True,
        )
        thread.start()

        def mid_stream() -> bool:
            """Some of the stream's calls are final and committed, and a done range sits above
            a frontier (a short call committed while a long one before it still streams)."""
            at = _checkpoints(out)
            return (
                sum(cp["frontier"] for cp in at) > committed_at_start
                and any(cp["acked"] for cp in at)
                and len(warehouse.final_calls(out)) >= 4
            )

        wait_until("no committed calls above a frontier mid-stream", mid_stream, 60, log,
                   alive=lambda: job.poll() is None)  # fmt: skip
        before_kill = {r["call_id"]: r for r in warehouse.final_calls(out)}
        assert len(before_kill) < len(calls) + 1, "kill must happen mid-stream"
        # Done ranges above a frontier (mid_stream): the restart must skip them, not rebuild
        # those calls.
        kill_job_process(job)
        killed_at = time.time()
        if warehouse_format == "iceberg":
            # the ledger in the warehouse's snapshots alone must be enough (a new machine)
            shutil.rmtree(out / "_checkpoints")

        job = start_job(argv, log)
        rows = warehouse.wait_for_final_calls(out, expected, timeout_s=90)
        thread.join(timeout=30)
        deadline = time.monotonic() + 30  # expiry, then the commit, follow the last final
        while sum(cp["frontier"] for cp in _checkpoints(out)) < sum(expected.values()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        kill_job_process(job)
        producer.close()

    # what the test needs held at the kill (mid_stream); whether the producer was still sending
    # depends on the machine's load
    print(f"killed {killed_at - start_ms / 1000:.1f} s into a {max(durations):.0f} s stream")
    assert set(rows) == set(expected), (
        f"lost calls: {set(expected) - set(rows)}\n{log.read_text()[-3000:]}"
    )
    finals = [r for r in warehouse.all_call_rows(out) if r["is_final"]]
    assert len(finals) == len(expected), "a call has more than one final row"
    assert warehouse.duplicate_final_rows(out) == [], "DuckDB finds duplicate final rows"
    for r in finals:
        assert r["version"] == 1, f"{r['call_id']} was corrected: a replay re-closed it"
        assert r["chunk_count"] == expected[r["call_id"]], f"{r['call_id']} rebuilt partially"
        assert r["missing_seq_count"] == 0 and r["duplicate_chunks"] == 0
    for cid, before in before_kill.items():
        assert rows[cid]["chunk_count"] == before["chunk_count"]
    frontier_after = sum(cp["frontier"] for cp in _checkpoints(out))
    assert frontier_after == sum(expected.values()), "not every offset was committed in the end"
    if warehouse_format == "iceberg":
        tables = ensure_tables(CatalogConfig.under(str(out)))
        by_pyiceberg = sorted(
            (r["call_id"], r["version"], r["chunk_count"])
            for r in tables["calls"].scan().to_arrow().to_pylist()
            if r["is_final"]
        )
        assert by_pyiceberg == sorted(
            (r["call_id"], r["version"], r["chunk_count"]) for r in finals
        )
        ledger = warehouse_ledger(tables.values())
        assert sum(cp.frontier for cp in ledger.values()) == sum(expected.values()), ledger
