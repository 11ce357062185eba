"""Reading the warehouse output back with DuckDB: the batch job (what is already final, its
results), the demo summary, benchmarks, tests."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from schemas.iceberg import ICEBERG_TABLES
from schemas.tables import CALLS, DEAD_LETTERS, TRANSCRIPTS
from transforms.io.iceberg import CatalogConfig, load_catalog
from transforms.io.iceberg_maintenance import MaintenanceReport


def _glob(root: str | Path, table: str) -> str:
    return str(Path(root) / table / "**" / "*.parquet")  # dt=…/hour=…/


def _iceberg_catalog(root: str | Path) -> CatalogConfig | None:
    """The warehouse's default Iceberg catalog under ``root``, if the job wrote one."""
    cfg = CatalogConfig.under(str(root))
    return cfg if Path(cfg.uri.removeprefix("sqlite:///")).is_file() else None


def _iceberg_table(root: str | Path, table: str) -> Any | None:
    cfg = _iceberg_catalog(root)
    if cfg is None:
        return None
    from pyiceberg.exceptions import NoSuchTableError

    try:
        tbl = load_catalog(cfg).load_table(f"{cfg.namespace}.{table}")
    except NoSuchTableError:
        return None
    return tbl if tbl.current_snapshot() is not None else None


def snapshot_id(root: str | Path, table: str) -> str | None:
    """The current snapshot of the Iceberg ``table`` under ``root`` (None: none, or Parquet):
    what changes when a commit lands."""
    tbl = _iceberg_table(root, table)
    return None if tbl is None else str(tbl.current_snapshot().snapshot_id)


def iceberg_scan(root: str | Path, table: str) -> str | None:
    """``iceberg_scan('<metadata.json>')`` of ``table`` when the job wrote Iceberg tables under
    ``root`` and this one has rows (DuckDB needs the iceberg extension: ``iceberg_duckdb``)."""
    tbl = _iceberg_table(root, table)
    return None if tbl is None else f"iceberg_scan('{tbl.metadata_location}')"


def _source(root: str | Path, table: str) -> str | None:
    """The DuckDB table expression of ``table`` under ``root`` (Iceberg tables when the job
    wrote them, else the Parquet files); None while it has no rows."""
    scan = iceberg_scan(root, table)
    if scan is not None:
        return scan
    if any((Path(root) / table).rglob("*.parquet")):
        return f"read_parquet('{_glob(root, table)}', hive_partitioning = true)"
    return None


_CONNECTION: list[Any] = []


def _relation(sql: str) -> Any:
    if not _CONNECTION:
        _CONNECTION.append(iceberg_duckdb())
    rel = _CONNECTION[0].sql(sql)
    if rel is None:
        raise ValueError(f"not a query: {sql}")
    return rel


def _rows(sql: str) -> list[dict[str, Any]]:
    rel = _relation(sql)
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def query(sql: str) -> list[tuple[Any, ...]]:
    return list(_relation(sql).fetchall())


def final_calls(root: str | Path) -> list[dict[str, Any]]:
    """Latest final row per call (the documented consumer query)."""
    src = _source(root, CALLS.name)
    if src is None:
        return []
    return _rows(
        f"""SELECT * FROM {src} WHERE is_final
            QUALIFY row_number() OVER (PARTITION BY call_id ORDER BY version DESC) = 1
            ORDER BY call_id"""
    )


def final_file_names(root: str | Path) -> frozenset[str]:
    """What changes when a final row comes: the names of the calls table's final row files
    (``<call>.v<version>.final.parquet``), or the Iceberg table's current snapshot."""
    snapshot = snapshot_id(root, CALLS.name)
    if snapshot is not None:
        return frozenset([snapshot])
    return frozenset(f.name for f in (Path(root) / CALLS.name).rglob("*.final.parquet"))


def all_call_rows(root: str | Path) -> list[dict[str, Any]]:
    return table_rows(root, CALLS.name)


def duplicate_final_rows(root: str | Path) -> list[tuple[Any, ...]]:
    """(call_id, version, rows) of every final (call, version) stored more than once: the
    warehouse's key; the README's consumer check."""
    src = _source(root, CALLS.name)
    if src is None:
        return []
    return query(
        f"SELECT call_id, version, count(*) FROM {src} "
        "WHERE is_final GROUP BY call_id, version HAVING count(*) > 1"
    )


