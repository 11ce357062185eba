"""``callqa warehouse maintain``: compact small files, expire old snapshots, remove orphans.

* **Compaction**: a day partition with ``min_files`` data files or more is rewritten as one
  file (an overwrite of that day, in one commit). The commit carries the table's ledger on,
  so the warehouse's delivery ledger never goes back. If the job committed to the table
  meanwhile, the overwrite's commit fails (Iceberg checks the snapshot it started from) and
  the day is left for the next run: nothing the job wrote is lost.
* **Expiry**: snapshots older than ``older_than_s`` go (never the current one).
* **Orphans**: data files under the table's ``data/`` that no remaining snapshot lists and
  that are older than ``orphan_grace_s`` (so a commit in flight keeps its files) are deleted:
  files of commits that never happened (the job died between writing and committing) and of
  expired snapshots.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from schemas.iceberg import EVENT_TS
from transforms.io.iceberg import CatalogConfig, data_file_paths, ensure_tables, load_catalog
from transforms.io.iceberg_sink import LEDGER_PROPERTY, ledger_to_summary, table_ledger

_DAY_US = 86_400_000_000


class MaintenanceReport(NamedTuple):
    table: str
    files_before: int
    files_after: int
    snapshots_before: int
    snapshots_after: int
    days_compacted: int
    orphans_removed: int


class CommitStats(NamedTuple):
    """How a table was committed: what ``bench capacity`` reports against the goal of at most
    one data file per table per commit interval."""

    table: str
    commits: int  # snapshots that added data files
    files_added: int
    max_files_per_interval: int  # the most files added within any one commit interval
    min_gap_s: float | None  # the shortest time between two of those commits
    live_files: int  # data files the current snapshot lists


def commit_stats_of(
    table: str, commits: Sequence[tuple[int, int]], interval_s: float, live_files: int
) -> CommitStats:
    """``commits``: (commit time ms, data files added) of each snapshot that added files."""
    times = sorted(commits)
    interval_ms = interval_s * 1000
    per_interval = max(
        (sum(n for t, n in times[i:] if t < t0 + interval_ms) for i, (t0, _) in enumerate(times)),
        default=0,
    )
    gaps = [(b[0] - a[0]) / 1000 for a, b in zip(times, times[1:], strict=False)]
    return CommitStats(
        table, len(times), sum(n for _, n in times), per_interval, min(gaps, default=None),
        live_files,
    )  # fmt: skip


def commit_stats(cfg: CatalogConfig, interval_s: float) -> list[CommitStats]:
    """``CommitStats`` of every table, from its snapshots' summaries."""
    out = []
    for name, tbl in ensure_tables(cfg).items():
        added = ((s.timestamp_ms, _added_files(s)) for s in tbl.snapshots())
        commits = [(ms, n) for ms, n in added if n > 0]
        out.append(commit_stats_of(name, commits, interval_s, _data_files(tbl)))
    return out


def _added_files(snapshot: Any) -> int:
    summary = snapshot.summary
    props = {} if summary is None else summary.additional_properties
    return int(props.get("added-data-files") or 0)


def maintain(
    cfg: CatalogConfig,
    older_than_s: float = 7 * 86_400,
    orphan_grace_s: float = 3_600,
    min_files: int = 2,
) -> list[MaintenanceReport]:
    """Maintain every table; one report row per table."""
    load_catalog(cfg)  # a clear error first if the catalog is unreachable
    return [
        _maintain(tbl, cfg, name, older_than_s, orphan_grace_s, min_files)
        for name, tbl in ensure_tables(cfg).items()
    ]


