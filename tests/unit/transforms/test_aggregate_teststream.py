"""``AggregateCalls`` on the DirectRunner in streaming mode, driven by ``TestStream``.

Each case keeps clear margins between event times, the inactivity gap (5 s) and the allowed
lateness (60 s), so no assertion depends on where exactly the runner fires a timer.

Processing time: the DoFn sets its REAL_TIME timers from ``Timestamp.now()`` (the real wall
clock, ~1.7e9 s), but the DirectRunner's ``TestClock`` starts at 0 and only moves with
``advance_processing_time``. Unpatched, a small advance never fires those timers, and a huge
one fires the live timer in a loop until the real clock catches up (non-deterministic). The
``runner_clock`` fixture (``tests/unit/conftest.py``) therefore makes ``transforms.aggregate``
read the runner's clock.

Metrics: the streaming DirectRunner (BundleBasedDirectRunner, Beam 2.77) keeps only the first
bundle's user-counter updates of a step (``StateSampler.scoped_state`` caches the first bundle's
``MetricsContainer``), so counters are asserted on a batch FnApiRunner run instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_stream import TestStream as BeamTestStream  # not a pytest class
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from schemas.records import AudioChunk, CallRow, ChunkRun, DeadLetter, OffsetAck, RowWithAck
from transforms.aggregate import AggregateCalls
from transforms.core.lifecycle import END_OF_INPUT_MS, AggregationConfig

BASE_MS = 1_764_072_000_000  # 2025-11-25T12:00:00Z
CALL = "c-0001"
RATE_HZ = 16_000
CHUNK_SAMPLES = 1_600  # 100 ms at 16 kHz

#: Far past every test call's end + allowed lateness (60 s): every call has expired. Set before
#: ``advance_watermark_to_infinity`` because the DirectRunner lets the downstream ``assert_that``
#: close before it delivers the outputs of timers that fire on the jump to infinity.
PAST_EXPIRY_MS = 200_000

CFG = AggregationConfig(
    inactivity_gap_s=5,
    live_interval_s=0,
    allowed_lateness_s=60,
    correction_delay_s=1,
    tombstone_ttl_s=600,
)


def chunk(
    seq: int,
    at_ms: int,
    *,
    channel: str = "agent",
    offset: int | None = None,
    end_of_call: bool = False,
    num_samples: int = CHUNK_SAMPLES,
    call_id: str = CALL,
) -> AudioChunk:
    """A decoded chunk ``at_ms`` after ``BASE_MS``; offset defaults to ``seq``."""
    return AudioChunk(
        call_id=call_id,
        channel=channel,
        seq=seq,
        sample_rate_hz=RATE_HZ,
        channels=1,
        codec="pcm_s16le",
        event_time_ms=BASE_MS + at_ms,
        event_time_source="capture_time",
        num_samples=num_samples,
        end_of_call=end_of_call,
        pcm=b"\x00\x00" * num_samples,
        tenant="acme",
        agent_id="a-1",
        queue="billing",
        language_hint="en",
        topic="audio",
        partition=2,
        offset=seq if offset is None else offset,
    )


def stamped(*chunks: AudioChunk) -> list[TimestampedValue]:
    return [TimestampedValue(c, c.event_time_ms / 1000.0) for c in chunks]


def wm(at_ms: int) -> Timestamp:
    """A watermark ``at_ms`` after ``BASE_MS``."""
    return Timestamp(micros=(BASE_MS + at_ms) * 1000)


def row_key(element: RowWithAck) -> tuple[Any, ...]:
    """The row's identity and counts, plus the acknowledged offset ranges (None: no ack)."""
    row, acks = element
    ack = acks[0] if acks else None
    assert len(acks) <= 1
    return (
        row.version,
        row.is_final,
        row.close_reason,
        row.chunk_count,
        row.start_ms - BASE_MS,
        row.end_ms - BASE_MS,
        row.last_offset,
        None if ack is None else (ack.topic, ack.partition, ack.ranges),
    )


def call_close_and_ack(element: RowWithAck) -> tuple[Any, ...]:
    """The row's call, close reason and chunk count, and its first ack (None: no ack)."""
    return (
        element.row.call_id,
        element.row.close_reason,
        element.row.chunk_count,
        element.acks[0] if element.acks else None,
    )


def letter_key(dl: DeadLetter) -> tuple[Any, ...]:
    return (dl.stage, dl.reason, dl.call_id, dl.offset)


