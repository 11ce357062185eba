"""``ValidateRows``: a table's expectation suite (``schemas.expectations``) as a transform.

Rows that meet every expectation continue unchanged; rows that fail one become a
``QuarantinedRow`` naming the failed expectations, carried with the row's offset acks so that a
quarantined call still releases its source offsets once the quarantine record is durable.

GX costs a fixed few milliseconds per expectation and run, whatever the number of rows, so rows
are checked in batches: per bundle in bounded runs (``ValidateRowsFn``), per ``window_s`` of
processing time in a stream (``ValidateWindowFn``), at most ``max_batch_rows`` rows a run.

Call rows are checked together with their ``scorecard_answers`` rows: an answer that fails its
suite holds back the call row (its answers are written with it, so neither table gets one
without the other), with the answer's failures as ``scorecard_answers.<id>``. Quarantine records
are checked too, but they are the end of the line: one that fails is still written, with its
own failures added as ``quarantine.<id>``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, NamedTuple

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Duration, Timestamp
from apache_beam.utils.windowed_value import PaneInfo, WindowedValue

from schemas.expectations import SUITE_VERSION, FrameValidator, frame_of, suite_for
from schemas.records import DeadLetter, QuarantinedRow, QuarantineWithAck, RowWithAck, dead_letter
from schemas.tables import (
    CALLS,
    DEAD_LETTERS,
    QUARANTINE,
    SCORECARD_ANSWERS,
    TRANSCRIPTS,
    Table,
    to_arrow_value,
)
from transforms.io.parquet_sink import row_and_acks, row_file_name, scorecard_answer_rows

_NS: Final = "callqa.validate"
_LOG = logging.getLogger(__name__)
VALID_TAG: Final = "valid"
QUARANTINE_TAG: Final = "quarantine"
#: Suffix of the validation key of live call rows (``validation_key``).
LIVE_KEY: Final = "/live"
DEFAULT_MAX_BATCH_ROWS: Final = 500  # bounds a bundle's DataFrame; GX cost is per run, not row


_CHILD_VALIDATORS: dict[str, FrameValidator] = {}  # in the validation child process only


def _child_prepare(table_name: str) -> FrameValidator:
    if table_name not in _CHILD_VALIDATORS:
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        _CHILD_VALIDATORS[table_name] = FrameValidator(table_name)
    return _CHILD_VALIDATORS[table_name]


def _child_validate(table_name: str, df: Any) -> list[frozenset[str]]:
    return _child_prepare(table_name).validate(df)


class _SharedChild:
    """The one validation child process of this worker process, shared by its validating
    DoFns (reference-counted; started by the first, stopped by the last)."""

    _lock = threading.Lock()
    _pool: Any = None
    _users = 0

    @staticmethod
    def _start() -> Any:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    @classmethod
    def acquire(cls) -> Any:
        with cls._lock:
            if cls._pool is None:
                cls._pool = cls._start()
            cls._users += 1
            return cls._pool

    @classmethod
    def replace(cls, broken: Any) -> Any:
        """A new child for one whose process died (BrokenProcessPool); every user moves over."""
        with cls._lock:
            if cls._pool is broken:
                cls._pool = cls._start()
            return cls._pool

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0 and cls._pool is not None:
                cls._pool.shutdown(wait=False, cancel_futures=True)
                cls._pool = None


class OutOfProcessValidator:
    """A table's ``FrameValidator`` in a child process: one child per worker process, shared by
    every validating DoFn in it; each table's GX context is built there once.

    Why: GX spends 30-300 ms of pure Python per run. In the runner's SDK worker it holds the
    GIL that long, every bundle of the job stalls meanwhile, and Prism 2.77 then splits bundles
    of the per-call aggregation, which lost chunks (the 20-call streaming test: 1 of 2 runs
    under load with GX in the worker, 0 of 2 without it). In a child only the DataFrame and
    the failed ids cross the pipe."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name
        self.specs = tuple(suite_for(table_name))
        self._pool = _SharedChild.acquire()
        # start the child and build the suite now, not on the first batch
        self._pool.submit(_child_prepare, table_name).add_done_callback(lambda f: f.exception())

    def validate(self, df: Any) -> list[frozenset[str]]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return list(self._pool.submit(_child_validate, self.table_name, df).result(300))
        except BrokenProcessPool:
            _LOG.warning("the validation child died; starting a new one")
            self._pool = _SharedChild.replace(self._pool)
            return list(self._pool.submit(_child_validate, self.table_name, df).result(300))

    def close(self) -> None:
        _SharedChild.release()


