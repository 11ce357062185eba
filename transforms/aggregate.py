"""``AggregateCalls``: ``AudioChunk`` → ``CallRow`` per call, in event time, with a stateful DoFn.

Why not Sessions windows: Prism 2.77 rejects them with any non-default trigger and gives
overlapping partial sessions with the default one (apache/beam#31438). A stateful DoFn keyed by
call id with timers gives the same semantics on every runner (docs/design.md).

The call's life (open, closing, closed, expired; corrections, transcript coverage, timeouts)
is decided by the pure step function ``transforms.core.lifecycle.CallLifecycle.step``;
``AggregateCallFn`` only reads the key's state, calls the step and writes back its state,
timers and outputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

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
from apache_beam.utils.timestamp import Timestamp

from schemas.records import AudioChunk, ChunkRun, OffsetAck, RowWithAck
from transforms.core.lifecycle import (
    COUNTERS,
    AggregationConfig,
    CallLifecycle,
    CallLog,
    Event,
    EventTimerFired,
    Step,
    WallTimerFired,
)
from transforms.io.commit import offset_acks

DEAD_LETTER_TAG: Final = "dead_letter"
_NS: Final = "callqa.aggregate"


class AggregateCallFn(beam.DoFn):
    """Stateful DoFn over ``(call_id, event)``; outputs ``RowWithAck`` and ``dead_letter``.

    ``event`` is an ``AudioChunk`` or a ``ChunkRun`` (audio dropped; a run is stepped through
    chunk by chunk, its state and timers written once) or, with ``await_transcripts``, a
    ``Transcript``, a ``SegmentationDone`` or a transcript-path ``DeadLetter``.

    Metrics (namespace ``callqa.aggregate``): ``transforms.core.lifecycle.COUNTERS``.
    """

    #: The call's chunk facts, transcripts and markers in one bag (``CallLog.of_one``).
    LOG = BagStateSpec("log", PickleCoder())
    META = ReadModifyWriteStateSpec("meta", PickleCoder())
    EVENT_TIMER = TimerSpec("event", TimeDomain.WATERMARK)
    WALL_TIMER = TimerSpec("wall", TimeDomain.REAL_TIME)

    def __init__(self, cfg: AggregationConfig) -> None:
        self._cfg = cfg
        self._counters = {name: Metrics.counter(_NS, name) for name in COUNTERS}

    def setup(self) -> None:
        scorecard = None
        if self._cfg.await_transcripts and self._cfg.scorecard != "off":
            from transforms.core.scorecard import default_scorecard, load_scorecard

            scorecard = (
                default_scorecard()
                if self._cfg.scorecard == "default"
                else load_scorecard(self._cfg.scorecard)
            )
        self._lifecycle = CallLifecycle(self._cfg, scorecard)

    def process(
        self,
        element: tuple[str, Any],
        log: Any = beam.DoFn.StateParam(LOG),
        meta: Any = beam.DoFn.StateParam(META),
        event_timer: Any = beam.DoFn.TimerParam(EVENT_TIMER),
        wall_timer: Any = beam.DoFn.TimerParam(WALL_TIMER),
    ) -> Iterator[Any]:
        event = element[1]
        events = event.chunks if isinstance(event, ChunkRun) else (event,)
        yield from self._step(events, log, meta, event_timer, wall_timer)

    @on_timer(EVENT_TIMER)
    def on_event_time(
        self,
        fire_ts: Any = beam.DoFn.TimestampParam,
        log: Any = beam.DoFn.StateParam(LOG),
        meta: Any = beam.DoFn.StateParam(META),
        event_timer: Any = beam.DoFn.TimerParam(EVENT_TIMER),
        wall_timer: Any = beam.DoFn.TimerParam(WALL_TIMER),
    ) -> Iterator[Any]:
        fired = EventTimerFired(fire_ts.micros // 1000)
        yield from self._step((fired,), log, meta, event_timer, wall_timer)

    @on_timer(WALL_TIMER)
    def on_wall_time(
        self,
        log: Any = beam.DoFn.StateParam(LOG),
        meta: Any = beam.DoFn.StateParam(META),
        event_timer: Any = beam.DoFn.TimerParam(EVENT_TIMER),
        wall_timer: Any = beam.DoFn.TimerParam(WALL_TIMER),
    ) -> Iterator[Any]:
        yield from self._step((WallTimerFired(),), log, meta, event_timer, wall_timer)

    def _step(
        self, events: Sequence[Event], log: Any, meta: Any, event_timer: Any, wall_timer: Any
    ) -> Iterator[Any]:
        """Read the key's state, take one lifecycle step per event, write back what they ask
        for: the log as it goes (a step may read the one before's), the bookkeeping and each
        timer once, as the last step left them."""
        now_s = Timestamp.now().micros / 1e6
        current = meta.read()
        event_ms: int | None = None
        wall_s: float | None = None  # the last wall-timer request: set there, or
        clear_wall = False  # ... cleared
        for event in events:
            step: Step = self._lifecycle.step(current, CallLog.of_one(log.read), event, now_s)
            for item in step.append:
                log.add(item)
            for emit in step.rows:
                acks: tuple[OffsetAck, ...] = ()
                if emit.with_offsets:  # read again: the step's own appends are in the store
                    acks = offset_acks(emit.row.source_topic, CallLog.of_one(log.read).facts())
                yield RowWithAck(emit.row, acks)
            for dl in step.dead_letters:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, dl)
            if step.clear_logs:
                log.clear()
            if step.timers.event_ms is not None:
                event_ms = step.timers.event_ms
            if step.timers.clear_wall or step.timers.wall_s is not None:
                clear_wall, wall_s = step.timers.clear_wall, step.timers.wall_s
            current = step.meta
            for name in step.counts:
                self._counters[name].inc()
        if event_ms is not None:
            event_timer.set(Timestamp(micros=event_ms * 1000))
        if clear_wall:
            wall_timer.clear()
        elif wall_s is not None:
            wall_timer.set(Timestamp(micros=round(wall_s * 1e6)))
        if current is None:
            meta.clear()
        else:
            meta.write(current)


def key_by_call(event: AudioChunk | ChunkRun) -> tuple[str, AudioChunk | ChunkRun]:
    """A chunk or run keyed by its call, without its audio."""
    if isinstance(event, ChunkRun):
        chunks = tuple(c._replace(pcm=b"") for c in event.chunks)
        return chunks[0].call_id, ChunkRun(chunks)
    return event.call_id, event._replace(pcm=b"")


class AggregateCalls(beam.PTransform):
    """``PCollection[AudioChunk | ChunkRun]`` → ``rows`` (RowWithAck of CallRow) and
    ``dead_letter``.

    With ASR the input is a dict: ``chunks`` (AudioChunk), ``transcripts`` (Transcript, once
    durable), ``segmented`` (SegmentationDone) and ``asr_failures`` (DeadLetter of the
    utterances that will never have a transcript).
    """

    def __init__(self, cfg: AggregationConfig) -> None:
        super().__init__()
        self._cfg = cfg

    def expand(self, inputs: Any) -> beam.pvalue.DoOutputsTuple:
        parts = inputs if isinstance(inputs, dict) else {"chunks": inputs}
        if set(parts) - {"chunks"} and not self._cfg.await_transcripts:
            raise ValueError("AggregateCalls got transcripts but await_transcripts is off")
        keyed = [
            parts["chunks"]
            # The audio is not needed here: dropping it before the shuffle to the keyed state
            # cuts what crosses the runner ~30x (a 100 ms chunk is 3.2 kB of PCM).
            | "KeyByCall" >> beam.Map(key_by_call).with_output_types(tuple[str, Any])
        ]
        for name in ("transcripts", "segmented", "asr_failures"):
            if name in parts:
                keyed.append(
                    parts[name]
                    | f"KeyByCall_{name}"
                    >> beam.Map(lambda e: (e.call_id or "", e)).with_output_types(tuple[str, Any])
                )
        events = keyed[0] if len(keyed) == 1 else keyed | "JoinCallEvents" >> beam.Flatten()
        return events | "AggregateCall" >> beam.ParDo(AggregateCallFn(self._cfg)).with_outputs(
            DEAD_LETTER_TAG, main="rows"
        )
