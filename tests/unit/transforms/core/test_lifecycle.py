"""The call lifecycle step function, table-driven, with no runner.

``Key`` keeps one call key's state the way a runner does (the meta, three append-only logs, one
event-time and one processing-time timer) and applies each ``Step``. A case is a script of
events (chunks, transcripts, markers, ASR failures, watermark and clock moves) and what must
come out: the rows (version, final, reason, chunks), the dead letters' reasons and the counts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

import pytest

from schemas.records import (
    AudioChunk,
    CallRow,
    DeadLetter,
    SegmentationDone,
    Transcript,
    dead_letter,
)
from transforms.core.lifecycle import (
    CLOSED,
    END_OF_INPUT_MS,
    EXPIRED,
    OPEN,
    AggregationConfig,
    CallLifecycle,
    CallLog,
    CallMeta,
    EventTimerFired,
    Step,
    WallTimerFired,
)

T0 = 1_764_072_000_000  # 2025-11-25T12:00:00Z, event time
NOW_S = 1_800_000_000.0  # processing time at the start of every case
CALL = "c-0001"
CHUNK_MS = 100

CFG = AggregationConfig(
    inactivity_gap_s=5,
    live_interval_s=0,
    allowed_lateness_s=60,
    correction_delay_s=1,
    tombstone_ttl_s=600,
)
WAITS = CFG.__class__(**{**CFG.__dict__, "marker_waits_for_watermark": True})
ASR = CFG.__class__(
    **{**CFG.__dict__, "await_transcripts": True, "scorecard": "off", "transcript_timeout_s": 30}
)
BOUNDED = ASR.__class__(**{**ASR.__dict__, "bounded": True})
LIVE = CFG.__class__(**{**CFG.__dict__, "live_interval_s": 10})
PRIOR = CFG.__class__(**{**CFG.__dict__, "prior_versions": ((CALL, 2),)})


def chunk(seq: int, *, channel: str = "agent", at_ms: int | None = None, **kw: Any) -> AudioChunk:
    """Chunk ``seq`` of the call, 100 ms each, at ``seq * 100 ms`` unless ``at_ms``."""
    fields: dict[str, Any] = dict(
        call_id=CALL,
        channel=channel,
        seq=seq,
        sample_rate_hz=16_000,
        channels=1,
        codec="pcm_s16le",
        event_time_ms=T0 + (seq * CHUNK_MS if at_ms is None else at_ms),
        event_time_source="capture_time",
        num_samples=1_600,
        end_of_call=False,
        pcm=b"",
        tenant="acme",
        agent_id="a-1",
        queue="billing",
        language_hint=None,
        topic="audio",
        partition=0,
        offset=seq,
    )
    return AudioChunk(**{**fields, **kw})


def transcript(start_ms: int, end_ms: int, *, channel: str = "agent") -> Transcript:
    return Transcript(
        call_id=CALL,
        channel=channel,
        start_ms=T0 + start_ms,
        end_ms=T0 + end_ms,
        text="thank you for calling",
        language="en",
        language_class="en",
        confidence=-0.2,
        model_id="m",
        backend="faster-whisper",
        words=(),
        alternatives=(),
    )


def segmented(end_ms: int, *starts_ms: int, channel: str = "agent") -> SegmentationDone:
    return SegmentationDone(CALL, channel, tuple(T0 + s for s in starts_ms), T0 + end_ms)


def asr_failed(start_ms: int) -> DeadLetter:
    return dead_letter(
        "asr", "asr_error", RuntimeError, "boom", call_id=CALL, event_time_ms=T0 + start_ms
    )


class Watermark(NamedTuple):
    """The watermark moves to ``at_ms`` after T0: due event-time timers fire."""

    at_ms: int


class Clock(NamedTuple):
    """Processing time moves ``by_s`` forward: due processing-time timers fire."""

    by_s: float


class Key:
    """One call key's state, kept and advanced the way a runner keeps a stateful DoFn's."""

    def __init__(self, cfg: AggregationConfig) -> None:
        self.lifecycle = CallLifecycle(cfg)
        self.meta: CallMeta | None = None
        self.log: list[Any] = []  # the call's facts, transcripts and markers, as the job's bag
        self.event_ms: int | None = None
        self.wall_s: float | None = None
        self.now_s = NOW_S
        self.rows: list[tuple[CallRow, int]] = []  # (row, acked offsets)
        self.dead_letters: list[DeadLetter] = []
        self.counts: Counter[str] = Counter()

    def send(self, event: Any) -> Step:
        logs = CallLog.of_one(lambda: list(self.log))
        step = self.lifecycle.step(self.meta, logs, event, self.now_s)
        self.log.extend(step.append)
        for emit in step.rows:
            acked = len(list(logs.facts())) if emit.with_offsets else 0
            self.rows.append((emit.row, acked))
        self.dead_letters.extend(step.dead_letters)
        if step.clear_logs:
            self.log = []
        if step.timers.event_ms is not None:
            self.event_ms = step.timers.event_ms
        if step.timers.clear_wall:
            self.wall_s = None
        elif step.timers.wall_s is not None:
            self.wall_s = step.timers.wall_s
        self.meta = step.meta
        self.counts.update(step.counts)
        return step

    def run(self, script: list[Any]) -> Key:
        for event in script:
            if isinstance(event, Watermark):
                self.watermark(T0 + event.at_ms)
            elif isinstance(event, Clock):
                self.clock(event.by_s)
            else:
                self.send(event)
        return self

    def watermark(self, to_ms: int) -> None:
        while self.event_ms is not None and self.event_ms <= to_ms:
            fire, self.event_ms = self.event_ms, None
            self.send(EventTimerFired(fire))

    def clock(self, by_s: float) -> None:
        self.now_s += by_s
        while self.wall_s is not None and self.wall_s <= self.now_s:
            self.wall_s = None
            self.send(WallTimerFired())


def rows(key: Key) -> list[tuple[int, bool, str, int]]:
    """(version, is_final, close_reason, chunk_count) of every row, in order."""
    return [(r.version, r.is_final, r.close_reason, r.chunk_count) for r, _ in key.rows]


FIVE = [chunk(s) for s in range(5)]
PAST_GAP = Watermark(10_000)  # the 5 s gap after the last chunk
PAST_EXPIRY = Watermark(100_000)  # end + 60 s allowed lateness
PAST_TOMBSTONE = Watermark(1_000_000)  # + 600 s tombstone


class Case(NamedTuple):
    name: str
    cfg: AggregationConfig
    script: list[Any]
    rows: list[tuple[int, bool, str, int]]
    dead_letters: list[str] = []
    counts: dict[str, int] = {}


CHUNK_CASES = [
    Case(
        "in order, closed by inactivity",
        CFG,
        [*FIVE, Watermark(4_000), PAST_GAP],
        [(1, True, "inactivity", 5)],
        counts={"calls_opened": 1, "calls_finalized": 1},
    ),
    Case(
        "out of order: the row is the same",
        CFG,
        [chunk(3), chunk(1), chunk(4), chunk(0), chunk(2), PAST_GAP],
        [(1, True, "inactivity", 5)],
    ),
    Case(
        "the end-of-call marker closes at once",
        CFG,
        [*FIVE[:4], chunk(4, end_of_call=True)],
        [(1, True, "end_of_call", 5)],
    ),
    Case(
        "a marker that waits for the watermark keeps a chunk that comes after it",
        WAITS,
        [*FIVE[:3], chunk(4, end_of_call=True), chunk(3), Watermark(500)],
        [(1, True, "end_of_call", 5)],
    ),
    Case(
        "without that wait, a chunk after the marker makes a premature final and a v2",
        CFG,
        [*FIVE[:3], chunk(4, end_of_call=True), chunk(3), Clock(1)],
        [(1, True, "end_of_call", 4), (2, True, "late_correction", 5)],
        ["seq_gap"],  # seq 3 was missing from the premature final
        {"chunks_late": 1},
    ),
    Case(
        "a duplicate is counted once and dead-lettered",
        CFG,
        [*FIVE, chunk(2, offset=99), PAST_GAP],
        [(1, True, "inactivity", 5)],
        ["duplicate_seq"],
    ),
    Case(
        "a sequence gap is dead-lettered once",
        CFG,
        [chunk(0), chunk(1), chunk(4), PAST_GAP, chunk(5), Clock(2)],
        [(1, True, "inactivity", 3), (2, True, "late_correction", 4)],
        ["seq_gap"],
    ),
    Case(
        "late but allowed: a corrected version after the correction delay",
        CFG,
        [*FIVE, PAST_GAP, chunk(5, at_ms=20_000), Clock(0.5), Clock(0.6)],
        [(1, True, "inactivity", 5), (2, True, "late_correction", 6)],
        counts={"chunks_late": 1, "rows_corrected": 1},
    ),
    Case(
        "expired: the last row again with every offset, then too late",
        CFG,
        [*FIVE, PAST_GAP, PAST_EXPIRY, chunk(9, at_ms=90_000)],
        [(1, True, "inactivity", 5), (1, True, "inactivity", 5)],
        ["too_late"],
        {"chunks_too_late": 1},
    ),
    Case(
        "a pending correction is not lost to expiry",
        CFG,
        [*FIVE, PAST_GAP, chunk(5, at_ms=20_000), PAST_EXPIRY],
        [(1, True, "inactivity", 5), (2, True, "late_correction", 6),
         (2, True, "late_correction", 6)],
    ),
    Case(
        "after the tombstone the call id starts a new call",
        CFG,
        [*FIVE, PAST_GAP, PAST_EXPIRY, PAST_TOMBSTONE, chunk(0, at_ms=2_000_000),
         Watermark(2_010_000)],
        [(1, True, "inactivity", 5), (1, True, "inactivity", 5), (1, True, "inactivity", 1)],
        counts={"calls_opened": 2},
    ),
    Case(
        "a duplicate after the final row is dead-lettered too",
        CFG,
        [*FIVE, PAST_GAP, chunk(1, offset=7), Clock(1)],
        [(1, True, "inactivity", 5), (2, True, "late_correction", 5)],
        ["duplicate_seq"],
    ),
    Case(
        "live rows every live interval while open, version 0",
        LIVE,
        [*FIVE, Clock(10), Clock(10), PAST_GAP, Clock(10)],
        [(0, False, "live", 5), (0, False, "live", 5), (1, True, "inactivity", 5)],
        counts={"rows_live": 2},
    ),
    Case(
        "a call processed before continues its versions",
        PRIOR,
        [*FIVE, PAST_GAP],
        [(3, True, "inactivity", 5)],
    ),
]  # fmt: skip

ALL_IN = [segmented(600, 0, 300), transcript(0, 200), transcript(300, 450)]

ASR_CASES = [
    Case(
        "waits for its transcripts, then final and complete",
        ASR,
        [*FIVE, PAST_GAP, *ALL_IN],
        [(1, True, "inactivity", 5)],
        counts={"transcripts_joined": 2, "calls_final_without_transcripts": 0},
    ),
    Case(
        "transcripts before the close: final at the close",
        ASR,
        [*FIVE, *ALL_IN, PAST_GAP],
        [(1, True, "inactivity", 5)],
    ),
    Case(
        "a channel not yet segmented holds the final row",
        ASR,
        [*FIVE, PAST_GAP, transcript(0, 200), transcript(300, 450)],
        [],
    ),
    Case(
        "a marker twice, or a flush re-announcing an utterance, counts it once",
        ASR,
        [*FIVE, PAST_GAP, segmented(600, 0, 300), segmented(600, 0, 300), segmented(600, 0),
         transcript(0, 200), transcript(300, 450)],
        [(1, True, "inactivity", 5)],
        counts={"calls_final_without_transcripts": 0},
    ),
    Case(
        "missing transcripts time out: final and incomplete",
        ASR,
        [*FIVE, PAST_GAP, segmented(600, 0, 300), transcript(0, 200), Clock(29), Clock(2)],
        [(1, True, "inactivity", 5)],
        counts={"calls_transcripts_timed_out": 1, "calls_final_without_transcripts": 1},
    ),
    Case(
        "an ASR failure completes the call's coverage",
        ASR,
        [*FIVE, PAST_GAP, segmented(600, 0, 300), transcript(0, 200), asr_failed(300)],
        [(1, True, "inactivity", 5)],
        counts={"calls_final_without_transcripts": 0},
    ),
    Case(
        "a late transcript corrects the final row",
        ASR,
        [*FIVE, PAST_GAP, segmented(600, 0, 300), transcript(0, 200), Clock(31),
         transcript(300, 450), Clock(1.5)],
        [(1, True, "inactivity", 5), (2, True, "late_correction", 5)],
        counts={"transcripts_late": 1},
    ),
    Case(
        "a transcript after expiry is too late",
        ASR,
        [*FIVE, PAST_GAP, *ALL_IN, PAST_EXPIRY, transcript(700, 900)],
        [(1, True, "inactivity", 5), (1, True, "inactivity", 5)],
        ["transcript_too_late"],
    ),
    Case(
        "transcripts of a call that never opened are dead letters",
        ASR,
        [transcript(0, 200), segmented(600, 0), Watermark(200_000)],
        [],
        ["transcript_too_late"],
        {"transcripts_too_late": 1, "calls_opened": 0},
    ),
    Case(
        "streaming expiry waits one transcript timeout for missing transcripts",
        ASR,
        [*FIVE, PAST_GAP, segmented(600, 0, 300), Clock(31), PAST_EXPIRY, transcript(0, 200),
         Clock(1), transcript(300, 450), Clock(1)],
        [(1, True, "inactivity", 5), (2, True, "late_correction", 5),
         (3, True, "late_correction", 5), (3, True, "late_correction", 5)],
    ),
    Case(
        "bounded: the close waits for the end of the input, not the clock",
        BOUNDED,
        [*FIVE, PAST_GAP, segmented(600, 0, 300), transcript(0, 200), Clock(3_600),
         Watermark(END_OF_INPUT_MS - T0)],
        # the end of the input fires every timer: the final row, then its expiry
        [(1, True, "inactivity", 5), (1, True, "inactivity", 5)],
        counts={"calls_transcripts_timed_out": 1, "calls_final_without_transcripts": 1},
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CHUNK_CASES + ASR_CASES, ids=lambda c: c.name)
def test_lifecycle(case: Case) -> None:
    key = Key(case.cfg).run(case.script)
    assert rows(key) == case.rows
    assert sorted(d.reason for d in key.dead_letters) == sorted(case.dead_letters)
    for name, n in case.counts.items():
        assert key.counts[name] == n, name


def test_the_expiry_row_carries_every_offset_and_the_logs_are_dropped() -> None:
    key = Key(CFG).run([*FIVE, PAST_GAP, PAST_EXPIRY])
    assert [acked for _, acked in key.rows] == [0, 5]
    assert key.meta is not None and key.meta.status == EXPIRED
    assert key.log == []
    assert key.wall_s is None
    assert key.event_ms == T0 + 500 + 60_000 + 600_000  # the tombstone's end
    key.run([PAST_TOMBSTONE])
    assert key.meta is None


def test_an_open_call_keeps_its_gap_timer_at_the_latest_chunk() -> None:
    key = Key(CFG).run([chunk(3), chunk(0)])
    assert key.meta is not None and key.meta.status == OPEN
    assert key.event_ms == T0 + 400 + 5_000  # chunk 3 ends at 400 ms; an earlier one keeps it


def test_a_chunk_on_an_open_call_reads_no_log() -> None:
    """The step appends; it reads the stored logs only when the call closes or reports."""

    def unread() -> list[Any]:
        raise AssertionError("log read")

    lifecycle = CallLifecycle(CFG)
    opened = lifecycle.step(None, CallLog(unread, unread, unread), chunk(0), NOW_S)
    step = lifecycle.step(opened.meta, CallLog(unread, unread, unread), chunk(1), NOW_S)
    assert step.append and not step.rows
    assert step.meta is not None and step.meta.status == OPEN


def test_a_closed_call_waits_for_the_correction_delay() -> None:
    key = Key(CFG).run([*FIVE, PAST_GAP, chunk(5, at_ms=20_000)])
    assert key.meta is not None and key.meta.status == CLOSED and key.meta.late_pending
    assert key.wall_s == pytest.approx(NOW_S + CFG.correction_delay_s)


def test_the_final_row_has_the_calls_qa_metrics() -> None:
    key = Key(ASR).run([*FIVE, PAST_GAP, *ALL_IN])
    (row, _), = key.rows  # fmt: skip
    assert row.metrics is not None
    assert row.metrics.transcripts_complete
    assert row.metrics.utterance_count == 2


def test_an_asr_failure_is_counted_in_the_row() -> None:
    key = Key(ASR).run(
        [*FIVE, PAST_GAP, segmented(600, 0, 300), transcript(0, 200), asr_failed(300)]
    )
    (row, _), = key.rows  # fmt: skip
    assert row.metrics is not None
    assert row.metrics.transcripts_complete
    assert row.metrics.transcript_failures == 1