def _exiting(exc: BaseException) -> bool:
    """The worker process is shutting down (a stop signal): the validation pool refuses work."""
    return isinstance(exc, RuntimeError) and "interpreter shutdown" in str(exc)


class _TableRules(NamedTuple):
    event_time_ms: Callable[[Any], int | None]
    call_id: Callable[[Any], str | None]


_RULES: Final[dict[str, _TableRules]] = {
    CALLS.name: _TableRules(lambda r: r.start_ms, lambda r: r.call_id),
    TRANSCRIPTS.name: _TableRules(lambda t: t.start_ms, lambda t: t.call_id),
    DEAD_LETTERS.name: _TableRules(lambda d: d.event_time_ms, lambda d: d.call_id),
    QUARANTINE.name: _TableRules(lambda q: q.event_time_ms, lambda q: q.call_id),
}
#: Tables checked along with a table's rows (rows derived from them, written with them).
_COMPANIONS: Final[dict[str, tuple[str, Callable[[Any], list[Any]]]]] = {
    CALLS.name: (SCORECARD_ANSWERS.name, scorecard_answer_rows),
}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": strict JSON has no such numbers
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def row_json(row: Any) -> str:
    """A record as one line of strict JSON, in field order."""
    value = {name: to_arrow_value(getattr(row, name)) for name in row._fields}
    return json.dumps(_json_safe(value), ensure_ascii=False, allow_nan=False, default=str)


def quarantine(
    table_name: str, element: Any, failed: frozenset[str] | set[str]
) -> QuarantineWithAck:
    """The quarantine record of one input element (``RowWithAck`` for calls, else the row)."""
    rules = _RULES[table_name]
    # A dead letter's own sink derives its ack; quarantined, the letter must carry it instead.
    row, acks = row_and_acks(table_name, element)
    return QuarantineWithAck(
        QuarantinedRow(
            table=table_name,
            row_key=row_file_name(table_name, row).removesuffix(".parquet"),
            failed_expectations=tuple(sorted(failed)),
            suite_version=SUITE_VERSION,
            row_json=row_json(row),
            call_id=rules.call_id(row),
            event_time_ms=rules.event_time_ms(row),
        ),
        acks,
    )


class _Pending(NamedTuple):
    element: Any
    timestamp: Timestamp
    window: BoundedWindow
    pane: PaneInfo


