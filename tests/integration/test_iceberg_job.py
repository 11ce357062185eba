"""The streaming job writing Iceberg tables (``--warehouse=iceberg``), killed between writing
a commit's data files and committing them (``CALLQA_FAILPOINT``, a SIGKILL at that point):
the files it left are in no snapshot, so no reader sees them; started again, the job writes
every call once (0 lost, 0 duplicated); ``callqa warehouse maintain`` then deletes the
orphans, ``callqa warehouse duckdb`` queries the tables, and the report reads them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType

from beam_jobs import warehouse
from beam_jobs.bench.capacity import start_job, stop_job
from beam_jobs.cli import main
from beam_jobs.demo.producer import synthetic_call
from beam_jobs.report.report import build_report
from beam_jobs.services.local import create_topic, unique_name
from schemas.call_state_events import SCHEMA_PATH, latest_states
from tests.integration.harness import (
    assert_each_call_once,
    call_state_topic,
    job_args,
    kill_job_process,
    produce_calls,
)
from transforms.io.iceberg import CatalogConfig, data_file_paths, ensure_tables

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _orphans(out: Path) -> set[str]:
    """Data files on disk that no snapshot of their table lists."""
    found: set[str] = set()
    for tbl in ensure_tables(CatalogConfig.under(str(out))).values():
        data = Path(tbl.location().removeprefix("file://")) / "data"
        on_disk = {str(p) for p in data.rglob("*.parquet")}
        paths = data_file_paths(tbl, every_snapshot=True)
        listed = {p.removeprefix("file://") for p in paths}
        found |= on_disk - listed
    return found


def _visible_rows(out: Path) -> dict[str, tuple[int, int]]:
    """Rows per table as pyiceberg and as DuckDB's iceberg extension read them."""
    counts = {}
    con = warehouse.iceberg_duckdb()
    for name, tbl in ensure_tables(CatalogConfig.under(str(out))).items():
        if tbl.current_snapshot() is None:
            continue
        duck = con.execute(f"SELECT count(*) FROM iceberg_scan('{tbl.metadata_location}')")
        counts[name] = (len(tbl.scan().to_arrow()), duck.fetchall()[0][0])
    return counts


