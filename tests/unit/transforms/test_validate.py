"""``transforms/validate.py``: ValidateRows routes rows to ``valid`` or ``quarantine``."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from schemas.expectations import ExpectationSpec, FrameValidator, frame_of
from schemas.records import OffsetAck, QuarantinedRow, QuarantineWithAck, RowWithAck
from schemas.tables import CALLS, DEAD_LETTERS, QUARANTINE, TRANSCRIPTS
from tests.unit.schemas.test_expectations import CALL, CARD, LETTER, METRICS, T0, TRANSCRIPT
from transforms.validate import (
    LIVE_KEY,
    QUARANTINE_TAG,
    VALID_TAG,
    OutOfProcessValidator,
    ValidateRows,
    ValidateRowsFn,
    ValidateWindowFn,
    quarantine,
    row_json,
    validation_key,
)

ACK = OffsetAck("audio", 2, ((100, 161),))
ACK_SPLIT = OffsetAck("audio", 3, ((7, 9),))


def counters(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
    query = result.metrics().query(MetricsFilter().with_namespace("callqa.validate"))
    return {c.key.metric.name: c.committed for c in query["counters"]}


def distributions(result: beam.runners.runner.PipelineResult) -> dict[str, Any]:
    query = result.metrics().query(MetricsFilter().with_namespace("callqa.validate"))
    return {d.key.metric.name: d.committed for d in query["distributions"]}


#: Per bundle (bounded runs) and per window of processing time (streaming): the same routing.
WINDOWS_S = pytest.mark.parametrize("window_s", [0.0, 1.0], ids=["per_bundle", "per_window"])


@WINDOWS_S
def test_good_calls_stay_and_bad_calls_are_quarantined_with_their_acks(
    capfd: pytest.CaptureFixture[str], window_s: float
) -> None:
    good = RowWithAck(CALL, (ACK,))
    live = RowWithAck(CALL._replace(version=0, is_final=False, close_reason="live"), ())
    unfinished = RowWithAck(CALL._replace(call_id="c-2", version=0), (ACK, ACK_SPLIT))
    broken = RowWithAck(
        CALL._replace(call_id="c-3", chunk_count=0, metrics=METRICS._replace(mean_confidence=0.5)),
        (ACK_SPLIT,),
    )
    # live rows are checked too: a dashboard reads them
    broken_live = RowWithAck(
        live.row._replace(call_id="c-4", metrics=METRICS._replace(agent_talk_ratio=1.5)), ()
    )
    p = beam.Pipeline(runner=FnApiRunner())
    rows = [good, live, unfinished, broken, broken_live]
    out = p | beam.Create(rows) | ValidateRows(CALLS, window_s=window_s)
    assert_that(out.valid, equal_to([good, live]), label="valid")
    assert_that(
        out.quarantine | beam.Map(lambda q: (q.row.row_key, q.row.failed_expectations, q.acks)),
        equal_to(
            [
                # its scorecard answers carry version 0 too
                (
                    "c-2.v0.final",
                    ("final_version_positive", "scorecard_answers.version_positive"),
                    (ACK, ACK_SPLIT),
                ),
                (
                    "c-3.v1.final",
                    ("chunk_count_positive", "mean_confidence_nonpositive"),
                    (ACK_SPLIT,),
                ),
                (f"c-4.v0.live.o{CALL.last_offset}", ("talk_ratio_range",), ()),
            ]
        ),
        label="quarantine",
    )
    assert_that(
        out.quarantine | beam.Map(lambda q: (q.row.table, q.row.event_time_ms)),
        equal_to([("calls", T0)] * 3),
        label="quarantine_meta",
    )
    result = p.run()
    result.wait_until_finish()
    assert counters(result) == {
        "calls_rows_valid": 2,
        "calls_rows_quarantined": 3,
        "calls_failed_final_version_positive": 1,
        "scorecard_answers_failed_version_positive": 1,
        "calls_failed_chunk_count_positive": 1,
        "calls_failed_mean_confidence_nonpositive": 1,
        "calls_failed_talk_ratio_range": 1,
    }
    batches = distributions(result)["calls_batch_rows"]
    assert batches.sum == 5
    assert "Calculating Metrics" not in capfd.readouterr().err  # GX progress bars are off


def test_transcripts_and_dead_letters() -> None:
    bad_transcript = TRANSCRIPT._replace(channel="left", start_ms=T0 + 5)
    no_reason = LETTER._replace(reason="")  # a decode letter acknowledges its own offset...
    no_stage = LETTER._replace(stage="", offset=None)
    p = beam.Pipeline(runner=FnApiRunner())
    t = p | "Transcripts" >> beam.Create([TRANSCRIPT, bad_transcript]) | ValidateRows(TRANSCRIPTS)
    d = p | "Letters" >> beam.Create([LETTER, no_reason, no_stage]) | ValidateRows(DEAD_LETTERS)
    assert_that(t.valid, equal_to([TRANSCRIPT]), label="transcripts_valid")
    assert_that(
        t.quarantine
        | "T" >> beam.Map(lambda q: (q.row.row_key, q.row.failed_expectations, q.acks)),
        equal_to([(f"c-0001.left.{T0 + 5}", ("channel_known",), ())]),
        label="transcripts_quarantine",
    )
    assert_that(d.valid, equal_to([LETTER]), label="letters_valid")
    assert_that(
        d.quarantine | "D" >> beam.Map(lambda q: (q.row.failed_expectations, q.acks)),
        equal_to(
            [
                # ...so its quarantine record carries that ack instead of the letter sink
                (("reason_not_empty",), (OffsetAck("audio", 0, ((7, 8),)),)),
                (("stage_not_empty",), ()),
            ]
        ),
        label="letters_quarantine",
    )
    result = p.run()
    result.wait_until_finish()
    c = counters(result)
    assert c["transcripts_rows_valid"] == 1
    assert c["transcripts_rows_quarantined"] == 1
    assert c["transcripts_failed_channel_known"] == 1
    assert c["dead_letters_rows_valid"] == 1
    assert c["dead_letters_rows_quarantined"] == 2
    assert c["dead_letters_failed_stage_not_empty"] == 1
    assert c["dead_letters_failed_reason_not_empty"] == 1


def test_a_call_is_held_back_with_its_scorecard_answers_when_one_fails() -> None:
    good = RowWithAck(CALL, (ACK,))
    card = CARD._replace(answers=(CARD.answers[0]._replace(points=0.5),))  # passed, half points
    bad_answer = RowWithAck(CALL._replace(call_id="c-4", scorecard=card), (ACK_SPLIT,))
    p = beam.Pipeline(runner=FnApiRunner())
    out = p | beam.Create([good, bad_answer]) | ValidateRows(CALLS)
    assert_that(out.valid, equal_to([good]), label="valid")
    assert_that(
        out.quarantine | beam.Map(lambda q: (q.row.row_key, q.row.failed_expectations, q.acks)),
        equal_to([("c-4.v1.final", ("scorecard_answers.passed_earns_potential",), (ACK_SPLIT,))]),
        label="quarantine",
    )
    result = p.run()
    result.wait_until_finish()
    c = counters(result)
    assert c["scorecard_answers_failed_passed_earns_potential"] == 1
    assert (c["calls_rows_valid"], c["calls_rows_quarantined"]) == (1, 1)


def test_quarantine_records_are_written_even_when_they_fail_their_own_suite() -> None:
    good = quarantine("calls", RowWithAck(CALL, (ACK,)), {"chunk_count_positive"})
    odd = good._replace(row=good.row._replace(row_key="", row_json="{"))
    p = beam.Pipeline(runner=FnApiRunner())
    out = p | beam.Create([good, odd]) | ValidateRows(QUARANTINE)
    assert_that(
        out.valid | beam.Map(lambda q: (q.row.row_key, q.row.failed_expectations, q.acks)),
        equal_to(
            [
                ("c-0001.v1.final", ("chunk_count_positive",), (ACK,)),
                (
                    "",
                    (
                        "chunk_count_positive",
                        "quarantine.row_json_parseable",
                        "quarantine.row_key_not_empty",
                    ),
                    (ACK,),
                ),
            ]
        ),
        label="valid",
    )
    assert_that(out.quarantine, equal_to([]), label="quarantine")
    result = p.run()
    result.wait_until_finish()
    c = counters(result)
    assert (c["quarantine_rows_valid"], c["quarantine_rows_invalid"]) == (1, 1)
    assert c["quarantine_failed_row_key_not_empty"] == 1


class _StampFn(beam.DoFn):
    def process(
        self,
        element: Any,
        timestamp: Any = beam.DoFn.TimestampParam,
        w: Any = beam.DoFn.WindowParam,
    ) -> Any:
        key = element.row.call_id if isinstance(element, RowWithAck) else element.row.row_key
        yield key, int(timestamp.micros // 1000), int(w.start.micros // 1000)


@WINDOWS_S
def test_outputs_keep_each_elements_timestamp_and_window(window_s: float) -> None:
    rows = [
        RowWithAck(CALL._replace(call_id="a", start_ms=T0 + 1_000, end_ms=T0 + 2_000)),
        RowWithAck(CALL._replace(call_id="b", start_ms=T0 + 61_000, end_ms=T0 + 62_000)),
        RowWithAck(CALL._replace(call_id="c", start_ms=T0 + 125_000, end_ms=T0)),  # bad
    ]
    p = beam.Pipeline(runner=FnApiRunner())
    out = (
        p
        | beam.Create(rows)
        | beam.Map(lambda r: window.TimestampedValue(r, r.row.start_ms / 1000))
        | beam.WindowInto(window.FixedWindows(60))
        | ValidateRows(CALLS, window_s=window_s)
    )
    assert_that(
        out.valid | "StampValid" >> beam.ParDo(_StampFn()),
        equal_to([("a", T0 + 1_000, T0), ("b", T0 + 61_000, T0 + 60_000)]),
        label="valid",
    )
    assert_that(
        out.quarantine | "StampQuarantine" >> beam.ParDo(_StampFn()),
        equal_to([("c.v1.final", T0 + 125_000, T0 + 120_000)]),
        label="quarantine",
    )
    p.run().wait_until_finish()


def test_a_full_buffer_is_validated_before_the_bundle_ends() -> None:
    rows = [RowWithAck(CALL._replace(call_id=f"c-{i}")) for i in range(5)]
    p = beam.Pipeline(runner=FnApiRunner())
    out = (
        p
        | beam.Create(rows)
        | beam.ParDo(ValidateRowsFn("calls", max_batch_rows=2)).with_outputs(
            QUARANTINE_TAG, main=VALID_TAG
        )
    )
    assert_that(out.valid, equal_to(rows))
    result = p.run()
    result.wait_until_finish()
    batches = distributions(result)["calls_batch_rows"]
    assert (batches.sum, batches.max) == (5, 2)
    assert counters(result)["calls_rows_valid"] == 5


def test_a_window_is_validated_early_once_it_holds_max_batch_rows() -> None:
    rows = [RowWithAck(CALL._replace(call_id=f"c-{i}")) for i in range(5)]
    p = beam.Pipeline(runner=FnApiRunner())
    out = (
        p
        | beam.Create(rows)
        | beam.Map(lambda r: ("calls", r))
        | beam.ParDo(ValidateWindowFn("calls", window_s=3600, max_batch_rows=2)).with_outputs(
            QUARANTINE_TAG, main=VALID_TAG
        )
    )
    assert_that(out.valid, equal_to(rows))
    result = p.run()
    result.wait_until_finish()
    batches = distributions(result)["calls_batch_rows"]
    assert (batches.sum, batches.count, batches.max) == (5, 3, 2)  # 2, 2, then 1 at the timer


def test_live_call_rows_wait_in_their_own_window() -> None:
    final, live = RowWithAck(CALL), RowWithAck(CALL._replace(is_final=False, version=0))
    assert validation_key(final, "calls") == ("calls", final)
    assert validation_key(live, "calls") == ("calls" + LIVE_KEY, live)
    assert validation_key(TRANSCRIPT, "transcripts") == ("transcripts", TRANSCRIPT)
    p = beam.Pipeline(runner=FnApiRunner())
    fn = ValidateWindowFn("calls", window_s=3600, max_batch_rows=2, live_window_s=7200)
    out = (
        p
        | beam.Create([final, live])
        | beam.Map(validation_key, "calls")
        | beam.ParDo(fn).with_outputs(QUARANTINE_TAG, main=VALID_TAG)
    )
    assert_that(out.valid, equal_to([final, live]))
    result = p.run()
    result.wait_until_finish()
    batches = distributions(result)["calls_batch_rows"]
    assert (batches.count, batches.max) == (2, 1)  # one key: one batch of 2 (max_batch_rows)


class _BrokenCheckerFn(ValidateRowsFn):
    """A suite GX cannot run (it names a column the rows do not have)."""

    def setup(self) -> None:
        super().setup()
        ghost = ExpectationSpec("ghost", "ExpectColumnValuesToNotBeNull", {"column": "no_such"})
        self._validators["calls"] = FrameValidator("calls", [ghost])


def test_a_broken_checker_passes_rows_on_unchecked_and_counts_it() -> None:
    rows = [RowWithAck(CALL), RowWithAck(CALL._replace(chunk_count=0), (ACK,))]
    p = beam.Pipeline(runner=FnApiRunner())
    out = (
        p
        | beam.Create(rows)
        | beam.ParDo(_BrokenCheckerFn("calls")).with_outputs(QUARANTINE_TAG, main=VALID_TAG)
    )
    assert_that(out.valid, equal_to(rows), label="valid")
    assert_that(out.quarantine, equal_to([]), label="quarantine")
    result = p.run()
    result.wait_until_finish()
    c = counters(result)
    assert c["calls_validation_errors"] == 1
    assert c["calls_rows_unchecked"] == 2
    assert c.get("calls_rows_valid", 0) == 0 and c.get("calls_rows_quarantined", 0) == 0


def test_quarantine_records_hold_the_whole_row_as_strict_json() -> None:
    row = CALL._replace(metrics=METRICS._replace(agent_talk_ratio=math.inf, sentiment=math.nan))
    record = quarantine("calls", RowWithAck(row, (ACK,)), {"talk_ratio_range", "a"})
    assert record == QuarantineWithAck(
        QuarantinedRow(
            "calls",
            "c-0001.v1.final",
            ("a", "talk_ratio_range"),
            "2",
            record.row.row_json,
            "c-0001",
            T0,
        ),
        (ACK,),
    )
    back = json.loads(record.row.row_json)
    assert back["metrics"]["agent_talk_ratio"] == "inf"
    assert back["metrics"]["sentiment"] == "nan"
    assert back["metrics"]["keywords"] == ["refund", "invoice"]
    assert back["scorecard"]["answers"][0]["question_id"] == "greeting"
    assert list(back) == list(CALL._fields)
    live = CALL._replace(is_final=False, version=0, last_offset=140)
    assert quarantine("calls", RowWithAck(live), {"x"}).row.row_key == "c-0001.v0.live.o140"
    assert json.loads(row_json(TRANSCRIPT))["text"] == "good morning"
    offsetless = quarantine("dead_letters", LETTER._replace(offset=None), {"x"})
    assert offsetless.row.row_key.startswith("decode.unknown_codec.c-0001.")
    assert offsetless.acks == ()


def test_configuration_errors_and_no_gx_before_setup() -> None:
    with pytest.raises(ValueError, match="no validation rules for table 'nope'"):
        ValidateRowsFn("nope")
    with pytest.raises(ValueError, match="max_batch_rows"):
        ValidateRowsFn("calls", max_batch_rows=0)
    with pytest.raises(ValueError, match="window_s"):
        ValidateWindowFn("calls", window_s=0)
    with pytest.raises(ValueError, match="live_window_s"):
        ValidateWindowFn("calls", window_s=1, live_window_s=0)
    fn = ValidateRowsFn("calls")
    assert not hasattr(fn, "_validators")  # the GX context is built in setup(), on the worker


def _child_pid(validator: OutOfProcessValidator) -> int:
    return int(validator._pool.submit(os.getpid).result(timeout=120))


@pytest.mark.slow  # three GX children start: about 25 s on a 2-core machine
def test_a_killed_validation_child_is_replaced_and_the_call_it_held_is_retried() -> None:
    """kill -9 of the GX child (the real one): between two validations, and while a validation
    waits on it. Each time the next answer comes from a new child and is the same."""
    df = frame_of(CALLS.name, [CALL, CALL._replace(call_id="c-3", chunk_count=0)])
    validator = OutOfProcessValidator(CALLS.name)
    try:
        answer = validator.validate(df)
        assert answer[0] == frozenset() and answer[1], answer  # a good row, a failing one
        first = _child_pid(validator)
        os.kill(first, signal.SIGKILL)
        assert validator.validate(df) == answer
        second = _child_pid(validator)
        assert second != first
        # The child is busy when the validation is sent, and dies before it answers; sent
        # after the kill instead, it would meet the broken pool at once: retried the same.
        busy = validator._pool.submit(time.sleep, 60)
        with ThreadPoolExecutor(max_workers=1) as caller:
            pending = caller.submit(validator.validate, df)
            time.sleep(1.0)
            assert not pending.done()
            os.kill(second, signal.SIGKILL)
            assert pending.result(timeout=120) == answer
        assert busy.exception() is not None  # the work the child held failed, not hung
        assert _child_pid(validator) not in (first, second)
    finally:
        validator.close()


def test_a_pool_refusing_work_at_interpreter_shutdown_is_an_exit_not_a_failure() -> None:
    from transforms.validate import _exiting

    assert _exiting(RuntimeError("cannot schedule new futures after interpreter shutdown"))
    assert not _exiting(RuntimeError("validation failed"))
    assert not _exiting(ValueError("interpreter shutdown"))