class ValidateRowsFn(beam.DoFn):
    """Buffers a bundle's rows, validates them in one GX run, routes each to its output.

    Main output: the input elements that passed, unchanged. Tagged ``quarantine``:
    ``QuarantineWithAck``. Each output keeps its input's timestamp, window and pane. For the
    ``quarantine`` table itself every record goes to the main output: one that failed its
    suite carries those failures as ``quarantine.<id>`` (counted ``quarantine_rows_invalid``).

    A GX failure (``SuiteError`` or anything else raised while checking) passes the batch on
    as valid, logs it and counts ``<table>_validation_errors`` (batches) and
    ``<table>_rows_unchecked`` (rows). Failing open is deliberate: the suite is a second
    opinion on rows the producing stages already built to the Arrow schema, and a broken
    checker (a GX upgrade, a bad expectation) must not stop the warehouse. Quarantining
    every row instead would empty the tables until the checker is fixed, while the counter
    pages someone either way.
    """

    def __init__(self, table_name: str, max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS) -> None:
        if table_name not in _RULES:
            raise ValueError(
                f"no validation rules for table {table_name!r}; known: {sorted(_RULES)}"
            )
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
        self._table_name = table_name
        self._max_batch_rows = max_batch_rows
        self.rows_valid = Metrics.counter(_NS, f"{table_name}_rows_valid")
        self.rows_quarantined = Metrics.counter(_NS, f"{table_name}_rows_quarantined")
        self.rows_unchecked = Metrics.counter(_NS, f"{table_name}_rows_unchecked")
        self.validation_errors = Metrics.counter(_NS, f"{table_name}_validation_errors")
        self.batch_rows = Metrics.distribution(_NS, f"{table_name}_batch_rows")
        self.validate_ms = Metrics.distribution(_NS, f"{table_name}_validate_ms")
        self.rows_invalid = Metrics.counter(_NS, f"{table_name}_rows_invalid")

    def _tables(self) -> list[str]:
        """This table, then its companion (checked with it), if any."""
        companion = _COMPANIONS.get(self._table_name)
        return [self._table_name, *([companion[0]] if companion else [])]

    def setup(self) -> None:
        try:
            import importlib.util

            if importlib.util.find_spec("great_expectations") is None:  # not imported here
                raise ImportError("No module named 'great_expectations'")
            self._validators: dict[str, Any] = {t: OutOfProcessValidator(t) for t in self._tables()}
        except ImportError as exc:
            raise RuntimeError(
                f"ValidateRows({self._table_name}) needs great_expectations: install the "
                f"'qa' extra (pip install 'callqa[qa]') in the worker image ({exc})"
            ) from exc
        self._failed = {
            self._failure_id(table, spec.id): Metrics.counter(_NS, f"{table}_failed_{spec.id}")
            for table, validator in self._validators.items()
            for spec in validator.specs
        }
        self._buffer: list[_Pending] = []

    def _failure_id(self, table: str, spec_id: str) -> str:
        """How a failure is named in a quarantine record: bare for the row's own table."""
        return spec_id if table == self._table_name else f"{table}.{spec_id}"

    def start_bundle(self) -> None:
        self._buffer = []

    def teardown(self) -> None:
        for validator in getattr(self, "_validators", {}).values():
            close = getattr(validator, "close", None)
            if close is not None:
                close()
        self._validators = {}

    def process(
        self,
        element: Any,
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[Any]:
        self._buffer.append(_Pending(element, timestamp, window, pane))
        if len(self._buffer) >= self._max_batch_rows:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._flush()

    def _check(self, pending: list[_Pending]) -> list[frozenset[str]] | None:
        """Failed expectation ids per row; None when the checker itself failed."""
        start = time.perf_counter()
        try:
            rows = [row_and_acks(self._table_name, p.element)[0] for p in pending]
            table = self._table_name
            own = self._validators[table].validate(frame_of(table, rows))
            failed = [set(f) for f in own]
            if table in _COMPANIONS:
                name, derive = _COMPANIONS[table]
                owners = [(i, d) for i, row in enumerate(rows) for d in derive(row)]
                if owners:
                    derived = [d for _, d in owners]
                    found = self._validators[name].validate(frame_of(name, derived))
                    for (i, _), ids in zip(owners, found, strict=True):
                        failed[i].update(self._failure_id(name, x) for x in ids)
        except Exception as exc:
            if _exiting(exc):  # the job is being stopped: its rows are read again at restart
                _LOG.warning("validating %d %s rows stopped: the process is exiting",
                             len(pending), self._table_name)  # fmt: skip
                return None
            _LOG.exception(
                "validating %d %s rows failed; passing them on unchecked",
                len(pending),
                self._table_name,
            )
            self.validation_errors.inc()
            self.rows_unchecked.inc(len(pending))
            return None
        self.validate_ms.update(round(1000 * (time.perf_counter() - start)))
        self.batch_rows.update(len(pending))
        return [frozenset(f) for f in failed]

    def _flush(self) -> Iterator[Any]:
        pending, self._buffer = self._buffer, []
        yield from self._route(pending)

    def _route(self, pending: list[_Pending]) -> Iterator[Any]:
        """Check ``pending`` in one GX run and send each row to its output."""
        if not pending:
            return
        checked = self._check(pending)
        no_failures: frozenset[str] = frozenset()
        failures = [no_failures] * len(pending) if checked is None else checked
        for p, failed in zip(pending, failures, strict=True):
            windows = (p.window,)
            for spec_id in failed:
                self._failed[spec_id].inc()
            if failed and self._table_name == QUARANTINE.name:
                self.rows_invalid.inc()  # the end of the line: written, with its own failures
                held: QuarantineWithAck = p.element
                own = tuple(f"{QUARANTINE.name}.{x}" for x in sorted(failed))
                record = held._replace(
                    row=held.row._replace(failed_expectations=held.row.failed_expectations + own)
                )
                yield WindowedValue(record, p.timestamp, windows, p.pane)
            elif failed:
                self.rows_quarantined.inc()
                record = quarantine(self._table_name, p.element, failed)
                yield beam.pvalue.TaggedOutput(
                    QUARANTINE_TAG, WindowedValue(record, p.timestamp, windows, p.pane)
                )
            else:
                if checked is not None:
                    self.rows_valid.inc()
                yield WindowedValue(p.element, p.timestamp, windows, p.pane)


class ValidateWindowFn(ValidateRowsFn):
    """Streaming: the rows of ``window_s`` of processing time checked in one GX run.

    A stream's bundles hold a row or two, and a GX run costs the same for one row as for
    hundreds, so validating per bundle spent most of the job's CPU at a few calls (profile:
    docs/design.md). Input ``(key, element)`` with one key per table: rows wait in state until
    ``window_s`` after the first of them, or until ``max_batch_rows`` are in. Outputs are as
    ``ValidateRowsFn``'s, each with its own row's timestamp; the flush timer holds the
    watermark at the earliest waiting row's, so nothing downstream sees a row as late."""

    PENDING = BagStateSpec("pending", PickleCoder())
    DUE = ReadModifyWriteStateSpec("due", PickleCoder())  # _Due of the waiting rows
    FLUSH = TimerSpec("flush", TimeDomain.REAL_TIME)

    def __init__(
        self,
        table_name: str,
        window_s: float,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        live_window_s: float | None = None,
    ) -> None:
        super().__init__(table_name, max_batch_rows)
        if window_s <= 0 or (live_window_s is not None and live_window_s <= 0):
            raise ValueError(
                f"window_s and live_window_s must be > 0, got {window_s}, {live_window_s}"
            )
        self._window_s = window_s
        self._live_window_s = window_s if live_window_s is None else live_window_s

    def process(  # type: ignore[override]
        self,
        element: tuple[str, Any],
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
        pending: Any = beam.DoFn.StateParam(PENDING),
        due: Any = beam.DoFn.StateParam(DUE),
        flush: Any = beam.DoFn.TimerParam(FLUSH),
    ) -> Iterator[Any]:
        pending.add(_Pending(element[1], timestamp, window, pane))
        waiting: _Due | None = due.read()
        if waiting is None:
            window_s = self._live_window_s if element[0].endswith(LIVE_KEY) else self._window_s
            waiting = _Due(Timestamp.now() + Duration(seconds=window_s), timestamp, 0)
            flush.set(waiting.fire_at)  # holds the watermark at this row's timestamp
        elif timestamp < waiting.hold:
            waiting = waiting._replace(hold=timestamp)
            flush.set(waiting.fire_at)  # the same time, the hold at the earlier row
        waiting = waiting._replace(rows=waiting.rows + 1)
        if waiting.rows >= self._max_batch_rows:
            flush.clear()
            yield from self._take(pending, due)
        else:
            due.write(waiting)

    @on_timer(FLUSH)
    def on_flush(
        self,
        pending: Any = beam.DoFn.StateParam(PENDING),
        due: Any = beam.DoFn.StateParam(DUE),
    ) -> Iterator[Any]:
        yield from self._take(pending, due)

    def _take(self, pending: Any, due: Any) -> Iterator[Any]:
        rows = list(pending.read())
        pending.clear()
        due.clear()
        yield from self._route(rows)


def validation_key(row: Any, table_name: str) -> tuple[str, Any]:
    """The key a row waits under in ``ValidateWindowFn``: its table's, or for a live call row
    (an interim snapshot a later row replaces) the table's with ``LIVE_KEY``, so that live rows
    can wait longer than final ones."""
    live = isinstance(row, RowWithAck) and not row.row.is_final
    return (table_name + LIVE_KEY if live else table_name), row


class _Due(NamedTuple):
    fire_at: Timestamp  # processing time of the flush
    hold: Timestamp  # the earliest waiting row's timestamp (the timer's watermark hold)
    rows: int


class ValidateRows(beam.PTransform):
    """Runs ``table``'s expectation suite on its rows; failing rows go to quarantine.

    Input: ``RowWithAck`` for ``CALLS`` (checked with its ``SCORECARD_ANSWERS`` rows),
    ``QuarantineWithAck`` for ``QUARANTINE``, the row record (``Transcript``, ``DeadLetter``)
    for the other tables. Outputs: ``valid`` (the inputs that passed, unchanged: feed them to
    ``WriteTable``; for ``QUARANTINE`` every input, marked when it failed) and ``quarantine``
    (``QuarantineWithAck``: write the row, then forward its acks).
    Counters in ``callqa.validate``: ``<table>_rows_valid``, ``<table>_rows_quarantined``,
    ``<table>_failed_<expectation id>``, ``<table>_validation_errors`` and
    ``<table>_rows_unchecked`` (passed on as valid because the checker failed),
    ``scorecard_answers_failed_<id>``, ``quarantine_rows_invalid``.

    Example::

        checked = rows | "ValidateCalls" >> ValidateRows(CALLS)
        checked.valid | "WriteCalls" >> WriteTable(CALLS, root)
        checked.quarantine | "WriteQuarantine" >> ...
    """

    def __init__(
        self,
        table: Table,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        window_s: float = 0.0,
        live_window_s: float | None = None,
    ) -> None:
        super().__init__()
        self._table = table
        self._max_batch_rows = max_batch_rows
        self._window_s = window_s  # > 0: one GX run per this much processing time (streaming)
        self._live_window_s = live_window_s  # live call rows (None: window_s)

    def default_label(self) -> str:
        return f"ValidateRows_{self._table.name}"  # one per table in a pipeline

    def expand(self, rows: beam.PCollection[Any]) -> beam.pvalue.DoOutputsTuple:
        element_type = {CALLS.name: RowWithAck, QUARANTINE.name: QuarantineWithAck}.get(
            self._table.name, self._table.record_type
        )
        # Its own stage: a GX run takes 30-300 ms, and on Prism 2.77 a slow bundle in the stage
        # of a stateful DoFn (the per-call aggregation) was split and lost input elements
        # (measured: 2 of 2 runs of the 20-call streaming test lost chunks; 0 of 2 with this
        # fusion break).
        name = self._table.name
        if self._window_s > 0:  # keyed state is its own stage already
            staged = rows | f"KeyForValidation_{name}" >> beam.Map(
                validation_key, name
            ).with_output_types(tuple[str, Any])
            fn: ValidateRowsFn = ValidateWindowFn(
                name, self._window_s, self._max_batch_rows, self._live_window_s
            )
        else:
            staged = rows | f"Decouple_{name}" >> beam.Reshuffle()
            fn = ValidateRowsFn(name, self._max_batch_rows)
        return staged | f"Validate_{name}" >> beam.ParDo(fn).with_output_types(
            element_type, **{QUARANTINE_TAG: QuarantineWithAck}
        ).with_outputs(QUARANTINE_TAG, main=VALID_TAG)


def quarantined_transcript(held: QuarantineWithAck) -> DeadLetter:
    """A quarantined transcript as the per-call aggregation counts it: an utterance that will
    not arrive (so the call does not wait for it). Not written to the dead-letter table: the
    quarantine table has the row."""
    q = held.row
    return dead_letter(
        "validate",
        "quarantined",
        "expectations",
        f"failed {', '.join(q.failed_expectations)}",
        call_id=q.call_id,
        event_time_ms=q.event_time_ms,
    )