def test_killed_between_write_and_commit_loses_and_shows_nothing(
    kafka_bootstrap: str,
    prism_location: str,
    topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, log = tmp_path / "out", tmp_path / "job.log"
    argv = job_args(kafka_bootstrap, topic, out, prism_location, "--inactivity_gap_s=3",
                    "--live_interval_s=0", "--allowed_lateness_s=1", "--commit_interval_s=0.5",
                    "--warehouse=iceberg", "--warehouse_commit_interval_s=1")  # fmt: skip
    calls = [synthetic_call(f"ice-{i}", 3.0, seed=i) for i in range(8)]
    # The calls table's first commit goes through, its second dies after writing its files.
    monkeypatch.setenv("CALLQA_FAILPOINT", "iceberg_before_commit:2")
    job = start_job(argv, log)
    expected: dict[str, int] = {}

    def produce(wave: list) -> None:
        start_ms = int(time.time() * 1000) + 1000
        expected.update(produce_calls(kafka_bootstrap, topic, wave, start_ms, 300))

    try:
        produce(calls[:4])
        deadline = time.monotonic() + 120
        while not warehouse.final_calls(out) and job.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        produce(calls[4:])  # read after the restart if the job is gone already
        assert job.wait(timeout=120) == -9, log.read_text()[-3000:]  # died at the failpoint
    finally:
        kill_job_process(job)  # and Prism with it
    monkeypatch.delenv("CALLQA_FAILPOINT")
    orphans = _orphans(out)
    assert orphans, "the failpoint left no written-but-uncommitted file"
    seen = _visible_rows(out)
    assert all(a == b for a, b in seen.values()), seen  # the orphans are read by neither
    committed = {r["call_id"] for r in warehouse.final_calls(out)}
    assert committed and committed < set(expected), committed

    job = start_job(argv, log)
    try:
        warehouse.wait_for_final_calls(out, expected, timeout_s=180)
    finally:
        stop_job(job)
    text = log.read_text()
    assert_each_call_once(out, expected, text)
    assert "Traceback" not in text.split("iceberg_before_commit")[-1], text[-3000:]

    before = _visible_rows(out)
    assert main(["warehouse", "maintain", f"--output_dir={out}", "--orphan_grace_min=0"]) == 0
    assert not (orphans & _orphans(out)), "maintain left the orphans"
    assert _visible_rows(out) == before
    capsys.readouterr()
    sql = "SELECT count(*) AS n FROM calls WHERE is_final"
    assert main(["warehouse", "duckdb", f"--output_dir={out}", "-c", sql]) == 0
    assert capsys.readouterr().out.split() == ["n", str(len(calls))]
    # the report reads the Iceberg tables too
    day = datetime.now(UTC).date()
    summary = build_report(out, day - timedelta(days=1), day + timedelta(days=1), tmp_path / "r")
    assert summary.summary["total_calls"] == len(calls)


def test_live_rows_go_to_the_compacted_call_state_topic(
    kafka_bootstrap: str, prism_location: str, topic: str, tmp_path: Path
) -> None:
    """By default live rows leave the warehouse: the job creates the call-state topic
    compacted, with the source's partitions; it gets every call's live states and then its
    final one (contract v1), the calls table only final rows."""
    out, log = tmp_path / "out", tmp_path / "job.log"
    argv = job_args(kafka_bootstrap, topic, out, prism_location, "--inactivity_gap_s=3",
                    "--live_interval_s=1", "--allowed_lateness_s=1",
                    "--warehouse_commit_interval_s=1")  # fmt: skip
    states = call_state_topic(topic)
    calls = [synthetic_call(f"state-{i}", 6.0, seed=i) for i in range(3)]
    job = start_job(argv, log)
    try:
        expected = produce_calls(kafka_bootstrap, topic, calls, int(time.time() * 1000) + 1000, 300)
        warehouse.wait_for_final_calls(out, expected, timeout_s=120)
        time.sleep(2)
    finally:
        stop_job(job)
    text = log.read_text()
    assert f"created the call-state topic {states}: compacted, 4 partitions, 1 replicas" in text
    assert _cleanup_policy(kafka_bootstrap, states) == "compact"
    assert_each_call_once(out, expected, text)
    assert all(r["is_final"] for r in warehouse.all_call_rows(out))  # no live row in the table
    consumer = KafkaConsumer(states, bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)  # fmt: skip
    try:
        records = list(consumer)
    finally:
        consumer.close()
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    by_call: dict[str, list[dict]] = {}
    for r in records:
        event = json.loads(r.value)
        validator.validate(event)
        assert r.key.decode() == event["call_id"]
        by_call.setdefault(event["call_id"], []).append(event)
    assert set(by_call) == set(expected)
    for call_id, events in by_call.items():
        assert any(not e["is_final"] for e in events), call_id  # live states while open
    for call_id, last in latest_states(e for es in by_call.values() for e in es).items():
        assert last["is_final"] and last["chunk_count"] == expected[call_id]


def test_a_call_state_topic_that_is_not_compacted_is_refused(
    kafka_bootstrap: str, topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = unique_name("callqa-plain")
    create_topic(kafka_bootstrap, plain, partitions=1)
    rc = main(["run", "--streaming", f"--kafka_bootstrap_servers={kafka_bootstrap}",
               f"--kafka_topic={topic}", f"--output_dir={tmp_path}",
               f"--call_state_topic={plain}"])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{plain!r} has cleanup.policy=delete" in err and "must be compacted" in err, err


def _cleanup_policy(bootstrap: str, topic: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})
        described = admin.describe_configs([resource], config_filter="all")
        return str(described["topic"][topic]["cleanup.policy"]["value"])
    finally:
        admin.close()