def table_rows(root: str | Path, table: str) -> list[dict[str, Any]]:
    """Every row of ``table`` (a name in ``schemas.tables``) under ``root``."""
    src = _source(root, table)
    return [] if src is None else _rows(f"SELECT * FROM {src}")


def dead_letters(root: str | Path) -> list[dict[str, Any]]:
    return table_rows(root, DEAD_LETTERS.name)


def wait_for_final_calls(
    root: str | Path,
    call_ids: Iterable[str],
    timeout_s: float,
    poll_s: float = 0.5,
    settle_s: float = 0.0,
) -> dict[str, dict[str, Any]]:
    """Poll until every call in ``call_ids`` has a final row (or the timeout passes); the latest
    version of each. ``settle_s`` > 0: then until no call got a newer version for that long
    (what a consumer keeping the highest version ends up with after late data)."""
    wanted = set(call_ids)
    deadline = time.monotonic() + timeout_s
    seen: dict[str, int] = {}
    settled_at = math.inf
    names: frozenset[str] | None = None
    rows: dict[str, dict[str, Any]] = {}
    while True:
        # DuckDB reads the rows only when a final row file came: most files are live rows, and
        # reading them all every poll took 8 % of the demo's CPU (issue 12's profile).
        now_names = final_file_names(root)
        if now_names != names:
            names = now_names
            rows = {r["call_id"]: r for r in final_calls(root)}
        versions = {c: r["version"] for c, r in rows.items()}
        now = time.monotonic()
        if wanted <= rows.keys():
            if versions != seen:
                seen, settled_at = versions, now + settle_s
            if now >= settled_at:
                return rows
        if now > deadline:
            return rows
        time.sleep(poll_s)


def transcripts(root: str | Path) -> list[dict[str, Any]]:
    """Every transcript row, in (call, start) order."""
    src = _source(root, TRANSCRIPTS.name)
    if src is None:
        return []
    return _rows(f"SELECT * FROM {src} ORDER BY call_id, start_ms, channel")


# --- Iceberg tables -------------------------------------------------------------------------


def duckdb_extension_directory() -> Path:
    """Where the PyPI packages ``duckdb-ext-iceberg`` and ``duckdb-ext-avro`` put DuckDB's
    extension files (DuckDB cannot download them here; they fit duckdb 1.4.4 only)."""
    import duckdb_ext

    (root,) = list(duckdb_ext.__path__)
    return Path(root) / "extensions"


def iceberg_duckdb() -> Any:
    """A private in-memory DuckDB with the iceberg extension loaded from the PyPI packages:
    ``iceberg_scan('<metadata.json>')`` reads a table."""
    import duckdb

    con = duckdb.connect(
        config={
            "extension_directory": str(duckdb_extension_directory()),
            "autoinstall_known_extensions": False,
        }
    )
    con.execute("LOAD iceberg")
    return con


def duckdb_setup_sql(cfg: CatalogConfig) -> str:
    """SQL that makes a DuckDB 1.4.4 session read the warehouse: the extension directory of
    the PyPI packages, ``LOAD iceberg``, one view per table over its current snapshot."""
    lines = [
        f"SET extension_directory = '{duckdb_extension_directory()}';",
        "LOAD iceberg;",
    ]
    catalog = load_catalog(cfg)
    for name in (t.name for t in ICEBERG_TABLES):
        from pyiceberg.exceptions import NoSuchTableError

        try:
            tbl = catalog.load_table(f"{cfg.namespace}.{name}")
        except NoSuchTableError:
            continue
        if tbl.current_snapshot() is not None:
            lines.append(
                f"CREATE OR REPLACE VIEW {name} AS "
                f"SELECT * FROM iceberg_scan('{tbl.metadata_location}');"
            )
    return "\n".join(lines)


def format_maintenance(reports: Sequence[MaintenanceReport]) -> str:
    """``callqa warehouse maintain``'s table: per table, files and snapshots before → after."""
    lines = [f"{'table':<18}{'files':>14}{'snapshots':>14}{'days compacted':>16}{'orphans':>9}"]
    for r in reports:
        files = f"{r.files_before} → {r.files_after}"
        snaps = f"{r.snapshots_before} → {r.snapshots_after}"
        lines.append(
            f"{r.table:<18}{files:>14}{snaps:>14}{r.days_compacted:>16}{r.orphans_removed:>9}"
        )
    return "\n".join(lines)
