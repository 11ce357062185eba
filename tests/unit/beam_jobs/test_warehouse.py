"""Following the warehouse: DuckDB reads the call rows only when a final row file appears."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from beam_jobs import warehouse


def test_final_files_are_named_by_the_sink(tmp_path: Path) -> None:
    hour = tmp_path / "calls" / "dt=2026-12-05" / "hour=21"
    hour.mkdir(parents=True)
    for name in ("c1.v1.final.parquet", "c1.v0.live.o9.parquet", ".c2.v1.final.parquet.ab.tmp"):
        (hour / name).write_bytes(b"")
    assert warehouse.final_file_names(tmp_path) == {"c1.v1.final.parquet"}


def test_waiting_reads_rows_again_only_when_a_final_file_came(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hour = tmp_path / "calls" / "dt=2026-12-05" / "hour=21"
    hour.mkdir(parents=True)
    reads: list[int] = []

    def final_calls(root: Any) -> list[dict[str, Any]]:  # stands in for the DuckDB query
        reads.append(1)
        names = warehouse.final_file_names(root)
        return [{"call_id": n.split(".")[0], "version": 1} for n in sorted(names)]

    monkeypatch.setattr(warehouse, "final_calls", final_calls)
    assert warehouse.wait_for_final_calls(tmp_path, ["c1"], timeout_s=0.3, poll_s=0.05) == {}
    assert len(reads) == 1  # polled several times, read once
    (hour / "c1.v1.final.parquet").write_bytes(b"")
    rows = warehouse.wait_for_final_calls(tmp_path, ["c1"], timeout_s=5, poll_s=0.05)
    assert rows == {"c1": {"call_id": "c1", "version": 1}} and len(reads) == 2
