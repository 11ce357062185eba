"""``CommitToIceberg`` on Prism with a real pyiceberg catalog (SQLite, local files): rows go in
batched commits (one per interval, or per ``max_rows``), one data file per partition per
commit, with the delivery ledger in each snapshot's summary; the acknowledgements come out
after their commit."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.runner import runner_options
from schemas.records import Checkpoint, DeadLetter, OffsetAck, RowWithAck, dead_letter
from tests.records import T0, call_row
from transforms.io.iceberg import CatalogConfig, ensure_tables
from transforms.io.iceberg_sink import CommitToIceberg, IcebergSinkConfig, warehouse_ledger
from transforms.io.parquet_sink import dead_letter_ack

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000


def _calls(n: int) -> list[RowWithAck]:
    """Calls on two days, each acknowledging its own offset of partition 0 of topic t."""
    return [
        RowWithAck(
            call_row(
                call_id=f"c-{i:03d}", start_ms=T0 + (i % 2) * DAY_MS, first_offset=i, last_offset=i
            ),
            (OffsetAck("t", 0, ((i, i + 1),)),),
        )  # fmt: skip
        for i in range(n)
    ]


def _letters(offsets: range) -> list[DeadLetter]:
    return [
        dead_letter("decode", "bad_header", "validation", "x", call_id=None,
                    event_time_ms=T0, topic="t", partition=0, offset=o)
        for o in offsets
    ]  # fmt: skip


def _run(
    prism: str, cfg: IcebergSinkConfig, calls: list[RowWithAck], letters: list[DeadLetter]
) -> list[DeadLetter]:
    """Commit ``calls`` and ``letters``; check that every ack comes out; the conflicts."""
    options = PipelineOptions(runner_options(["--runner=PrismRunner", f"--prism_location={prism}"]))
    conflicts = Path(cfg.catalog.warehouse.removeprefix("file://")).parent / "conflicts.txt"
    with beam.Pipeline(options=options) as p:
        committed_calls = p | "Calls" >> beam.Create(calls) | "C" >> CommitToIceberg("calls", cfg)
        committed_letters = (
            p | "Letters" >> beam.Create(letters) | "D" >> CommitToIceberg("dead_letters", cfg)
        )
        acks = (committed_calls.acks, committed_letters.acks) | beam.Flatten()
        expected = [a for c in calls for a in c.acks]
        expected += [a for d in letters if (a := dead_letter_ack(d)) is not None]
        assert_that(acks, equal_to(expected))
        _ = (
            committed_calls.dead_letter
            | beam.Map(lambda d: d.reason)
            | beam.io.WriteToText(str(conflicts), shard_name_template="")
        )
    return conflicts.read_text().split() if conflicts.exists() else []


@pytest.mark.parametrize("max_rows", [10_000, 15])
def test_rows_are_committed_in_batches_with_their_ledger(
    prism_location: str, tmp_path: Path, max_rows: int
) -> None:
    catalog = CatalogConfig.under(str(tmp_path / "out"))
    cfg = IcebergSinkConfig(catalog, commit_interval_s=1.0, max_rows=max_rows)
    calls, letters = _calls(40), _letters(range(40, 45))
    _run(prism_location, cfg, calls, letters)

    tables = ensure_tables(catalog)
    calls_table = tables["calls"]
    snapshots = calls_table.snapshots()
    entries = calls_table.inspect.entries().to_pylist()
    per_commit = Counter(
        (e["snapshot_id"], tuple(sorted(e["data_file"]["partition"].items()))) for e in entries
    )
    print(f"max_rows={max_rows}: {len(snapshots)} commits, {len(entries)} data files")
    assert len(snapshots) == (1 if max_rows > 40 else 3)
    assert max(per_commit.values()) == 1  # one data file per partition per commit
    assert {str(dict(part)["day"]) for _, part in per_commit} == {"2025-11-25", "2025-11-26"}
    assert sorted(calls_table.scan().to_arrow().column("call_id").to_pylist()) == [
        c.row.call_id for c in calls
    ]
    assert len(tables["dead_letters"].snapshots()) == 1
    # every acknowledged offset is in the warehouse's ledger: 0..45 done
    assert warehouse_ledger(tables.values()) == {("t", 0): Checkpoint(45, ())}


def test_a_replay_adds_no_row_and_a_changed_final_row_stays_published(
    prism_location: str, tmp_path: Path
) -> None:
    """The same input twice (a replay after a restart): the tables are unchanged. A final row
    of the same (call, version) with other content: the published one stays, the new one is
    a conflicting_final_row dead letter."""
    cfg = IcebergSinkConfig(CatalogConfig.under(str(tmp_path / "out")), commit_interval_s=1.0)
    calls, letters = _calls(6), _letters(range(6, 8))
    assert _run(prism_location, cfg, calls, letters) == []
    changed = RowWithAck(calls[0].row._replace(chunk_count=1), calls[0].acks)
    assert _run(prism_location, cfg, [*calls, changed], letters) == ["conflicting_final_row"]
    tables = ensure_tables(cfg.catalog)
    rows = tables["calls"].scan().to_arrow().to_pylist()
    assert sorted(r["call_id"] for r in rows) == [c.row.call_id for c in calls]
    assert {r["chunk_count"] for r in rows if r["call_id"] == "c-000"} == {calls[0].row.chunk_count}
    assert len(tables["dead_letters"].scan().to_arrow()) == 2