def _maintain(
    tbl: Any, cfg: CatalogConfig, name: str, older_than_s: float, grace_s: float, min_files: int
) -> MaintenanceReport:
    files_before, snapshots_before = _data_files(tbl), len(tbl.snapshots())
    compacted = _compact(tbl, min_files)
    tbl = tbl.refresh()
    if tbl.current_snapshot() is not None:
        cutoff = datetime.fromtimestamp(time.time() - older_than_s, tz=UTC)
        tbl.maintenance.expire_snapshots().older_than(cutoff).commit()
        tbl = tbl.refresh()
    orphans = _remove_orphans(tbl, cfg, grace_s)
    return MaintenanceReport(
        name, files_before, _data_files(tbl), snapshots_before, len(tbl.snapshots()),
        compacted, orphans,
    )  # fmt: skip


def _data_files(tbl: Any) -> int:
    return len(data_file_paths(tbl))


def _compact(tbl: Any, min_files: int) -> int:
    """Rewrite each day with ``min_files`` files or more as one; the days rewritten."""
    from pyiceberg.exceptions import CommitFailedException

    if not data_file_paths(tbl):
        return 0
    days: dict[Any, int] = {}
    for f in tbl.inspect.data_files().to_pylist():
        day = f["partition"]["day"]
        days[day] = days.get(day, 0) + 1
    done = 0
    for day, count in sorted(days.items(), key=lambda d: str(d[0])):
        if count < min_files:
            continue
        where = _day_filter(day)
        rows = tbl.scan(row_filter=where).to_arrow()
        ledger = table_ledger(tbl)
        summary = {LEDGER_PROPERTY: ledger_to_summary(ledger)} if ledger else {}
        try:
            tbl.overwrite(
                rows.sort_by([("call_id", "ascending")]),
                overwrite_filter=where,
                snapshot_properties=summary,
            )
        except CommitFailedException:
            tbl = tbl.refresh()  # the job committed meanwhile: this day waits for next time
            continue
        tbl = tbl.refresh()
        done += 1
    return done


def _day_filter(day: Any) -> Any:
    import pyiceberg.expressions

    ex: Any = pyiceberg.expressions  # pydantic signatures confuse mypy
    if day is None:
        return ex.IsNull(EVENT_TS)
    start = (day if isinstance(day, int) else (day - datetime(1970, 1, 1).date()).days) * _DAY_US
    return ex.And(ex.GreaterThanOrEqual(EVENT_TS, start), ex.LessThan(EVENT_TS, start + _DAY_US))


def _remove_orphans(tbl: Any, cfg: CatalogConfig, grace_s: float) -> int:
    """Delete data files no snapshot lists, older than ``grace_s``; how many."""
    from pyarrow import fs

    listed = {_as_local(p) for p in data_file_paths(tbl, every_snapshot=True)}
    data_dir = f"{tbl.location().rstrip('/')}/data"
    filesystem, root = _filesystem(cfg, data_dir)
    try:
        infos = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    except FileNotFoundError:
        return 0
    prefix = data_dir[: len(data_dir) - len(root)] if data_dir.endswith(root) else ""
    cutoff_ns = (time.time() - grace_s) * 1e9
    removed = 0
    for info in infos:
        if info.type != fs.FileType.File or not info.path.endswith(".parquet"):
            continue
        if _as_local(prefix + info.path) in listed:
            continue
        if info.mtime_ns is not None and info.mtime_ns > cutoff_ns:
            continue
        filesystem.delete_file(info.path)
        removed += 1
    return removed


def _as_local(uri: str) -> str:
    return uri.removeprefix("file://")


def _filesystem(cfg: CatalogConfig, uri: str) -> tuple[Any, str]:
    """A pyarrow file system for ``uri`` with the catalog's S3 settings, and the path in it."""
    from pyarrow import fs

    props = dict(cfg.properties)
    if uri.startswith("s3://"):
        s3 = fs.S3FileSystem(
            endpoint_override=props.get("s3.endpoint"),
            access_key=props.get("s3.access-key-id"),
            secret_key=props.get("s3.secret-access-key"),
            region=props.get("s3.region"),
        )
        return s3, uri.removeprefix("s3://")
    filesystem, path = fs.FileSystem.from_uri(uri)
    return filesystem, path
