"""``ValidateRows``: a table's expectation suite (``schemas.expectations``) as a transform.

Rows that meet every expectation continue unchanged; rows that fail one become a
``QuarantinedRow`` naming the failed expectations, carried with the row's offset acks so that a
quarantined call still releases its source offsets once the quarantine record is durable.

Rows are validated per bundle (one GX run per bundle, at most ``max_batch_rows`` rows): GX costs
a fixed few milliseconds per expectation and run, whatever the number of rows.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import PaneInfo, WindowedValue

from schemas.expectations import (
    SUITE_VERSION,
    FrameValidator,
    frame_of,
    suite_for,
    validate_frame,
)
from schemas.records import DeadLetter, QuarantinedRow, QuarantineWithAck, RowWithAck
from schemas.tables import CALLS, DEAD_LETTERS, TRANSCRIPTS, Table, to_arrow_value
from transforms.parquet_sink import row_and_acks, row_file_name

_NS: Final = "callqa.validate"
_LOG = logging.getLogger(__name__)
VALID_TAG: Final = "valid"
QUARANTINE_TAG: Final = "quarantine"
DEFAULT_MAX_BATCH_ROWS: Final = 500  # bounds a bundle's DataFrame; GX cost is per run, not row


_CHILD_VALIDATOR: FrameValidator | None = None  # in the validation child process only


def _child_init(table_name: str) -> None:
    global _CHILD_VALIDATOR
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    _CHILD_VALIDATOR = FrameValidator(table_name)


def _child_validate(df: Any) -> list[frozenset[str]]:
    assert _CHILD_VALIDATOR is not None, "the validation child was not initialised"
    return _CHILD_VALIDATOR.validate(df)


class OutOfProcessValidator:
    """A ``FrameValidator`` in a child process (spawned once per DoFn instance).

    Why: GX spends 30-300 ms of pure Python per run. In the runner's SDK worker it holds the
    GIL that long, every bundle of the job stalls meanwhile, and Prism 2.77 then splits bundles
    of the per-call aggregation, which lost chunks (the 20-call streaming test: 1 of 2 runs
    under load with GX in the worker, 0 of 2 without it). In a child only the DataFrame and
    the failed ids cross the pipe."""

    def __init__(self, table_name: str) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.table_name = table_name
        self.specs = tuple(suite_for(table_name))
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_init,
            initargs=(table_name,),
        )
        self._pool.submit(int)  # start the child (and its GX import) now, not on the 1st batch

    def validate(self, df: Any) -> list[frozenset[str]]:
        return self._pool.submit(_child_validate, df).result(timeout=300)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _TableRules(NamedTuple):
    event_time_ms: Callable[[Any], int | None]
    call_id: Callable[[Any], str | None]


_RULES: Final[dict[str, _TableRules]] = {
    CALLS.name: _TableRules(lambda r: r.start_ms, lambda r: r.call_id),
    TRANSCRIPTS.name: _TableRules(lambda t: t.start_ms, lambda t: t.call_id),
    DEAD_LETTERS.name: _TableRules(lambda d: d.event_time_ms, lambda d: d.call_id),
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
    ``QuarantineWithAck``. Each output keeps its input's timestamp, window and pane.

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
        self.live_rows = Metrics.counter(_NS, f"{table_name}_live_rows_passed")
        self.validation_errors = Metrics.counter(_NS, f"{table_name}_validation_errors")
        self.batch_rows = Metrics.distribution(_NS, f"{table_name}_batch_rows")
        self.validate_ms = Metrics.distribution(_NS, f"{table_name}_validate_ms")

    def setup(self) -> None:
        try:
            import importlib.util

            if importlib.util.find_spec("great_expectations") is None:  # not imported here
                raise ImportError("No module named 'great_expectations'")
            self._validator: Any = OutOfProcessValidator(self._table_name)
        except ImportError as exc:
            raise RuntimeError(
                f"ValidateRows({self._table_name}) needs great_expectations: install the "
                f"'qa' extra (pip install 'callqa[qa]') in the worker image ({exc})"
            ) from exc
        self._failed = {
            spec.id: Metrics.counter(_NS, f"{self._table_name}_failed_{spec.id}")
            for spec in self._validator.specs
        }
        self._buffer: list[_Pending] = []

    def start_bundle(self) -> None:
        self._buffer = []

    def teardown(self) -> None:
        close = getattr(getattr(self, "_validator", None), "close", None)
        if close is not None:
            close()

    def process(
        self,
        element: Any,
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[Any]:
        if self._table_name == CALLS.name and not element.row.is_final:
            # Live rows are partial states that the final row supersedes, at one per open call
            # every live interval: a GX run per bundle of them would cost more than the whole
            # aggregation (measured ~275 ms per run), so only final rows are checked.
            self.live_rows.inc()
            yield element
            return
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
            frame = frame_of(self._table_name, rows)
            failed = validate_frame(self._table_name, frame, self._validator)
        except Exception:
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
        return failed

    def _flush(self) -> Iterator[Any]:
        pending, self._buffer = self._buffer, []
        if not pending:
            return
        checked = self._check(pending)
        no_failures: frozenset[str] = frozenset()
        failures = [no_failures] * len(pending) if checked is None else checked
        for p, failed in zip(pending, failures, strict=True):
            windows = (p.window,)
            if failed:
                self.rows_quarantined.inc()
                for spec_id in failed:
                    self._failed[spec_id].inc()
                record = quarantine(self._table_name, p.element, failed)
                yield beam.pvalue.TaggedOutput(
                    QUARANTINE_TAG, WindowedValue(record, p.timestamp, windows, p.pane)
                )
            else:
                if checked is not None:
                    self.rows_valid.inc()
                yield WindowedValue(p.element, p.timestamp, windows, p.pane)


class ValidateRows(beam.PTransform):
    """Runs ``table``'s expectation suite on its rows; failing rows go to quarantine.

    Input: ``RowWithAck`` for ``CALLS``, the row record (``Transcript``, ``DeadLetter``) for the
    other tables. Outputs: ``valid`` (the inputs that passed, unchanged: feed them to
    ``WriteTable``) and ``quarantine`` (``QuarantineWithAck``: write the row, then forward its
    acks). Counters in ``callqa.validate``: ``<table>_rows_valid``, ``<table>_rows_quarantined``,
    ``<table>_failed_<expectation id>``, ``<table>_validation_errors`` and
    ``<table>_rows_unchecked`` (passed on as valid because the checker failed),
    ``calls_live_rows_passed`` (live call rows are not checked: see ``ValidateRowsFn``).

    Example::

        checked = rows | "ValidateCalls" >> ValidateRows(CALLS)
        checked.valid | "WriteCalls" >> WriteTable(CALLS, root)
        checked.quarantine | "WriteQuarantine" >> ...
    """

    def __init__(self, table: Table, max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS) -> None:
        super().__init__()
        self._table = table
        self._max_batch_rows = max_batch_rows

    def default_label(self) -> str:
        return f"ValidateRows_{self._table.name}"  # one per table in a pipeline

    def expand(self, rows: beam.PCollection[Any]) -> beam.pvalue.DoOutputsTuple:
        element_type = RowWithAck if self._table.name == CALLS.name else self._table.record_type
        # Its own stage: a GX run takes 30-300 ms, and on Prism 2.77 a slow bundle in the stage
        # of a stateful DoFn (the per-call aggregation) was split and lost input elements
        # (measured: 2 of 2 runs of the 20-call streaming test lost chunks; 0 of 2 with this
        # fusion break).
        decoupled = rows | f"Decouple_{self._table.name}" >> beam.Reshuffle()
        return decoupled | f"Validate_{self._table.name}" >> beam.ParDo(
            ValidateRowsFn(self._table.name, self._max_batch_rows)
        ).with_output_types(element_type, **{QUARANTINE_TAG: QuarantineWithAck}).with_outputs(
            QUARANTINE_TAG, main=VALID_TAG
        )


def quarantined_transcript(held: QuarantineWithAck) -> DeadLetter:
    """A quarantined transcript as the per-call aggregation counts it: an utterance that will
    not arrive (so the call does not wait for it). Not written to the dead-letter table: the
    quarantine table has the row."""
    q = held.row
    return DeadLetter(
        stage="validate",
        reason="quarantined",
        error_type="expectations",
        message=f"failed {', '.join(q.failed_expectations)}",
        topic=None,
        partition=None,
        offset=None,
        call_id=q.call_id,
        event_time_ms=q.event_time_ms,
        payload_size_bytes=None,
    )
