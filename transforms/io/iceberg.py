"""The warehouse's Iceberg catalog: open it, create or evolve the tables, append with a summary.

The catalog is pyiceberg's SQL catalog on a SQLite file under the output directory by default
(``<output_dir>/_catalog/catalog.db``); any SQLAlchemy URL works (``postgresql+psycopg2://…``
for a catalog shared by several machines), and an ``http(s)://`` URI opens a REST catalog. The
warehouse location, where data and metadata files go, is a local path or ``s3://…`` /
``gs://…`` (pyarrow's file systems; credentials as ``s3.*`` / ``gcs.*`` catalog properties or
the usual environment variables).
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import pyarrow as pa

from schemas.iceberg import ICEBERG_TABLES, IcebergTable, iceberg_schema, partition_spec

T = TypeVar("T")

#: Stages of one process open the catalog one at a time: a SQL catalog creates its own tables
#: when opened, and two at once raced ("table iceberg_tables already exists").
_OPENING: Final = threading.Lock()

#: Properties of every table: format v2, zstd Parquet.
TABLE_PROPERTIES: Final = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
}


@dataclass(frozen=True)
class CatalogConfig:
    """Where the tables are: the catalog (``uri``) and where their files go (``warehouse``)."""

    uri: str
    warehouse: str
    namespace: str = "callqa"
    name: str = "callqa"
    # may hold credentials (s3.secret-access-key, a REST token): left out of repr() and logs
    properties: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def under(cls, output_dir: str) -> CatalogConfig:
        """The default: a SQLite catalog and the data files under ``output_dir``."""
        root = Path(output_dir).absolute()
        return cls(
            uri=f"sqlite:///{root / '_catalog' / 'catalog.db'}",
            warehouse=(root / "warehouse").as_uri(),
        )


def load_catalog(cfg: CatalogConfig) -> Any:
    """The pyiceberg catalog ``cfg`` names (a SQL catalog, or a REST one for ``http(s)://``)."""
    props = {"warehouse": cfg.warehouse, **dict(cfg.properties)}
    if cfg.uri.startswith(("http://", "https://")):
        from pyiceberg.catalog.rest import RestCatalog

        return RestCatalog(cfg.name, uri=cfg.uri, **props)
    from pyiceberg.catalog.sql import SqlCatalog

    if cfg.uri.startswith("sqlite:///"):
        Path(cfg.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return SqlCatalog(cfg.name, uri=cfg.uri, **props)


def identifier(cfg: CatalogConfig, table: IcebergTable) -> str:
    return f"{cfg.namespace}.{table.name}"


def ensure_tables(cfg: CatalogConfig, catalog: Any = None) -> dict[str, Any]:
    """Every warehouse table, created where missing and evolved to the records' schema where
    it is older (columns added by name; nothing dropped or retyped). Name → pyiceberg table.
    Processes that race on it retry (the loser finds what the winner made)."""
    from sqlalchemy.exc import OperationalError
    from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random

    @retry(
        retry=retry_if_exception_type(OperationalError),
        stop=stop_after_attempt(5),
        wait=wait_random(0.1, 1.0),
        reraise=True,
    )
    def once() -> dict[str, Any]:
        with _OPENING:
            return _ensure_tables(cfg, catalog if catalog is not None else load_catalog(cfg))

    return once()


def _ensure_tables(cfg: CatalogConfig, catalog: Any) -> dict[str, Any]:
    catalog.create_namespace_if_not_exists(cfg.namespace)
    tables = {}
    for table in ICEBERG_TABLES:
        schema = iceberg_schema(table)
        tbl = catalog.create_table_if_not_exists(
            identifier(cfg, table),
            schema=schema,
            partition_spec=partition_spec(table, schema),
            properties=TABLE_PROPERTIES,
        )
        if {f.name for f in tbl.schema().fields} != {f.name for f in schema.fields}:
            with tbl.update_schema() as update:
                update.union_by_name(schema)
            tbl = catalog.load_table(identifier(cfg, table))
        tables[table.name] = tbl
    return tables


def append(tbl: Any, rows: pa.Table, summary: dict[str, str]) -> int:
    """Append ``rows`` in one commit whose snapshot summary carries ``summary``; the new
    snapshot's id. The data files are written first, then the catalog commit makes them part
    of the table: a process that dies between the two leaves files no snapshot lists."""
    txn = tbl.transaction()
    txn.append(rows, snapshot_properties=summary)
    if rows.num_rows:  # data files written, not yet part of the table
        failpoint("iceberg_before_commit")
    txn.commit_transaction()
    return int(tbl.current_snapshot().snapshot_id)


def retrying_conflicts(commit: Callable[[], T]) -> T:
    """Run ``commit`` (which reads the table afresh, then commits) again when another writer
    committed to the table first (Iceberg's optimistic concurrency: ``maintain``, a seed)."""
    from pyiceberg.exceptions import CommitFailedException
    from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random

    return retry(
        retry=retry_if_exception_type(CommitFailedException),
        stop=stop_after_attempt(8),
        wait=wait_random(0.1, 1.0),
        reraise=True,
    )(commit)()


#: Failpoints hit so far in this process, by name.
_HITS: Final[Counter[str]] = Counter()


def failpoint(name: str) -> None:
    """Test hook: ``CALLQA_FAILPOINT=<name>:<n>`` kills this process with SIGKILL the n-th time
    it passes ``name`` (as a crash would); unset, nothing happens."""
    spec = os.environ.get("CALLQA_FAILPOINT", "")
    if not spec.startswith(f"{name}:"):
        return
    _HITS[name] += 1
    if _HITS[name] >= int(spec.rsplit(":", 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)


def data_file_paths(tbl: Any, every_snapshot: bool = False) -> list[str]:
    """The data files of the current snapshot (``every_snapshot``: of any snapshot kept)."""
    if tbl.current_snapshot() is None:
        return []
    try:  # pyiceberg cannot list a table whose snapshots hold no manifest (a ledger seed)
        files = tbl.inspect.all_data_files() if every_snapshot else tbl.inspect.data_files()
    except pa.ArrowInvalid:
        return []
    return list(files.column("file_path").to_pylist())
