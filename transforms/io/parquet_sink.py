"""``WriteTable``: rows → Parquet files with Hive ``dt=``/``hour=`` partitions and deterministic
names.

Each row is written to a file whose name is a function of the row's key (a call and its
version, or a dead letter's source coordinates), through a temporary file and an atomic rename.
A replay or a re-firing that produces the same row therefore rewrites the same file with the
same content: the tables never hold duplicates, and nothing overwrites a different row.

Layout (``<root>/<table>/dt=YYYY-MM-DD/hour=HH/<name>.parquet``, UTC, from the row's event
time: a call's start, an utterance's start, a dead letter's event):

* calls, final rows: ``<call>.v<version>.final.parquet``; a final row with a scorecard first
  writes its answers to ``scorecard_answers/…/<call>.v<version>.parquet`` (so they are durable
  before the row, and so before its offsets are acknowledged)
* calls, live rows: ``<call>.v<version>.live.o<last_offset>.parquet`` (state after that offset)
* transcripts: ``<call>.<channel>.<start_ms>.parquet``
* quarantine: ``<table>.<row key>.parquet``, the key being the row's file name in its table
* dead letters: ``<topic>.p<partition>.o<offset>.<stage>.<reason>.parquet``, or with a content
  hash when the letter has no source offset (e.g. a sequence gap).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from schemas.records import (
    CallRow,
    DeadLetter,
    OffsetAck,
    QuarantinedRow,
    QuarantineWithAck,
    RowWithAck,
    ScorecardAnswerRow,
    Transcript,
    dead_letter,
)
from schemas.tables import (
    CALLS,
    DEAD_LETTERS,
    QUARANTINE,
    SCORECARD_ANSWERS,
    TABLES,
    TRANSCRIPTS,
    Table,
    from_arrow_row,
    to_arrow_value,
)
from transforms.io.durable import replace_atomically

_NS: Final = "callqa.sink"
STAGE: Final = "sink"
DEAD_LETTER_TAG: Final = "dead_letter"
WRITTEN_TAG: Final = "written"
_MAX_NAME: Final = 120


def safe_name(text: str) -> str:
    """A file-name-safe, reversible rendering of ``text`` (hashed when too long)."""
    quoted = urllib.parse.quote(text, safe="-_")
    if len(quoted) <= _MAX_NAME:
        return quoted
    return quoted[:80] + "~" + hashlib.sha1(text.encode()).hexdigest()[:16]


def time_partition(epoch_ms: int | None) -> str:
    """``dt=YYYY-MM-DD/hour=HH`` (UTC) of an event time."""
    if epoch_ms is None:
        return "dt=unknown/hour=unknown"
    at = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return at.strftime("dt=%Y-%m-%d/hour=%H")


def call_file(row: CallRow) -> str:
    kind = "final" if row.is_final else f"live.o{row.last_offset}"
    return f"{time_partition(row.start_ms)}/{safe_name(row.call_id)}.v{row.version}.{kind}.parquet"


def answers_file(row: CallRow) -> str:
    return f"{time_partition(row.start_ms)}/{safe_name(row.call_id)}.v{row.version}.parquet"


def scorecard_answer_rows(row: CallRow) -> list[ScorecardAnswerRow]:
    """The ``scorecard_answers`` rows of a scored final call row (none otherwise)."""
    card = row.scorecard
    if card is None or not row.is_final:
        return []
    return [
        ScorecardAnswerRow(
            call_id=row.call_id,
            version=row.version,
            call_start_ms=row.start_ms,
            scorecard=card.scorecard,
            question_id=a.question_id,
            passed=a.passed,
            points=a.points,
            potential=a.potential,
            evidence=a.evidence,
            evidence_ms=a.evidence_ms,
        )
        for a in card.answers
    ]


def dead_letter_file(dl: DeadLetter) -> str:
    if dl.offset is not None:
        name = f"{safe_name(dl.topic or '-')}.p{dl.partition}.o{dl.offset}.{dl.stage}.{dl.reason}"
    else:
        digest = hashlib.sha1(repr(tuple(dl)).encode()).hexdigest()[:16]
        name = f"{dl.stage}.{dl.reason}.{safe_name(dl.call_id or '-')}.{digest}"
    return f"{time_partition(dl.event_time_ms)}/{name}.parquet"


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
    name = f"{safe_name(t.call_id)}.{t.channel}.{t.start_ms}.parquet"
    return f"{time_partition(t.start_ms)}/{name}"


def _unpack_transcript(element: Transcript) -> tuple[Any, tuple[OffsetAck, ...]]:
    return element, ()


def quarantine_file(q: QuarantinedRow) -> str:
    return f"{time_partition(q.event_time_ms)}/{safe_name(q.table)}.{q.row_key}.parquet"


def _unpack_quarantine(element: QuarantineWithAck) -> tuple[Any, tuple[OffsetAck, ...]]:
    return element.row, element.acks


_FILE_NAMERS: Final[dict[str, Callable[[Any], str]]] = {
    CALLS.name: call_file,
    DEAD_LETTERS.name: dead_letter_file,
    TRANSCRIPTS.name: transcript_file,
    QUARANTINE.name: quarantine_file,
}
_UNPACKERS: Final[dict[str, Callable[[Any], tuple[Any, tuple[OffsetAck, ...]]]]] = {
    CALLS.name: _unpack_call,
    DEAD_LETTERS.name: _unpack_dead_letter,
    TRANSCRIPTS.name: _unpack_transcript,
    QUARANTINE.name: _unpack_quarantine,
}


def row_and_acks(table_name: str, element: Any) -> tuple[Any, tuple[OffsetAck, ...]]:
    """What ``WriteTable(table)`` writes of ``element``, and the acks it releases after."""
    return _UNPACKERS[table_name](element)


def row_file_name(table_name: str, row: Any) -> str:
    """The file name (no partition directories) of ``row`` in its table."""
    return _FILE_NAMERS[table_name](row).rsplit("/", 1)[-1]


def write_rows_file(path: Path, table: Table, rows: list[Any]) -> None:
    """Write ``rows`` to ``path`` atomically (temp file in the same directory, then rename)."""
    columns = {
        name: [to_arrow_value(getattr(r, name)) for r in rows] for name in table.record_type._fields
    }
    arrow = pa.Table.from_pydict(columns, schema=table.schema)
    replace_atomically(path, lambda tmp: pq.write_table(arrow, tmp, compression="zstd"))


def read_rows_file(path: Path, table: Table) -> list[Any]:
    return [from_arrow_row(table.record_type, r) for r in pq.read_table(path).to_pylist()]


class WriteDecision(NamedTuple):
    """What a sink does with a row whose key may be stored already (``resolve_write``)."""

    store: bool  # write the row (its key is not stored yet)
    flows_on: Any | None  # the row downstream stages count on; None: a conflict
    conflict: DeadLetter | None  # a final row that differs from the stored one


def resolve_write(table_name: str, row: Any, existing: Any | None) -> WriteDecision:
    """The warehouse's write-once rule, for both sinks. ``existing``: the row stored under
    ``row``'s key (``row_file_name``), if any. A stored transcript stands and flows on in
    place of the replayed one (a replay may decode differently; what was published, and
    scored, stands); a different final call row never replaces the stored one: it becomes
    a ``conflicting_final_row`` dead letter (its offsets are done: the stored row covers the
    call); any other stored key is the same row again, a no-op."""
    if existing is None:
        return WriteDecision(True, row, None)
    if table_name == TRANSCRIPTS.name:
        return WriteDecision(False, existing, None)
    if getattr(row, "is_final", False) and existing != row:
        return WriteDecision(False, None, conflicting_final(row, existing))
    return WriteDecision(False, row, None)


def conflicting_final(row: CallRow, existing: CallRow) -> DeadLetter:
    return dead_letter(
        STAGE,
        "conflicting_final_row",
        "write_once",
        f"final row v{row.version} of call {row.call_id} exists with other content "
        f"({existing.chunk_count} chunks, offsets {existing.first_offset}.."
        f"{existing.last_offset}); kept it and dropped the new one ({row.chunk_count} "
        f"chunks, offsets {row.first_offset}..{row.last_offset})",
        call_id=row.call_id,
        event_time_ms=row.start_ms,
        topic=row.source_topic,
        partition=row.source_partition,
    )


class WriteRowFilesFn(beam.DoFn):
    """Writes each row to its deterministic file; then outputs the row's ``OffsetAck`` if any.

    Input: ``RowWithAck`` (calls), a ``Transcript``, a ``DeadLetter``, a ``QuarantineWithAck``.
    Transcripts are write-once (a replayed one is replaced by the stored one). Final call rows
    are write-once: rewriting identical content is a no-op; a *different* row under the same
    (call, version) — a chunk of a call that expired before a restart, say — never replaces
    the published one: it becomes a ``conflicting_final_row`` dead letter (tagged output).
    """

    def __init__(self, table_name: str, root: str, emit_written: bool = False) -> None:
        self._table_name = table_name
        self._root = root
        self._emit_written = emit_written
        self.files_written = Metrics.counter(_NS, f"{table_name}_files_written")

    def setup(self) -> None:
        self._table = {t.name: t for t in TABLES}[self._table_name]
        self._namer = _FILE_NAMERS[self._table_name]
        self._unpack = _UNPACKERS[self._table_name]

    def process(self, element: Any) -> Iterator[Any]:
        row, acks = self._unpack(element)
        path = Path(self._root) / self._table.name / self._namer(row)
        # only write-once rows are read back: any other row is rewritten as it is
        write_once = getattr(row, "is_final", False) or self._table.name == TRANSCRIPTS.name
        existing = read_rows_file(path, self._table)[0] if write_once and path.exists() else None
        decision = resolve_write(self._table.name, row, existing)
        if decision.conflict is not None:
            Metrics.counter(_NS, "final_row_conflicts").inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, decision.conflict)
            yield from acks
            return
        if self._table.name == CALLS.name:
            # Rewritten even when the row exists (same content): heals a crash between the two.
            self._write_answers(row)
        if decision.store:
            write_rows_file(path, self._table, [row])
            self.files_written.inc()
        yield from acks  # only now that the row is durable
        if self._emit_written:
            yield beam.pvalue.TaggedOutput(WRITTEN_TAG, decision.flows_on)

    def _write_answers(self, row: CallRow) -> None:
        answers = scorecard_answer_rows(row)
        if answers:
            where = Path(self._root) / SCORECARD_ANSWERS.name / answers_file(row)
            write_rows_file(where, SCORECARD_ANSWERS, answers)


class WriteTable(beam.PTransform):
    """Rows → Parquet files under ``<root>/<table>/``.

    Outputs ``acks`` (OffsetAck of what is durable), ``dead_letter`` (write conflicts) and,
    with ``emit_written``, ``written``: each row once its file is durable (what downstream
    stages may count on after a crash).
    """

    def __init__(self, table: Table, root: str, emit_written: bool = False) -> None:
        super().__init__()
        self._table = table
        self._root = root
        self._emit_written = emit_written

    def expand(self, rows: beam.PCollection[Any]) -> beam.pvalue.DoOutputsTuple:
        tags = (DEAD_LETTER_TAG, WRITTEN_TAG) if self._emit_written else (DEAD_LETTER_TAG,)
        return rows | f"Write_{self._table.name}" >> beam.ParDo(
            WriteRowFilesFn(self._table.name, self._root, self._emit_written)
        ).with_outputs(*tags, main="acks")
