"""``CommitToIceberg``: rows → one Iceberg commit per table per interval, carrying the offsets
it makes durable.

One committer per table (its rows are keyed by the table's name): it buffers what it is given
and, every ``commit_interval_s`` or once ``max_rows`` are waiting, appends them in one commit
(one data file per partition the rows fall in, never one per row). A final call row's
scorecard answers go to ``scorecard_answers`` in a commit just before the row's.

The commit's snapshot summary holds the delivery ledger (``callqa.ledger``): per topic and
partition, the frontier (every offset below it is durable) and the durable ranges above it,
as this committer knows them: its own acknowledgements merged with the other tables' latest
ledgers, read just before it commits. Iceberg has no multi-table transaction, so the ledger of
the warehouse is the union over the tables of their latest summaries (``warehouse_ledger``);
each table's own acknowledgements are always in its own latest summary, so the union misses
none. The acknowledgements are emitted after the commit, as the Parquet sink does after its
rename, for ``CommitOffsets``.

Rows are written once. Before a commit the committer reads, from the days the batch falls in,
the rows of the batch's calls, and keys them as the Parquet sink names its files
(``row_file_name``): a row already there is not written again (a replay after a restart), a
stored transcript flows on in place of a re-decoded one, and a final call row whose key holds
other content stays as published (the new one becomes a ``conflicting_final_row`` dead
letter). Outputs: the acknowledgements (main), ``dead_letter`` and, with ``emit_written``,
``written``: each row once it is committed.

Data files of a commit that never happened (the job died between writing and committing)
are in no snapshot: no reader sees them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.iceberg import BY_NAME, EVENT_TS, to_arrow_table
from schemas.records import Checkpoint, OffsetAck
from schemas.tables import CALLS, DEAD_LETTERS, SCORECARD_ANSWERS, from_arrow_row
from transforms.io.commit import advance
from transforms.io.iceberg import CatalogConfig, append, ensure_tables, retrying_conflicts
from transforms.io.parquet_sink import (
    DEAD_LETTER_TAG,
    WRITTEN_TAG,
    resolve_write,
    row_and_acks,
    row_file_name,
    scorecard_answer_rows,
)

_NS: Final = "callqa.iceberg"
_DAY_MS: Final = 86_400_000
#: The snapshot-summary property that holds the delivery ledger.
LEDGER_PROPERTY: Final = "callqa.ledger"
Ledger = dict[tuple[str, int], Checkpoint]


def merge_ledgers(ledgers: Iterable[Ledger], acks: Iterable[OffsetAck] = ()) -> Ledger:
    """One ledger from several and new acknowledgements: per partition the highest frontier,
    every durable range, and the frontier moved over those that touch it. A partition no
    ledger has yet starts at frontier 0 (never past an offset not known to be durable)."""
    merged: dict[tuple[str, int], list[tuple[int, int]]] = {}
    frontiers: dict[tuple[str, int], int] = {}
    for ledger in ledgers:
        for key, cp in ledger.items():
            frontiers[key] = max(frontiers.get(key, cp.frontier), cp.frontier)
            merged.setdefault(key, []).extend(cp.acked)
    for ack in acks:
        key = (ack.topic, ack.partition)
        merged.setdefault(key, []).extend(ack.ranges)
    out: Ledger = {}
    for key, ranges in merged.items():
        frontier = frontiers.get(key, 0)
        out[key] = advance(Checkpoint(frontier, ()), ranges)
    return out


def ledger_to_summary(ledger: Ledger) -> str:
    return json.dumps(
        {
            f"{topic}:{partition}": {"frontier": cp.frontier, "acked": [list(r) for r in cp.acked]}
            for (topic, partition), cp in sorted(ledger.items())
        },
        separators=(",", ":"),
    )


def ledger_from_summary(text: str | None) -> Ledger:
    if not text:
        return {}
    out: Ledger = {}
    for key, entry in json.loads(text).items():
        topic, _, partition = key.rpartition(":")
        ranges = tuple((int(s), int(e)) for s, e in entry["acked"])
        out[(topic, int(partition))] = Checkpoint(int(entry["frontier"]), ranges)
    return out


def table_ledger(tbl: Any) -> Ledger:
    """The ledger in a table's current snapshot (empty before its first commit)."""
    snapshot = tbl.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return {}
    return ledger_from_summary(snapshot.summary.additional_properties.get(LEDGER_PROPERTY))


