"""``WriteTable``: rows → Parquet files with Hive ``dt=`` partitions and deterministic names.

Each row is written to a file whose name is a function of the row's key (a call and its
version, or a dead letter's source coordinates), through a temporary file and an atomic rename.
A replay or a re-firing that produces the same row therefore rewrites the same file with the
same content: the tables never hold duplicates, and nothing overwrites a different row.

Layout (``<root>/<table>/dt=YYYY-MM-DD/<name>.parquet``):

* calls, final rows: ``<call>.v<version>.final.parquet``
* calls, live rows: ``<call>.v<version>.live.o<last_offset>.parquet`` (state after that offset)
* dead letters: ``<topic>.p<partition>.o<offset>.<stage>.<reason>.parquet``, or with a content
  hash when the letter has no source offset (e.g. a sequence gap).
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from schemas.records import CallRow, DeadLetter, OffsetAck, RowWithAck
from schemas.tables import CALLS, DEAD_LETTERS, Table

_NS: Final = "callqa.sink"
_MAX_NAME: Final = 120


def safe_name(text: str) -> str:
    """A file-name-safe, reversible rendering of ``text`` (hashed when too long)."""
    quoted = urllib.parse.quote(text, safe="-_")
    if len(quoted) <= _MAX_NAME:
        return quoted
    return quoted[:80] + "~" + hashlib.sha1(text.encode()).hexdigest()[:16]


def day_partition(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return "dt=unknown"
    return "dt=" + datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def call_file(row: CallRow) -> str:
    kind = "final" if row.is_final else f"live.o{row.last_offset}"
    return f"{day_partition(row.start_ms)}/{safe_name(row.call_id)}.v{row.version}.{kind}.parquet"


def dead_letter_file(dl: DeadLetter) -> str:
    if dl.offset is not None:
        name = f"{safe_name(dl.topic or '-')}.p{dl.partition}.o{dl.offset}.{dl.stage}.{dl.reason}"
    else:
        digest = hashlib.sha1(repr(tuple(dl)).encode()).hexdigest()[:16]
        name = f"{dl.stage}.{dl.reason}.{safe_name(dl.call_id or '-')}.{digest}"
    return f"{day_partition(dl.event_time_ms)}/{name}.parquet"


def dead_letter_ack(dl: DeadLetter) -> OffsetAck | None:
    """A dead letter that is the record's only effect acknowledges the record's offset.

    Decode failures and too-late chunks qualify; a duplicate chunk does not (it is part of its
    call, acknowledged when the call expires).
    """
    if dl.offset is None or dl.topic is None or dl.partition is None:
        return None
    if dl.stage != "decode" and dl.reason != "too_late":
        return None
    return OffsetAck(dl.topic, dl.partition, ((dl.offset, dl.offset + 1),))


def _unpack_call(element: RowWithAck) -> tuple[Any, OffsetAck | None]:
    return element.row, element.ack


def _unpack_dead_letter(element: DeadLetter) -> tuple[Any, OffsetAck | None]:
    return element, dead_letter_ack(element)


_FILE_NAMERS: Final[dict[str, Callable[[Any], str]]] = {
    CALLS.name: call_file,
    DEAD_LETTERS.name: dead_letter_file,
}
_UNPACKERS: Final[dict[str, Callable[[Any], tuple[Any, OffsetAck | None]]]] = {
    CALLS.name: _unpack_call,
    DEAD_LETTERS.name: _unpack_dead_letter,
}


def write_rows_file(path: Path, table: Table, rows: list[Any]) -> None:
    """Write ``rows`` to ``path`` atomically (temp file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {name: [getattr(r, name) for r in rows] for name in table.record_type._fields}
    arrow = pa.Table.from_pydict(columns, schema=table.schema)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(arrow, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when the write or the rename failed


class WriteRowFilesFn(beam.DoFn):
    """Writes each row to its deterministic file; then outputs the row's ``OffsetAck`` if any.

    Input: ``RowWithAck`` (calls) or ``DeadLetter`` (dead letters).
    """

    def __init__(self, table_name: str, root: str) -> None:
        self._table_name = table_name
        self._root = root
        self.files_written = Metrics.counter(_NS, f"{table_name}_files_written")

    def setup(self) -> None:
        self._table = {t.name: t for t in (CALLS, DEAD_LETTERS)}[self._table_name]
        self._namer = _FILE_NAMERS[self._table_name]
        self._unpack = _UNPACKERS[self._table_name]

    def process(self, element: Any) -> Iterator[OffsetAck]:
        row, ack = self._unpack(element)
        rel = f"{self._table.name}/{self._namer(row)}"
        write_rows_file(Path(self._root) / rel, self._table, [row])
        self.files_written.inc()
        if ack is not None:
            yield ack


class WriteTable(beam.PTransform):
    """Rows → Parquet files under ``<root>/<table>/``; outputs the acks of what was written."""

    def __init__(self, table: Table, root: str) -> None:
        super().__init__()
        self._table = table
        self._root = root

    def expand(self, rows: beam.PCollection[Any]) -> beam.PCollection[OffsetAck]:
        return rows | f"Write_{self._table.name}" >> beam.ParDo(
            WriteRowFilesFn(self._table.name, self._root)
        ).with_output_types(OffsetAck)