def run_stream(
    stream: BeamTestStream,
    cfg: AggregationConfig,
    rows: list[tuple[Any, ...]],
    letters: list[tuple[Any, ...]],
) -> None:
    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    out = p | stream | AggregateCalls(cfg)
    assert_that(out.rows | "RowKey" >> beam.Map(row_key), equal_to(rows), label="rows")
    assert_that(
        out.dead_letter | "LetterKey" >> beam.Map(letter_key),
        equal_to(letters),
        label="letters",
    )
    p.run().wait_until_finish()


def test_on_time_call_closes_by_inactivity() -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(stamped(chunk(0, 0), chunk(1, 100), chunk(2, 200)))
        .advance_watermark_to(wm(1_000))  # before end (300) + gap (5 s): still open
        .advance_watermark_to(wm(10_000))  # past 5.3 s: final
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    run_stream(
        stream,
        CFG,
        [
            (1, True, "inactivity", 3, 0, 300, 2, None),
            # At expiry (end + 60 s) the last final row is re-emitted with the call's offsets.
            (1, True, "inactivity", 3, 0, 300, 2, ("audio", 2, ((0, 3),))),
        ],
        [],
    )


def test_end_of_call_closes_at_once_with_the_element_timestamp() -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(stamped(chunk(0, 0), chunk(1, 100, end_of_call=True)))
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    out = p | stream | AggregateCalls(CFG)

    class WithTimestamp(beam.DoFn):
        def process(self, row: RowWithAck, ts: Any = beam.DoFn.TimestampParam) -> Iterator[Any]:
            yield (*row_key(row), ts.micros // 1000 - BASE_MS)

    # The final row comes from process() for the marker (its timestamp, 100 ms), not from the
    # inactivity timer (5.2 s); the expiry re-emit comes from the timer at end + 60 s.
    assert_that(
        out.rows | beam.ParDo(WithTimestamp()),
        equal_to(
            [
                (1, True, "end_of_call", 2, 0, 200, 1, None, 100),
                (1, True, "end_of_call", 2, 0, 200, 1, ("audio", 2, ((0, 2),)), 60_200),
            ]
        ),
    )
    p.run().wait_until_finish()


def test_full_row_for_a_two_party_call() -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(
            stamped(
                chunk(0, 0, offset=10),
                chunk(0, 0, channel="customer", offset=11),
                chunk(1, 100, offset=12),
                chunk(1, 100, channel="customer", offset=13, end_of_call=True),
            )
        )
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    out = p | stream | AggregateCalls(CFG)
    expected = CallRow(
        call_id=CALL,
        version=1,
        is_final=True,
        close_reason="end_of_call",
        start_ms=BASE_MS,
        end_ms=BASE_MS + 200,
        agent_audio_s=0.2,
        customer_audio_s=0.2,
        mixed_audio_s=0.0,
        chunk_count=4,
        duplicate_chunks=0,
        missing_seq_count=0,
        missing_seqs="",
        tenant="acme",
        agent_id="a-1",
        queue="billing",
        language_hint="en",
        source_topic="audio",
        source_partition=2,
        first_offset=10,
        last_offset=13,
    )
    assert_that(
        out.rows,
        equal_to(
            [
                RowWithAck(expected),
                RowWithAck(expected, (OffsetAck("audio", 2, ((10, 14),)),)),
            ]
        ),
        label="rows",
    )
    assert_that(out.dead_letter, equal_to([]), label="letters")
    p.run().wait_until_finish()


def test_late_but_allowed_chunk_yields_a_correction(runner_clock: None) -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(stamped(chunk(0, 0), chunk(1, 100)))
        .advance_watermark_to(wm(10_000))  # past end (200) + gap: final v1 with 2 chunks
        # Event time 200 ms is 9.8 s behind the watermark: late, but within 60 s of lateness.
        .add_elements(stamped(chunk(2, 200)))
        .advance_processing_time(3)  # past correction_delay_s (1 s): v2 now, not at expiry
        .advance_watermark_to(wm(20_000))  # still within lateness: no expiry
        # A second late chunk with no processing-time advance: its correction (v3) waits for
        # expiry. Had v2 not come from processing time, both chunks would be in one v2.
        .add_elements(stamped(chunk(3, 300)))
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    run_stream(
        stream,
        CFG,
        [
            (1, True, "inactivity", 2, 0, 200, 1, None),
            (2, True, "late_correction", 3, 0, 300, 2, None),
            (3, True, "late_correction", 4, 0, 400, 3, None),
            (3, True, "late_correction", 4, 0, 400, 3, ("audio", 2, ((0, 4),))),
        ],
        [],
    )


def test_too_late_chunk_is_dead_lettered_and_changes_nothing() -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(stamped(chunk(0, 0), chunk(1, 100)))
        .advance_watermark_to(wm(10_000))  # final v1
        .advance_watermark_to(wm(120_000))  # past end (200) + lateness (60 s): expired
        .add_elements(stamped(chunk(2, 200, offset=7)))
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    run_stream(
        stream,
        CFG,
        [
            (1, True, "inactivity", 2, 0, 200, 1, None),
            (1, True, "inactivity", 2, 0, 200, 1, ("audio", 2, ((0, 2),))),
        ],
        [("aggregate", "too_late", CALL, 7)],
    )


def test_too_late_dead_letter_fields() -> None:
    late = chunk(2, 200, offset=7)
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(stamped(chunk(0, 0), chunk(1, 100)))
        .advance_watermark_to(wm(120_000))
        .add_elements(stamped(late))
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    out = p | stream | AggregateCalls(CFG)
    expected = DeadLetter(
        stage="aggregate",
        reason="too_late",
        error_type="lateness",
        message=(
            f"chunk agent#2 arrived after call {CALL} expired "
            "(its final row v1 stands; allowed lateness exceeded)"
        ),
        topic="audio",
        partition=2,
        offset=7,
        call_id=CALL,
        event_time_ms=BASE_MS + 200,
        payload_size_bytes=2 * CHUNK_SAMPLES,
    )
    assert_that(out.dead_letter, equal_to([expected]))
    p.run().wait_until_finish()


def test_duplicates_and_gaps_become_dead_letters() -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(
            stamped(
                chunk(0, 0, offset=0),
                chunk(1, 100, offset=1),
                chunk(1, 100, offset=2),  # repeat of agent seq 1
                chunk(4, 400, offset=3),  # agent 2-3 never arrive
                chunk(0, 0, channel="customer", offset=4),
                chunk(2, 200, channel="customer", offset=5),  # customer 1 never arrives
            )
        )
        .advance_watermark_to(wm(10_000))
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    out = p | stream | AggregateCalls(CFG)
    assert_that(
        out.rows
        | beam.Map(lambda r: (r.row.chunk_count, r.row.duplicate_chunks, r.row.missing_seqs)),
        equal_to([(5, 1, "agent:2-3;customer:1")] * 2),  # final, then its re-emit at expiry
        label="rows",
    )
    assert_that(
        out.dead_letter | beam.Map(lambda d: (d.reason, d.offset, d.message)),
        equal_to(
            [
                ("duplicate_seq", 2, "agent seq 1 was already received; the repeat is not counted"),
                ("seq_gap", None, "agent chunks never received: seq 2-3"),
                ("seq_gap", None, "customer chunks never received: seq 1"),
            ]
        ),
        label="letters",
    )
    p.run().wait_until_finish()


def test_live_rows_while_open(runner_clock: None) -> None:
    cfg = AggregationConfig(
        inactivity_gap_s=5, live_interval_s=1, allowed_lateness_s=60, correction_delay_s=1
    )
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(stamped(chunk(0, 0), chunk(1, 100)))
        .advance_processing_time(1.5)  # live timer (set at 1 s) fires: 2 chunks
        .add_elements(stamped(chunk(2, 200)))
        .advance_processing_time(1.5)  # re-armed for 2.5 s, fires at 3 s: 3 chunks
        .add_elements(stamped(chunk(3, 300, end_of_call=True)))
        .advance_processing_time(5)  # closed: no more live rows
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    run_stream(
        stream,
        cfg,
        [
            (0, False, "live", 2, 0, 200, 1, None),
            (0, False, "live", 3, 0, 300, 2, None),
            (1, True, "end_of_call", 4, 0, 400, 3, None),
            (1, True, "end_of_call", 4, 0, 400, 3, ("audio", 2, ((0, 4),))),
        ],
        [],
    )


def test_calls_are_aggregated_independently() -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(wm(0))
        .add_elements(
            stamped(
                chunk(0, 0, call_id="c-a"),
                chunk(0, 0, call_id="c-b", offset=5),
                chunk(1, 100, call_id="c-b", offset=6, end_of_call=True),
            )
        )
        .advance_watermark_to(wm(10_000))
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    out = p | stream | AggregateCalls(CFG)
    assert_that(
        out.rows | beam.Map(call_close_and_ack),
        equal_to(
            [
                ("c-a", "inactivity", 1, None),
                ("c-a", "inactivity", 1, OffsetAck("audio", 2, ((0, 1),))),
                ("c-b", "end_of_call", 2, None),
                ("c-b", "end_of_call", 2, OffsetAck("audio", 2, ((5, 7),))),
            ]
        ),
    )
    p.run().wait_until_finish()


def test_batch_run_counts_calls() -> None:
    # Single-chunk-or-no-marker calls: the result does not depend on element order in batch.
    p = beam.Pipeline(runner=FnApiRunner())
    chunks = [
        chunk(0, 0, call_id="c-a"),
        chunk(1, 100, call_id="c-a"),
        chunk(0, 0, call_id="c-b", offset=5, end_of_call=True),
    ]
    out = p | beam.Create(stamped(*chunks)) | AggregateCalls(CFG)
    assert_that(
        out.rows
        | beam.Map(lambda r: (r.row.call_id, r.row.close_reason, r.acks[0] if r.acks else None)),
        equal_to(
            [
                ("c-a", "inactivity", None),
                ("c-a", "inactivity", OffsetAck("audio", 2, ((0, 2),))),
                ("c-b", "end_of_call", None),
                ("c-b", "end_of_call", OffsetAck("audio", 2, ((5, 6),))),
            ]
        ),
    )
    result = p.run()
    result.wait_until_finish()
    query = result.metrics().query(MetricsFilter().with_namespace("callqa.aggregate"))
    counters = {c.key.metric.name: c.committed for c in query["counters"]}
    assert counters == {"calls_opened": 2, "calls_finalized": 2}


def test_a_run_of_chunks_makes_the_rows_its_chunks_make() -> None:
    """A ``ChunkRun`` is stepped through chunk by chunk: the rows and acks of its chunks one by
    one (``test_batch_run_counts_calls``), with the state and timers written once per run."""
    calls = {
        call: [chunk(i, 100 * i, call_id=call, offset=10 * k + i) for i in range(6)]
        for k, call in enumerate(("c-a", "c-b"))
    }
    calls["c-b"][-1] = calls["c-b"][-1]._replace(end_of_call=True)
    expected = [
        ("c-a", "inactivity", 6, None),
        ("c-a", "inactivity", 6, OffsetAck("audio", 2, ((0, 6),))),
        ("c-b", "end_of_call", 6, None),
        ("c-b", "end_of_call", 6, OffsetAck("audio", 2, ((10, 16),))),
    ]
    runs = [
        TimestampedValue(ChunkRun(tuple(c[k : k + 4])), c[k].event_time_ms / 1000.0)
        for c in calls.values()
        for k in (0, 4)
    ]
    for elements in (stamped(*calls["c-a"], *calls["c-b"]), runs):
        p = beam.Pipeline(runner=FnApiRunner())
        out = p | beam.Create(elements) | AggregateCalls(CFG)
        assert_that(
            out.rows | beam.Map(call_close_and_ack),
            equal_to(expected),
        )
        p.run().wait_until_finish()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"inactivity_gap_s": 0},
        {"allowed_lateness_s": -1},
        {"tombstone_ttl_s": 0},
        {"live_interval_s": -1},
        {"correction_delay_s": -0.5},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AggregationConfig(**kwargs)


def test_bounded_runs_close_on_the_marker_only_once_the_watermark_passes_it() -> None:
    # A batch runner may hand a key's chunks over in any order: the marker (offset 2) comes
    # first here. With marker_waits_for_watermark the call still closes once, whole.
    cfg = AggregationConfig(
        inactivity_gap_s=5, live_interval_s=0, allowed_lateness_s=60, correction_delay_s=1,
        tombstone_ttl_s=600, marker_waits_for_watermark=True,
    )  # fmt: skip
    stream = (
        BeamTestStream()
        .add_elements(stamped(chunk(2, 200, end_of_call=True)))
        .add_elements(stamped(chunk(0, 0), chunk(1, 100)))
        .advance_watermark_to(wm(PAST_EXPIRY_MS))
        .advance_watermark_to_infinity()
    )
    final = (1, True, "end_of_call", 3, 0, 300, 2)
    run_stream(stream, cfg, [(*final, None), (*final, ("audio", 2, ((0, 3),)))], [])


def test_the_lifecycles_end_of_input_is_the_global_windows_end_a_second_early() -> None:
    end_micros = GlobalWindow().max_timestamp().micros
    assert end_micros // 1000 - 1000 == END_OF_INPUT_MS
