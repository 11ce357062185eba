"""``AggregateCalls`` joining a call's transcripts (ASR on), on the streaming DirectRunner with
``TestStream``: the final row waits for every announced transcript, a timeout closes it without
them, a transcript after the final row corrects it, one after expiry is a dead letter.

Margins: gap 5 s, transcript timeout 20 s (event time), allowed lateness 60 s."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream  # not a pytest class
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from beam_jobs.pipeline import counter_total
from schemas.records import DeadLetter, RowWithAck, SegmentationDone, Transcript
from tests.unit.transforms.test_aggregate_teststream import (
    BASE_MS,
    CALL,
    CFG,
    PAST_EXPIRY_MS,
    chunk,
    letter_key,
    stamped,
    wm,
)
from transforms.aggregate import AggregateCalls
from transforms.core.lifecycle import INCOMPLETE_COUNTER, AggregationConfig

ASR_CFG = replace(CFG, await_transcripts=True, transcript_timeout_s=20, scorecard="off")


def transcript(at_ms: int, text: str, channel: str = "agent") -> Transcript:
    return Transcript(
        CALL, channel, BASE_MS + at_ms, BASE_MS + at_ms + 900, text, "en", "en", -0.2, "m",
        "faster-whisper", (), (), -20.0, 0.5, 0,
    )  # fmt: skip


def done(*starts_ms: int, channel: str = "agent") -> SegmentationDone:
    """The marker announcing utterances that start at these offsets (ms after BASE_MS)."""
    return SegmentationDone(CALL, channel, tuple(BASE_MS + s for s in starts_ms), BASE_MS + 200)


def failure() -> DeadLetter:
    return DeadLetter("transcribe", "asr_error", "RuntimeError", "boom", None, None, None, CALL,
                      BASE_MS + 50, 100)  # fmt: skip


def at(ms: int, *items: Any) -> list[TimestampedValue]:
    return [TimestampedValue(i, (BASE_MS + ms) / 1000.0) for i in items]


def row_key(element: RowWithAck) -> tuple[Any, ...]:
    row, acks = element
    m = row.metrics
    return (
        row.version,
        row.is_final,
        row.close_reason,
        m.utterance_count,
        m.transcripts_complete,
        m.transcript_failures,
        bool(acks),
    )


def _kind(item: Any, _: int) -> int:
    return {SegmentationDone: 1, Transcript: 2, DeadLetter: 3}.get(type(item), 0)


def aggregate(events: beam.PCollection[Any], cfg: AggregationConfig) -> Any:
    """Split a stream of mixed call events into AggregateCalls' inputs and apply it."""
    chunks, segmented, transcripts, failures = events | beam.Partition(_kind, 4)
    parts = {"chunks": chunks, "segmented": segmented, "transcripts": transcripts,
             "asr_failures": failures}  # fmt: skip
    return parts | AggregateCalls(cfg)


def run_stream(stream: BeamTestStream, rows: list[Any], letters: list[Any]) -> None:
    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    out = aggregate(p | stream, ASR_CFG)
    assert_that(out.rows | "RowKey" >> beam.Map(row_key), equal_to(rows), label="rows")
    assert_that(
        out.dead_letter | "LetterKey" >> beam.Map(letter_key), equal_to(letters), label="letters"
    )
    p.run().wait_until_finish()


def test_final_row_waits_for_the_announced_transcripts() -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(stamped(chunk(0, 0), chunk(1, 100, end_of_call=True)))
        .add_elements(at(200, done(0, 1_000), done(channel="customer")))
        .advance_watermark_to(wm(1_000))
        .add_elements(at(1_000, transcript(0, "hello")))
        .advance_watermark_to(wm(3_000))
        .add_elements(at(3_000, transcript(1_000, "goodbye")))
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    # One final row, after the second transcript: none before it with fewer utterances.
    run_stream(
        stream,
        [(1, True, "end_of_call", 2, True, 0, False), (1, True, "end_of_call", 2, True, 0, True)],
        [],
    )


