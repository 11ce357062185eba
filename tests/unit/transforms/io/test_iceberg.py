"""The warehouse's Iceberg tables on a real pyiceberg SQL catalog (SQLite) and local files:
schemas and partitions derived from the records, appends with their snapshot summary, the
same rows through pyiceberg and DuckDB's iceberg extension, and schema evolution."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from beam_jobs.warehouse import iceberg_duckdb
from schemas.iceberg import (
    BY_NAME,
    EVENT_TS,
    ICEBERG_TABLES,
    partition_spec,
    to_arrow_table,
    to_iceberg_schema,
)
from schemas.records import Checkpoint, dead_letter
from schemas.tables import TABLES, from_arrow_row
from tests.records import T0, call_metrics, call_row
from transforms.io.iceberg import CatalogConfig, append, ensure_tables, identifier, load_catalog
from transforms.io.iceberg_maintenance import commit_stats, commit_stats_of, maintain
from transforms.io.iceberg_sink import LEDGER_PROPERTY, table_ledger

CALLS = BY_NAME["calls"]


@pytest.fixture
def cfg(tmp_path: Path) -> CatalogConfig:
    return CatalogConfig.under(str(tmp_path / "out"))


def test_every_table_is_created_with_a_hidden_day_partition(cfg: CatalogConfig) -> None:
    tables = ensure_tables(cfg)
    assert set(tables) == {t.name for t in TABLES} == {t.name for t in ICEBERG_TABLES}
    for name, tbl in tables.items():
        schema = tbl.schema()
        record_fields = [f.name for f in BY_NAME[name].table.schema]
        assert [f.name for f in schema.fields] == [*record_fields, EVENT_TS]
        spec = [(f.name, str(f.transform)) for f in tbl.spec().fields]
        assert spec == [("day", "day")], (name, spec)
    # opening them again changes nothing
    again = ensure_tables(cfg)
    assert {n: t.schema() for n, t in again.items()} == {n: t.schema() for n, t in tables.items()}
    assert Path(cfg.uri.removeprefix("sqlite:///")).is_file()


def test_rows_read_the_same_through_pyiceberg_and_duckdb(cfg: CatalogConfig) -> None:
    tables = ensure_tables(cfg)
    rows = [
        call_row(call_id=f"c-{i}", start_ms=T0 + i * 86_400_000, metrics=call_metrics())
        for i in range(3)
    ]
    snapshot = append(tables["calls"], to_arrow_table(CALLS, rows), {"callqa.test": "1"})
    tbl = load_catalog(cfg).load_table(identifier(cfg, CALLS))
    assert tbl.current_snapshot().snapshot_id == snapshot
    assert tbl.current_snapshot().summary["callqa.test"] == "1"
    # one data file per day partition (3 days), written in one commit
    assert len(tbl.inspect.files()) == 3

    read = tbl.scan().to_arrow().sort_by("call_id")
    back = [from_arrow_row(CALLS.table.record_type, r) for r in read.drop([EVENT_TS]).to_pylist()]
    assert back == rows
    con = iceberg_duckdb()
    duck = con.execute(
        f"SELECT call_id, metrics.duration_s, epoch_ms({EVENT_TS}) "
        f"FROM iceberg_scan('{tbl.metadata_location}') ORDER BY call_id"
    ).fetchall()
    assert duck == [(r.call_id, r.metrics.duration_s, r.start_ms) for r in rows]


def _one_row_per_table() -> dict[str, list[Any]]:
    from schemas.records import QuarantinedRow, ScorecardAnswerRow, Transcript, Word

    transcript = Transcript(
        "c-1", "agent", T0, T0 + 1500, "hello 你好", "zh", "zh-en", -0.2, "m", "transformers",
        (Word("hello", T0, T0 + 400, 0.9), Word("你好", T0 + 500, T0 + 1400, 0.8)),
        ("hello 你号",), -21.5, 0.4, 1,
    )  # fmt: skip
    return {
        "calls": [call_row(call_id="c-1", metrics=call_metrics()), call_row(call_id="c-2")],
        "transcripts": [transcript, transcript._replace(start_ms=T0 + 2000, words=())],
        "scorecard_answers": [
            ScorecardAnswerRow("c-1", 1, T0, "default", "greeting", True, 1.0, 1.0, "hi", T0),
            ScorecardAnswerRow("c-1", 1, T0, "default", "refund", None, 0.0, 0.0, "", None),
        ],
        "dead_letters": [
            dead_letter(
                "decode",
                "bad_header",
                "validation",
                "x",
                call_id=None,
                event_time_ms=T0,
                topic="t",
                partition=0,
                offset=7,
            ),
        ],  # fmt: skip
        "quarantine": [
            QuarantinedRow("calls", "c-1.v1.final.parquet", ("a", "b"), "3", '{"x": 1}', "c-1", T0),
        ],  # fmt: skip
    }


def test_every_table_reads_the_same_through_pyiceberg_and_duckdb(cfg: CatalogConfig) -> None:
    tables = ensure_tables(cfg)
    con = iceberg_duckdb()
    for name, rows in _one_row_per_table().items():
        table = BY_NAME[name]
        append(tables[name], to_arrow_table(table, rows), {})
        tbl = tables[name].refresh()
        by_pyiceberg = tbl.scan().to_arrow().drop([EVENT_TS])
        rel = con.sql(f"SELECT * EXCLUDE ({EVENT_TS}) FROM iceberg_scan('{tbl.metadata_location}')")
        by_duckdb = rel.fetch_arrow_table()
        assert by_duckdb.column_names == by_pyiceberg.column_names, name
        assert by_duckdb.to_pylist() == by_pyiceberg.to_pylist(), name
        back = [from_arrow_row(table.table.record_type, r) for r in by_pyiceberg.to_pylist()]
        assert sorted(back, key=repr) == sorted(rows, key=repr), name


def test_rows_without_an_event_time_are_kept(cfg: CatalogConfig) -> None:
    letters = BY_NAME["dead_letters"]
    tbl = ensure_tables(cfg)["dead_letters"]
    letter = dead_letter("decode", "bad_header", "validation", "no capture time",
                         call_id=None, event_time_ms=None)  # fmt: skip
    append(tbl, to_arrow_table(letters, [letter]), {})
    (row,) = tbl.scan().to_arrow().to_pylist()
    assert row[EVENT_TS] is None and row["reason"] == "bad_header"


def test_a_column_added_to_a_record_evolves_the_table_and_old_snapshots_still_read(
    cfg: CatalogConfig,
) -> None:
    """The calls table as the previous schema wrote it (no ``scorecard`` column), then opened
    by this version: the column is added, old and new rows read, the old snapshot too."""
    catalog = load_catalog(cfg)
    catalog.create_namespace_if_not_exists(cfg.namespace)
    old_arrow = to_arrow_table(CALLS, [call_row(call_id="old")]).drop(["scorecard"])
    old_schema = to_iceberg_schema(old_arrow.schema)
    old_tbl = catalog.create_table(
        identifier(cfg, CALLS), schema=old_schema, partition_spec=partition_spec(CALLS, old_schema)
    )
    old_snapshot = append(old_tbl, old_arrow, {})

    tbl = ensure_tables(cfg, catalog)["calls"]
    assert "scorecard" in {f.name for f in tbl.schema().fields}
    append(tbl, to_arrow_table(CALLS, [call_row(call_id="new")]), {})

    now = {r["call_id"]: r for r in tbl.scan().to_arrow().to_pylist()}
    assert set(now) == {"old", "new"} and now["old"]["scorecard"] is None
    then = tbl.scan(snapshot_id=old_snapshot).to_arrow()
    assert then.column("call_id").to_pylist() == ["old"]
    con = iceberg_duckdb()
    assert con.execute(
        f"SELECT count(*) FROM iceberg_scan('{tbl.metadata_location}')"
    ).fetchall() == [(2,)]


def test_maintain_compacts_days_keeps_the_ledger_and_removes_orphans(cfg: CatalogConfig) -> None:
    tables = ensure_tables(cfg)
    for i in range(4):  # four commits on one day: four small files
        rows = [call_row(call_id=f"m-{i}")]
        append(
            tables["calls"],
            to_arrow_table(CALLS, rows),
            {LEDGER_PROPERTY: f'{{"t:0":{{"frontier":{i + 1},"acked":[]}}}}'},
        )
    # a data file no snapshot lists: a commit that never happened
    data_dir = Path(tables["calls"].location().removeprefix("file://")) / "data"
    orphan = data_dir / "orphan-00000.parquet"
    shutil.copy(next(data_dir.rglob("*.parquet")), orphan)

    (calls_report,) = [
        r for r in maintain(cfg, older_than_s=0, orphan_grace_s=0) if r.table == "calls"
    ]
    assert (calls_report.files_before, calls_report.files_after) == (4, 1)
    assert calls_report.days_compacted == 1
    assert calls_report.snapshots_after == 1
    assert calls_report.orphans_removed >= 1 and not orphan.exists()
    tbl = load_catalog(cfg).load_table(identifier(cfg, CALLS))
    assert sorted(tbl.scan().to_arrow().column("call_id").to_pylist()) == [
        f"m-{i}" for i in range(4)
    ]
    assert table_ledger(tbl) == {("t", 0): Checkpoint(4, ())}  # carried over
    con = iceberg_duckdb()
    assert con.execute(
        f"SELECT count(*) FROM iceberg_scan('{tbl.metadata_location}')"
    ).fetchall() == [(4,)]


def test_commit_stats_count_files_within_any_commit_interval() -> None:
    # commits at 0, 10, 20 s with 1 file each, then one at 25 s with 2 (a day boundary)
    stats = commit_stats_of("calls", [(20_000, 1), (0, 1), (10_000, 1), (25_000, 2)], 10, 5)
    assert stats.commits == 4 and stats.files_added == 5 and stats.live_files == 5
    assert stats.max_files_per_interval == 3  # 20 s and 25 s fall in one 10-s interval
    assert stats.min_gap_s == 5.0
    assert commit_stats_of("calls", [], 10, 0).max_files_per_interval == 0
    assert commit_stats_of("calls", [(0, 1), (10_000, 1)], 10, 2).max_files_per_interval == 1


def test_commit_stats_read_the_snapshots(cfg: CatalogConfig) -> None:
    tables = ensure_tables(cfg)
    for i in range(3):
        append(tables["calls"], to_arrow_table(CALLS, [call_row(call_id=f"s-{i}")]), {})
    append(tables["calls"], to_arrow_table(CALLS, []), {LEDGER_PROPERTY: "{}"})  # no files
    stats = {s.table: s for s in commit_stats(cfg, interval_s=10)}
    assert (stats["calls"].commits, stats["calls"].files_added, stats["calls"].live_files) == (
        3, 3, 3,
    )  # fmt: skip
    assert stats["calls"].max_files_per_interval == 3  # committed within a second
    assert stats["transcripts"].commits == 0
