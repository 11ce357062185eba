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
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from schemas.records import CallRow, DeadLetter, OffsetAck, RowWithAck, Transcript
from schemas.tables import (
    CALLS,
    DEAD_LETTERS,
    TABLES,
    TRANSCRIPTS,
    Table,
    from_arrow_row,
    to_arrow_value,
)
from transforms.durable import replace_atomically

_NS: Final = "callqa.sink"
STAGE: Final = "sink"
DEAD_LETTER_TAG: Final = "dead_letter"
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


def _unpack_call(element: RowWithAck) -> tuple[Any, tuple[OffsetAck, ...]]:
    return element.row, element.acks


def _unpack_dead_letter(element: DeadLetter) -> tuple[Any, tuple[OffsetAck, ...]]:
    ack = dead_letter_ack(element)
    return element, () if ack is None else (ack,)


def transcript_file(t: Transcript) -> str:
    """One file per utterance: (call, channel, start) identifies it."""
    return f"{day_partition(t.start_ms)}/{safe_name(t.call_id)}.{t.channel}.{t.start_ms}.parquet"


def _unpack_transcript(element: Transcript) -> tuple[Any, tuple[OffsetAck, ...]]:
    return element, ()


_FILE_NAMERS: Final[dict[str, Callable[[Any], str]]] = {
    CALLS.name: call_file,
    DEAD_LETTERS.name: dead_letter_file,
    TRANSCRIPTS.name: transcript_file,
}
_UNPACKERS: Final[dict[str, Callable[[Any], tuple[Any, tuple[OffsetAck, ...]]]]] = {
    CALLS.name: _unpack_call,
    DEAD_LETTERS.name: _unpack_dead_letter,
    TRANSCRIPTS.name: _unpack_transcript,
}


def write_rows_file(path: Path, table: Table, rows: list[Any]) -> None:
    """Write ``rows`` to ``path`` atomically (temp file in the same directory, then rename)."""
    columns = {
        name: [to_arrow_value(getattr(r, name)) for r in rows] for name in table.record_type._fields
    }
    arrow = pa.Table.from_pydict(columns, schema=table.schema)
    replace_atomically(path, lambda tmp: pq.write_table(arrow, tmp, compression="zstd"))


def read_rows_file(path: Path, table: Table) -> list[Any]:
    return [from_arrow_row(table.record_type, r) for r in pq.read_table(path).to_pylist()]


def conflicting_final(row: CallRow, existing: CallRow) -> DeadLetter:
    return DeadLetter(
        stage=STAGE,
        reason="conflicting_final_row",
        error_type="write_once",
        message=(
            f"final row v{row.version} of call {row.call_id} exists with other content "
            f"({existing.chunk_count} chunks, offsets {existing.first_offset}.."
            f"{existing.last_offset}); kept it and dropped the new one ({row.chunk_count} "
            f"chunks, offsets {row.first_offset}..{row.last_offset})"
        ),
        topic=row.source_topic,
        partition=row.source_partition,
        offset=None,
        call_id=row.call_id,
        event_time_ms=row.start_ms,
        payload_size_bytes=None,
    )


class WriteRowFilesFn(beam.DoFn):
    """Writes each row to its deterministic file; then outputs the row's ``OffsetAck`` if any.

    Input: ``RowWithAck`` (calls) or ``DeadLetter`` (dead letters). Final call rows are
    write-once: rewriting identical content is a no-op; a *different* row under the same
    (call, version) — a chunk of a call that expired before a restart, say — never replaces
    the published one: it becomes a ``conflicting_final_row`` dead letter (tagged output).
    """

    def __init__(self, table_name: str, root: str) -> None:
        self._table_name = table_name
        self._root = root
        self.files_written = Metrics.counter(_NS, f"{table_name}_files_written")

    def setup(self) -> None:
        self._table = {t.name: t for t in TABLES}[self._table_name]
        self._namer = _FILE_NAMERS[self._table_name]
        self._unpack = _UNPACKERS[self._table_name]

    def process(self, element: Any) -> Iterator[Any]:
        row, acks = self._unpack(element)
        path = Path(self._root) / self._table.name / self._namer(row)
        if getattr(row, "is_final", False) and path.exists():
            existing = read_rows_file(path, self._table)[0]
            if existing != row:
                Metrics.counter(_NS, "final_row_conflicts").inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, conflicting_final(row, existing))
        else:
            write_rows_file(path, self._table, [row])
            self.files_written.inc()
        yield from acks  # only now that the row is durable


class WriteTable(beam.PTransform):
    """Rows → Parquet files under ``<root>/<table>/``.

    Outputs ``acks`` (OffsetAck of what is durable) and ``dead_letter`` (write conflicts).
    """

    def __init__(self, table: Table, root: str) -> None:
        super().__init__()
        self._table = table
        self._root = root

    def expand(self, rows: beam.PCollection[Any]) -> beam.pvalue.DoOutputsTuple:
        return rows | f"Write_{self._table.name}" >> beam.ParDo(
            WriteRowFilesFn(self._table.name, self._root)
        ).with_outputs(DEAD_LETTER_TAG, main="acks")