def test_timeout_then_late_transcript_corrects_then_too_late_is_dead_lettered(
    runner_clock: None,
) -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(stamped(chunk(0, 0), chunk(1, 100, end_of_call=True)))
        .add_elements(at(200, done(0, 1_000), transcript(0, "hello")))
        # Event time alone never times a call out in streaming (a backlog races ahead of ASR).
        .advance_watermark_to(wm(30_000))
        .advance_processing_time(10)  # waiting: before the 20 s transcript timeout
        .advance_processing_time(15)  # past it: final without the second transcript
        .add_elements(at(30_000, transcript(1_000, "goodbye")))  # late: a correction
        .advance_processing_time(5)
        .advance_watermark_to(wm(PAST_EXPIRY_MS))  # expired
        .add_elements(at(PAST_EXPIRY_MS, transcript(2_000, "anyone there")))  # too late
        .advance_watermark_to_infinity()
    )
    run_stream(
        stream,
        [
            (1, True, "end_of_call", 1, False, 0, False),
            (2, True, "late_correction", 2, True, 0, False),
            (2, True, "late_correction", 2, True, 0, True),
        ],
        [("aggregate", "transcript_too_late", CALL, None)],
    )


def test_live_rows_carry_the_transcripts_so_far(runner_clock: None) -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(stamped(chunk(0, 0)))
        .add_elements(at(100, transcript(0, "hello")))
        .advance_processing_time(11)  # one live row (interval 10 s)
        .add_elements(stamped(chunk(1, 100, end_of_call=True)))
        .add_elements(at(300, done(0)))
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    out = aggregate(p | stream, replace(ASR_CFG, live_interval_s=10))
    assert_that(
        out.rows | beam.Map(row_key),
        equal_to(
            [
                (0, False, "live", 1, False, 0, False),
                (1, True, "end_of_call", 1, True, 0, False),
                (1, True, "end_of_call", 1, True, 0, True),
            ]
        ),
    )
    p.run().wait_until_finish()


def test_default_scorecard_scores_the_final_row() -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(stamped(chunk(0, 0), chunk(1, 100, end_of_call=True)))
        .add_elements(at(200, done(0), transcript(0, "Good morning, thank you for calling")))
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    out = aggregate(p | stream, replace(ASR_CFG, scorecard="default"))

    def greeting(element: RowWithAck) -> tuple[Any, ...]:
        card = element.row.scorecard
        answers = {a.question_id: a.passed for a in card.answers}
        return card.scorecard, answers.get("greeting"), 0 < card.score <= card.potential

    assert_that(
        out.rows | beam.Map(greeting),
        equal_to([("default", True, True)] * 2),
    )
    p.run().wait_until_finish()


def test_bounded_run_closes_a_call_missing_a_transcript_at_the_end_of_the_input(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    p = beam.Pipeline(runner=FnApiRunner())
    items = [chunk(0, 0), chunk(1, 100, end_of_call=True), done(0, 1_000), transcript(0, "hello")]
    stamped_items = (
        p | beam.Create(items) | beam.Map(lambda i: TimestampedValue(i, BASE_MS / 1000.0 + 0.2))
    )
    out = aggregate(stamped_items, replace(ASR_CFG, marker_waits_for_watermark=True, bounded=True))
    assert_that(
        out.rows | beam.Map(row_key),
        equal_to(
            [
                (1, True, "end_of_call", 1, False, 0, False),
                (1, True, "end_of_call", 1, False, 0, True),
            ]
        ),
    )
    with caplog.at_level(logging.WARNING, logger="transforms.core.lifecycle"):
        result = p.run()
        result.wait_until_finish()
    # the user is told which call went out short, and by how much; the run counts it (the
    # jobs exit with an error on it)
    assert f"call {CALL}: final row v1 (end_of_call) without all transcripts: 1 of 2 in" in (
        caplog.text
    )
    assert counter_total(result, INCOMPLETE_COUNTER) == 1