def warehouse_ledger(tables: Iterable[Any]) -> Ledger:
    """The warehouse's ledger: the union of the tables' latest ones."""
    return merge_ledgers(table_ledger(t) for t in tables)


@dataclass(frozen=True)
class IcebergSinkConfig:
    catalog: CatalogConfig
    commit_interval_s: float = 10.0
    max_rows: int = 10_000  # commit early once this many rows wait

    def __post_init__(self) -> None:
        if self.commit_interval_s <= 0 or self.max_rows < 1:
            raise ValueError("commit_interval_s must be > 0 and max_rows >= 1")


class CommitRowsFn(beam.DoFn):
    """Stateful over ``(table name, element)``; element as ``WriteTable`` takes it. Outputs the
    ``OffsetAck``s a commit made durable, after the commit.

    Metrics (namespace ``callqa.iceberg``): ``<table>_commits``, ``<table>_rows``."""

    BUFFER = BagStateSpec("buffer", PickleCoder())
    COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())
    FLUSH = TimerSpec("flush", TimeDomain.REAL_TIME)

    def __init__(self, cfg: IcebergSinkConfig, emit_written: bool = False) -> None:
        self._cfg = cfg
        self._emit_written = emit_written
        self._tables: dict[str, Any] = {}

    def setup(self) -> None:
        self._tables = ensure_tables(self._cfg.catalog)

    def process(
        self,
        element: tuple[str, Any],
        buffer: Any = beam.DoFn.StateParam(BUFFER),
        count: Any = beam.DoFn.StateParam(COUNT),
        flush: Any = beam.DoFn.TimerParam(FLUSH),
    ) -> Iterator[Any]:
        table_name, item = element
        waiting = count.read() or 0
        if waiting == 0:
            flush.set(Timestamp.now() + Duration(seconds=self._cfg.commit_interval_s))
        buffer.add((table_name, item))
        count.write(waiting + 1)
        if waiting + 1 >= self._cfg.max_rows:
            yield from self._commit(buffer, count)

    @on_timer(FLUSH)
    def on_flush(
        self,
        buffer: Any = beam.DoFn.StateParam(BUFFER),
        count: Any = beam.DoFn.StateParam(COUNT),
    ) -> Iterator[Any]:
        yield from self._commit(buffer, count)

    def _commit(self, buffer: Any, count: Any) -> Iterator[Any]:
        items = list(buffer.read())
        buffer.clear()
        count.clear()
        if not items:
            return
        table_name = items[0][0]
        tbl = self._tables[table_name].refresh()
        unpacked = [row_and_acks(table_name, item) for _, item in items]
        stored = stored_rows(tbl, table_name, [row for row, _ in unpacked])
        new_rows: list[Any] = []
        written: list[Any] = []
        acks: list[OffsetAck] = []
        for row, row_acks in unpacked:
            acks.extend(row_acks)
            key = row_file_name(table_name, row)
            decision = resolve_write(table_name, row, stored.get(key))
            if decision.store:
                stored[key] = row  # twice in one batch: written once
                new_rows.append(row)
            if decision.conflict is not None:
                Metrics.counter(_NS, "final_row_conflicts").inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, decision.conflict)
            else:
                written.append(decision.flows_on)
        if new_rows or acks:
            if table_name == CALLS.name:  # the answers are durable before their rows
                answers = [a for r in new_rows for a in scorecard_answer_rows(r)]
                if answers:
                    self._append(SCORECARD_ANSWERS.name, answers, [])
            self._append(table_name, new_rows, acks)
        yield from acks
        if self._emit_written:
            for row in written:
                yield beam.pvalue.TaggedOutput(WRITTEN_TAG, row)

    def _append(self, table_name: str, rows: list[Any], acks: list[OffsetAck]) -> None:
        data = to_arrow_table(BY_NAME[table_name], rows)

        def commit() -> int:
            others = (t.refresh() for name, t in self._tables.items() if name != table_name)
            tbl = self._tables[table_name].refresh()
            ledger = merge_ledgers([table_ledger(tbl), *map(table_ledger, others)], acks)
            summary = {LEDGER_PROPERTY: ledger_to_summary(ledger)} if ledger else {}
            return append(tbl, data, summary)

        retrying_conflicts(commit)
        Metrics.counter(_NS, f"{table_name}_commits").inc()
        Metrics.counter(_NS, f"{table_name}_rows").inc(len(rows))


