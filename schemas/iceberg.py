"""Warehouse tables as Apache Iceberg tables: schemas, field ids and partition specs, all
derived from the Arrow schemas in ``schemas.tables`` (themselves derived from the records).

Each table gets one column more than its record: ``event_ts``, the row's event time as a UTC
timestamp in microseconds (Iceberg's day transform takes timestamps, not epoch-millisecond
longs). Partitions are hidden: ``day(event_ts)`` only. A bucket by call id would split each
commit into up to that many files (40 calls in one commit made 23 files with 16 buckets);
instead the rows of a commit are written sorted by ``call_id``, so a reader looking for a call
skips files and row groups by their column statistics. A field added to a record later gets
the next free id by schema evolution (``union_by_name``), so older snapshots keep reading.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import pyarrow as pa
from pyiceberg.io.pyarrow import pyarrow_to_schema
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema, assign_fresh_schema_ids
from pyiceberg.transforms import DayTransform

from schemas.tables import (
    CALLS,
    DEAD_LETTERS,
    QUARANTINE,
    SCORECARD_ANSWERS,
    TRANSCRIPTS,
    Table,
    to_arrow_value,
)

#: The hidden-partitioning column every table adds to its record's fields.
EVENT_TS: Final = "event_ts"
_FIELD_ID: Final = b"PARQUET:field_id"
_FIRST_PARTITION_FIELD_ID: Final = 1000


class IcebergTable(NamedTuple):
    """A warehouse table as an Iceberg table: which field gives its event time."""

    table: Table
    event_ms: Callable[[Any], int | None]

    @property
    def name(self) -> str:
        return self.table.name


ICEBERG_TABLES: Final = (
    IcebergTable(CALLS, lambda r: r.start_ms),
    IcebergTable(TRANSCRIPTS, lambda t: t.start_ms),
    IcebergTable(SCORECARD_ANSWERS, lambda a: a.call_start_ms),
    IcebergTable(DEAD_LETTERS, lambda d: d.event_time_ms),
    IcebergTable(QUARANTINE, lambda q: q.event_time_ms),
)
BY_NAME: Final = {t.name: t for t in ICEBERG_TABLES}


def arrow_schema(table: IcebergTable) -> pa.Schema:
    """The table's Arrow schema: the record's columns, then ``event_ts``."""
    fields = [*table.table.schema, pa.field(EVENT_TS, pa.timestamp("us", tz="UTC"))]
    return pa.schema(fields, metadata=table.table.schema.metadata)


def _with_ids(field: pa.Field, ids: Iterator[int]) -> pa.Field:
    own = next(ids)
    kind = field.type
    if pa.types.is_struct(kind):
        kind = pa.struct([_with_ids(kind.field(i), ids) for i in range(kind.num_fields)])
    elif pa.types.is_list(kind):
        kind = pa.list_(_with_ids(kind.value_field, ids))
    return field.with_type(kind).with_metadata({_FIELD_ID: str(own).encode()})


def iceberg_schema(table: IcebergTable) -> Schema:
    """The table's Iceberg schema."""
    return to_iceberg_schema(arrow_schema(table))


def to_iceberg_schema(schema: pa.Schema) -> Schema:
    """An Arrow schema as Iceberg's, with the field ids a catalog gives a new table (top-level
    fields 1..n in order, then nested ones), so a partition spec's source ids hold."""
    ids = itertools.count(1)
    numbered = pa.schema([_with_ids(f, ids) for f in schema])
    return assign_fresh_schema_ids(pyarrow_to_schema(numbered))


def partition_spec(table: IcebergTable, schema: Schema) -> PartitionSpec:
    """``day(event_ts)``."""
    day = PartitionField(
        schema.find_field(EVENT_TS).field_id, _FIRST_PARTITION_FIELD_ID, DayTransform(), "day"
    )
    return PartitionSpec(day)


def to_arrow_table(table: IcebergTable, rows: Iterable[Any]) -> pa.Table:
    """Records → an Arrow table in the Iceberg table's schema (``event_ts`` filled in)."""
    records = list(rows)
    columns = {
        name: [to_arrow_value(getattr(r, name)) for r in records]
        for name in table.table.record_type._fields
    }
    columns[EVENT_TS] = [_timestamp(table.event_ms(r)) for r in records]
    arrow = pa.Table.from_pydict(columns, schema=arrow_schema(table))
    return arrow.sort_by([("call_id", "ascending")])  # every table has one (maybe null)


def _timestamp(epoch_ms: int | None) -> datetime | None:
    return None if epoch_ms is None else datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