def stored_rows(tbl: Any, table_name: str, rows: list[Any]) -> dict[str, Any]:
    """The rows of ``tbl`` that could share a key with ``rows`` (same calls, same days), by
    key (``row_file_name``)."""
    import pyiceberg.expressions

    ex: Any = pyiceberg.expressions  # its pydantic signatures confuse mypy: (term, literal)
    table = BY_NAME[table_name]
    if tbl.current_snapshot() is None or not rows:
        return {}
    ids = sorted({r.call_id for r in rows if r.call_id is not None})
    by_call = ex.Or(ex.In("call_id", ids), ex.IsNull("call_id")) if ids else ex.IsNull("call_id")
    times = [table.event_ms(r) for r in rows]
    if None not in times:
        days = [ms // _DAY_MS for ms in times if ms is not None]
        start, end = min(days) * _DAY_MS * 1000, (max(days) + 1) * _DAY_MS * 1000
        when = ex.And(ex.GreaterThanOrEqual(EVENT_TS, start), ex.LessThan(EVENT_TS, end))
        by_call = ex.And(by_call, when)
    found = tbl.scan(row_filter=by_call).to_arrow().drop([EVENT_TS]).to_pylist()
    records = (from_arrow_row(table.table.record_type, r) for r in found)
    return {row_file_name(table_name, r): r for r in records}


class CommitToIceberg(beam.PTransform):
    """Rows of one table (as ``WriteTable`` takes them) → Iceberg commits. Outputs as
    ``WriteTable``'s: ``acks`` (what each commit made durable), ``dead_letter`` (write-once
    conflicts) and, with ``emit_written``, ``written``."""

    def __init__(self, table_name: str, cfg: IcebergSinkConfig, emit_written: bool = False) -> None:
        super().__init__()
        self._table_name = table_name
        self._cfg = cfg
        self._emit_written = emit_written

    def expand(self, rows: beam.PCollection[Any]) -> beam.pvalue.DoOutputsTuple:
        name = self._table_name
        tags = (DEAD_LETTER_TAG, WRITTEN_TAG) if self._emit_written else (DEAD_LETTER_TAG,)
        return (
            rows
            | f"KeyBy_{name}" >> beam.Map(lambda r: (name, r))
            | f"Commit_{name}"
            >> beam.ParDo(CommitRowsFn(self._cfg, self._emit_written)).with_outputs(
                *tags, main="acks"
            )
        )


def read_ledger(cfg: CatalogConfig) -> Ledger:
    """The warehouse's delivery ledger, from the tables' latest snapshots."""
    return warehouse_ledger(ensure_tables(cfg).values())


def seed_ledger(cfg: CatalogConfig, starts: Ledger) -> None:
    """Put the source's start positions of partitions the ledger lacks into the warehouse: an
    empty commit whose summary is the ledger with them, so that a restart that has only the
    warehouse (no checkpoint files) starts there, not at offset 0."""
    tables = ensure_tables(cfg)

    def commit() -> int:
        current = [t.refresh() for t in tables.values()]
        ledger = merge_ledgers([*map(table_ledger, current), starts])
        empty = to_arrow_table(BY_NAME[DEAD_LETTERS.name], [])
        summary = {LEDGER_PROPERTY: ledger_to_summary(ledger)}
        return append(tables[DEAD_LETTERS.name], empty, summary)

    retrying_conflicts(commit)
