"""``AggregateCalls``: ``AudioChunk`` → ``CallRow`` per call, in event time, with a stateful DoFn.

Why not Sessions windows: Prism 2.77 rejects them with any non-default trigger and gives
overlapping partial sessions with the default one (apache/beam#31438). A stateful DoFn keyed by
call id with timers gives the same semantics on every runner.

Life of a call (one key):

* **open**: chunks are kept as ``ChunkFact`` (no audio). The event-time timer sits at
  ``end of the latest chunk + inactivity_gap_s``; the processing-time timer emits a live row
  (``is_final=False``) every ``live_interval_s``.
* **final**: on the end-of-call marker (at once) or when the watermark passes the gap, a final
  row ``version=1`` is emitted, plus dead letters for duplicate chunks and sequence gaps.
* **closed** (until the watermark passes ``end + allowed_lateness_s``): a late chunk is absorbed
  and, ``correction_delay_s`` later in processing time, a corrected final row ``version=n+1``
  with all chunks so far is emitted. Consumers keep the highest version.
* **expired**: chunk facts are dropped; a chunk arriving now is dead-lettered as ``too_late``.

With ASR (``await_transcripts``) the same DoFn also receives the call's transcripts (after they
are durable in the transcripts table), ASR failures and ``SegmentationDone`` markers. A call
that reaches its close (marker or gap) waits until every channel it has audio on is segmented
and every announced utterance is transcribed or failed, then emits its final row with QA
metrics and scorecard. If that takes longer than ``transcript_timeout_s`` (processing time;
bounded runs: at the end of the input), the final row is emitted with
``transcripts_complete = false``; a transcript that arrives after a final row produces a
corrected version, like a late chunk.
  A tombstone remains for ``tombstone_ttl_s`` of event time, then the key is forgotten (a
  call id reused after that starts a new call: call ids must be unique).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass
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
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.records import (
    AudioChunk,
    CallRow,
    DeadLetter,
    RowWithAck,
    SegmentationDone,
    Transcript,
    dead_letter,
)
from transforms.core.calls import (
    CallInfo,
    call_info,
    call_row,
    chunk_fact,
    fact_end_ms,
    sequence_dead_letters,
    summarize,
)
from transforms.core.qa_metrics import QaOptions, call_metrics
from transforms.io.commit import offset_acks

STAGE: Final = "aggregate"
DEAD_LETTER_TAG: Final = "dead_letter"
_NS: Final = "callqa.aggregate"
_LOG = logging.getLogger(__name__)

#: Final rows emitted without all their transcripts: a bounded run that counts any failed.
INCOMPLETE_COUNTER: Final = "calls_final_without_transcripts"

OPEN: Final = "open"
CLOSED: Final = "closed"
EXPIRED: Final = "expired"


@dataclass(frozen=True)
class AggregationConfig:
    inactivity_gap_s: float = 30.0
    live_interval_s: float = 10.0  # 0 turns live rows off
    allowed_lateness_s: float = 300.0
    correction_delay_s: float = 2.0
    tombstone_ttl_s: float = 3600.0
    #: False: the end-of-call marker closes the call at once (the lowest latency, if a key's
    #: elements arrive in order). True (what the jobs use): close when the watermark passes the
    #: marker. Runners do not keep a key's order: batch runners shuffle, and on Prism 2.77 a
    #: split bundle's residual chunks came after the call's marker (finals short of chunks).
    marker_waits_for_watermark: bool = False
    #: A bounded input (backfill, batch job): transcript timeouts are the end of the input, not
    #: processing time.
    bounded: bool = False
    #: With ASR: join the call's transcripts and wait for them before the final row.
    await_transcripts: bool = False
    transcript_timeout_s: float = 120.0
    qa: QaOptions = QaOptions()
    #: "default" (the packaged scorecard), "off", or a scorecard YAML path.
    scorecard: str = "default"
    #: (call id, final versions already in the warehouse): a call processed again (the batch
    #: job's ``--reprocess``, or a retry of a call whose row lacked transcripts) continues its
    #: versions, so its new row supersedes the stored one instead of conflicting with it.
    prior_versions: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.transcript_timeout_s <= 0:
            raise ValueError("transcript_timeout_s must be > 0")
        for name in ("inactivity_gap_s", "allowed_lateness_s", "tombstone_ttl_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.live_interval_s < 0 or self.correction_delay_s < 0:
            raise ValueError("live_interval_s and correction_delay_s must be >= 0")


class CallMeta(NamedTuple):
    """Per-call bookkeeping kept beside the chunk facts (small, constant size)."""

    status: str
    info: CallInfo
    max_end_ms: int
    versions: int  # final rows emitted so far
    late_pending: bool  # late chunks absorbed since the last final row
    last_reason: str  # close reason of the last final row
    marker_seen: bool = False  # end-of-call marker read, waiting for the watermark
    closing: str = ""  # close reason while waiting for transcripts ("" = not closing)
    closing_deadline_s: float = 0.0  # wall clock (s) after which it closes without them
    last_row: CallRow | None = None  # the last final row, re-emitted as is at expiry
    expiry_deadline_s: float = 0.0  # > 0: expiry waits for transcripts until this wall time


#: The last event-time moment of a bounded input: the global window's end, a second early and
#: in whole milliseconds (runners keep timers in milliseconds, so the window end itself would
#: come back truncated and compare below it).
_END_OF_INPUT: Final = Timestamp(
    micros=(GlobalWindow().max_timestamp().micros // 1000 - 1000) * 1000
)


def _ts(ms: int) -> Timestamp:
    return Timestamp(micros=ms * 1000)


class AggregateCallFn(beam.DoFn):
    """Stateful DoFn over ``(call_id, event)``; outputs ``RowWithAck`` and ``dead_letter``.

    ``event`` is an ``AudioChunk`` (audio dropped) or, with ``await_transcripts``, a
    ``Transcript``, a ``SegmentationDone`` or a transcript-path ``DeadLetter``.

    Metrics: ``calls_opened``, ``calls_finalized``, ``rows_live``, ``rows_corrected``,
    ``chunks_late``, ``chunks_too_late``, ``transcripts_joined``, ``transcripts_late``,
    ``transcripts_too_late``, ``calls_transcripts_timed_out``, ``calls_final_without_transcripts``.
    """

    FACTS = BagStateSpec("facts", PickleCoder())
    TRANSCRIPTS = BagStateSpec("transcripts", PickleCoder())
    DONE = BagStateSpec("done", PickleCoder())
    META = ReadModifyWriteStateSpec("meta", PickleCoder())
    EVENT_TIMER = TimerSpec("event", TimeDomain.WATERMARK)
    WALL_TIMER = TimerSpec("wall", TimeDomain.REAL_TIME)

    def __init__(self, cfg: AggregationConfig) -> None:
        self._cfg = cfg
        self.calls_opened = Metrics.counter(_NS, "calls_opened")
        self.calls_finalized = Metrics.counter(_NS, "calls_finalized")
        self.rows_live = Metrics.counter(_NS, "rows_live")
        self.rows_corrected = Metrics.counter(_NS, "rows_corrected")
        self.chunks_late = Metrics.counter(_NS, "chunks_late")
        self.chunks_too_late = Metrics.counter(_NS, "chunks_too_late")
        self.transcripts_joined = Metrics.counter(_NS, "transcripts_joined")
        self.transcripts_late = Metrics.counter(_NS, "transcripts_late")
        self.transcripts_too_late = Metrics.counter(_NS, "transcripts_too_late")
        self.timed_out = Metrics.counter(_NS, "calls_transcripts_timed_out")
        self.incomplete = Metrics.counter(_NS, INCOMPLETE_COUNTER)

    def setup(self) -> None:
        self._prior_versions = dict(self._cfg.prior_versions)
        self._scorecard: Any = None
        if self._cfg.await_transcripts and self._cfg.scorecard != "off":
            from transforms.core.scorecard import default_scorecard, load_scorecard

            self._scorecard = (
                default_scorecard()
                if self._cfg.scorecard == "default"
                else load_scorecard(self._cfg.scorecard)
            )

    def _gap_ms(self) -> int:
        return int(self._cfg.inactivity_gap_s * 1000)

    def _lateness_ms(self) -> int:
        return int(self._cfg.allowed_lateness_s * 1000)

    def process(
        self,
        element: tuple[str, Any],
        facts: Any = beam.DoFn.StateParam(FACTS),
        transcripts: Any = beam.DoFn.StateParam(TRANSCRIPTS),
        done: Any = beam.DoFn.StateParam(DONE),
        meta_state: Any = beam.DoFn.StateParam(META),
        event_timer: Any = beam.DoFn.TimerParam(EVENT_TIMER),
        wall_timer: Any = beam.DoFn.TimerParam(WALL_TIMER),
    ) -> Iterator[Any]:
        _, item = element
        meta: CallMeta | None = meta_state.read()
        state = _State(facts, transcripts, done, event_timer, wall_timer)
        if not isinstance(item, AudioChunk):
            meta = yield from self._asr_event(item, meta, state)
            if meta is not None:
                meta_state.write(meta)
            return
        chunk = item
        fact = chunk_fact(chunk)
        if meta is not None and meta.status == EXPIRED:
            self.chunks_too_late.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, _too_late(chunk, meta))
            return
        facts.add(fact)
        if meta is None:
            self.calls_opened.inc()
            prior = self._prior_versions.get(chunk.call_id, 0)
            meta = CallMeta(OPEN, call_info(chunk), fact_end_ms(fact), prior, False, "")
            if self._cfg.live_interval_s > 0:
                wall_timer.set(Timestamp.now() + Duration(seconds=self._cfg.live_interval_s))
        if meta.status == OPEN:
            meta = meta._replace(max_end_ms=max(meta.max_end_ms, fact_end_ms(fact)))
            if chunk.end_of_call and not self._cfg.marker_waits_for_watermark:
                meta = yield from self._close(meta, state, "end_of_call")
            else:
                meta = meta._replace(marker_seen=meta.marker_seen or chunk.end_of_call)
                wait_ms = 0 if meta.marker_seen else self._gap_ms()
                event_timer.set(_ts(meta.max_end_ms + wait_ms))
        else:  # CLOSED: a late chunk; a corrected version follows shortly
            self.chunks_late.inc()
            meta = self._correction_due(meta, wall_timer)
        meta_state.write(meta)

    def _asr_event(
        self, item: Any, meta: CallMeta | None, state: _State
    ) -> Generator[Any, None, CallMeta | None]:
        """A transcript, a segmentation marker or an ASR failure for this call."""
        if meta is not None and meta.status == EXPIRED:
            if isinstance(item, Transcript):
                self.transcripts_too_late.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, _transcript_too_late(item, meta))
            return meta
        if isinstance(item, Transcript):
            self.transcripts_joined.inc()
            state.transcripts.add(item)
        elif isinstance(item, SegmentationDone):
            state.done.add(item)
        else:  # a DeadLetter of the transcript path: that utterance will not come
            state.done.add(_Failed(int(item.event_time_ms or 0)))
        if meta is None:
            # The call's chunks have not arrived yet (bounded runs), or the call was forgotten
            # (tombstone gone): clean up, with dead letters, if no chunk comes.
            state.event_timer.set(_ts(_event_ms(item) + self._lateness_ms() + self._gap_ms()))
            return None
        if meta.status == OPEN and meta.closing and self._transcripts_ready(meta, state):
            return (yield from self._finalize(meta, state, meta.closing))
        if meta.status == CLOSED and not isinstance(item, SegmentationDone):
            self.transcripts_late.inc()
            return self._correction_due(meta, state.wall_timer)
        return meta

    def _correction_due(self, meta: CallMeta, wall_timer: Any) -> CallMeta:
        wall_timer.set(Timestamp.now() + Duration(seconds=self._cfg.correction_delay_s))
        return meta._replace(late_pending=True)

    def _transcripts_ready(self, meta: CallMeta, state: _State) -> bool:
        """Every channel with audio is segmented and every announced utterance is in."""
        if not self._cfg.await_transcripts:
            return True
        done = list(state.done.read())
        audio_end: dict[str, int] = {}
        for f in state.facts.read():
            audio_end[f.channel] = max(audio_end.get(f.channel, 0), fact_end_ms(f))
        segmented_to = _segmented_to(done)
        # Every channel segmented up to its last audio: no utterance is still unannounced.
        if any(segmented_to.get(ch, -1) < end for ch, end in audio_end.items()):
            return False
        return _coverage(done, state.transcripts.read()).missing == 0

    def _close(self, meta: CallMeta, state: _State, reason: str) -> Generator[Any, None, CallMeta]:
        """The call reached its end: final now, or once its transcripts are in."""
        if self._transcripts_ready(meta, state):
            return (yield from self._finalize(meta, state, reason))
        if not meta.closing:
            timeout = self._cfg.transcript_timeout_s
            if self._cfg.bounded:  # processing time means nothing there
                meta = meta._replace(closing=reason, closing_deadline_s=math.inf)
                self._set_end_of_input_deadline(state.event_timer)
            else:
                meta = meta._replace(
                    closing=reason, closing_deadline_s=Timestamp.now().micros / 1e6 + timeout
                )
                state.wall_timer.set(Timestamp.now() + Duration(seconds=timeout))
        return meta

    def _set_end_of_input_deadline(self, event_timer: Any) -> None:
        """Bounded runs: the end of the input is the last moment a transcript can come (the
        watermark reaches the end only once every upstream stage is done). Streaming has no
        event-time deadline: a backlog moves event time far faster than ASR can follow."""
        if self._cfg.bounded:
            event_timer.set(_END_OF_INPUT)

    def _row(
        self, meta: CallMeta, state: _State, version: int, final: bool, reason: str
    ) -> CallRow:
        summary = summarize(state.facts.read())
        metrics = scorecard = None
        if self._cfg.await_transcripts:
            transcripts = _distinct(state.transcripts.read())
            done = list(state.done.read())
            cov = _coverage(done, transcripts)
            metrics = call_metrics(
                transcripts,
                summary.start_ms,
                summary.end_ms,
                self._cfg.qa,
                expected_utterances=cov.announced if final else None,
                transcript_failures=cov.failed,
            )
            if not final:  # a live row is complete only in what it has seen so far
                metrics = metrics._replace(transcripts_complete=False)
            elif not metrics.transcripts_complete:
                self.incomplete.inc()
                _LOG.warning(
                    "call %s: final row v%d (%s) without all transcripts: %d of %d in, %d "
                    "failed; segmented to %s",
                    meta.info.call_id, version, reason, cov.received, cov.announced, cov.failed,
                    _segmented_to(done),
                )  # fmt: skip
            elif self._scorecard is not None:
                from transforms.core.scorecard import score_call

                scorecard = score_call(self._scorecard, transcripts, metrics)
        return call_row(meta.info, summary, version, final, reason)._replace(
            metrics=metrics, scorecard=scorecard
        )

    def _finalize(
        self, meta: CallMeta, state: _State, reason: str
    ) -> Generator[Any, None, CallMeta]:
        summary = summarize(state.facts.read())
        version = meta.versions + 1
        first = meta.last_row is None  # this run's first final row (prior versions: not v1)
        if first:
            self.calls_finalized.inc()
        else:
            self.rows_corrected.inc()
        row = self._row(meta, state, version, True, reason)
        yield RowWithAck(row)
        for dl in sequence_dead_letters(meta.info, summary, STAGE):
            # Gaps are reported once, as seen at the first final row; every duplicate is
            # reported (a letter per offset, so re-reporting one rewrites the same file).
            if first or dl.reason == "duplicate_seq":
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, dl)
        end_ms = max(meta.max_end_ms, summary.end_ms)
        state.event_timer.set(_ts(end_ms + self._lateness_ms()))
        return meta._replace(
            status=CLOSED,
            versions=version,
            late_pending=False,
            max_end_ms=end_ms,
            last_reason=reason,
            closing="",
            last_row=row,
        )

    @on_timer(EVENT_TIMER)
    def on_event_time(
        self,
        fire_ts: Any = beam.DoFn.TimestampParam,
        facts: Any = beam.DoFn.StateParam(FACTS),
        transcripts: Any = beam.DoFn.StateParam(TRANSCRIPTS),
        done: Any = beam.DoFn.StateParam(DONE),
        meta_state: Any = beam.DoFn.StateParam(META),
        event_timer: Any = beam.DoFn.TimerParam(EVENT_TIMER),
        wall_timer: Any = beam.DoFn.TimerParam(WALL_TIMER),
    ) -> Iterator[Any]:
        meta: CallMeta | None = meta_state.read()
        state = _State(facts, transcripts, done, event_timer, wall_timer)
        if meta is None:  # transcripts of a call whose chunks never came (or came too late)
            yield from self._drop_orphans(state)
            return
        if meta.status == OPEN:
            if not meta.closing:
                reason = "end_of_call" if meta.marker_seen else "inactivity"
                meta = yield from self._close(meta, state, reason)
            elif fire_ts >= _END_OF_INPUT:
                self.timed_out.inc()
                meta = yield from self._finalize(meta, state, meta.closing)
            else:  # a chunk's gap timer replaced the deadline: put it back
                self._set_end_of_input_deadline(event_timer)
            meta_state.write(meta)
        elif meta.status == CLOSED:
            if (
                self._cfg.await_transcripts
                and not self._cfg.bounded
                and meta.expiry_deadline_s == 0.0
                and not self._transcripts_ready(meta, state)
            ):
                # A backlog moves event time faster than ASR: the missing transcripts get one
                # more transcript timeout (processing time) before the call expires.
                timeout = self._cfg.transcript_timeout_s
                wall_timer.set(Timestamp.now() + Duration(seconds=timeout))
                meta_state.write(
                    meta._replace(expiry_deadline_s=Timestamp.now().micros / 1e6 + timeout)
                )
                return
            meta = yield from self._expire(meta, state)
            meta_state.write(meta)
        else:
            meta_state.clear()

    def _expire(self, meta: CallMeta, state: _State) -> Generator[Any, None, CallMeta]:
        """No more versions. Re-emit the last final row (the write-once sink keeps the file)
        with the call's offsets, so they are committed only once it is durable."""
        if meta.late_pending:  # the correction must not be lost to expiry
            meta = yield from self._finalize(meta, state, "late_correction")
        all_facts = list(state.facts.read())
        assert meta.last_row is not None, "a closed call has a final row"
        yield RowWithAck(meta.last_row, offset_acks(meta.info.topic, all_facts))
        state.facts.clear()
        state.transcripts.clear()
        state.done.clear()
        state.wall_timer.clear()
        expired_at = _ts(meta.max_end_ms + self._lateness_ms())
        state.event_timer.set(expired_at + Duration(seconds=self._cfg.tombstone_ttl_s))
        return meta._replace(status=EXPIRED, last_row=None)

    def _drop_orphans(self, state: _State) -> Iterator[Any]:
        """Dead letters for the transcripts of a call that never opened (nothing is kept)."""
        for t in _distinct(state.transcripts.read()):
            self.transcripts_too_late.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, _transcript_too_late(t, None))
        state.transcripts.clear()
        state.done.clear()

    @on_timer(WALL_TIMER)
    def on_wall_time(
        self,
        facts: Any = beam.DoFn.StateParam(FACTS),
        transcripts: Any = beam.DoFn.StateParam(TRANSCRIPTS),
        done: Any = beam.DoFn.StateParam(DONE),
        meta_state: Any = beam.DoFn.StateParam(META),
        event_timer: Any = beam.DoFn.TimerParam(EVENT_TIMER),
        wall_timer: Any = beam.DoFn.TimerParam(WALL_TIMER),
    ) -> Iterator[Any]:
        meta: CallMeta | None = meta_state.read()
        if meta is None:
            return
        state = _State(facts, transcripts, done, event_timer, wall_timer)
        now_s = Timestamp.now().micros / 1e6
        if meta.status == OPEN and meta.closing and now_s >= meta.closing_deadline_s:
            self.timed_out.inc()
            meta = yield from self._finalize(meta, state, meta.closing)
            meta_state.write(meta)
        elif meta.status == OPEN:
            if self._cfg.live_interval_s > 0:
                self.rows_live.inc()
                yield RowWithAck(self._row(meta, state, meta.versions, False, "live"))
                wait_s = self._cfg.live_interval_s
                if meta.closing:
                    wait_s = min(wait_s, max(0.0, meta.closing_deadline_s - now_s))
                wall_timer.set(Timestamp.now() + Duration(seconds=wait_s))
            elif meta.closing:
                wall_timer.set(
                    Timestamp.now() + Duration(seconds=max(0.0, meta.closing_deadline_s - now_s))
                )
        elif meta.status == CLOSED:
            if meta.late_pending:
                meta = yield from self._finalize(meta, state, "late_correction")
            if meta.expiry_deadline_s > 0.0:  # expiry waiting for transcripts
                if now_s >= meta.expiry_deadline_s or self._transcripts_ready(meta, state):
                    meta = yield from self._expire(meta, state)
                else:
                    wait_s = max(0.0, meta.expiry_deadline_s - now_s)
                    wall_timer.set(Timestamp.now() + Duration(seconds=wait_s))
            meta_state.write(meta)


class _State(NamedTuple):
    """The DoFn's state and timers for one call, passed around as one argument."""

    facts: Any
    transcripts: Any
    done: Any
    event_timer: Any
    wall_timer: Any


def _distinct(transcripts: Any) -> list[Transcript]:
    """One transcript per utterance (channel, start): a replay may deliver one twice."""
    by_key = {(t.channel, t.start_ms): t for t in transcripts}
    return [by_key[k] for k in sorted(by_key)]


class _Failed(NamedTuple):
    """An utterance that will have no transcript (ASR failed, or its transcript was
    quarantined), kept in the ``done`` bag beside the markers. Its dead letter names the call
    and the utterance's start, not the channel."""

    start_ms: int


class _Coverage(NamedTuple):
    """How far a call's transcripts cover what segmentation announced, by utterance (channel,
    start): a marker delivered twice, or a flush re-fired over the same utterances, counts
    them once."""

    announced: int  # utterances announced or received
    received: int  # distinct transcripts
    failed: int  # announced utterances without a transcript whose start has a failure

    @property
    def missing(self) -> int:
        return self.announced - self.received - self.failed


def _coverage(done: list[Any], transcripts: Any) -> _Coverage:
    failed_starts = {d.start_ms for d in done if isinstance(d, _Failed)}
    announced = {
        (d.channel, start) for d in done if isinstance(d, SegmentationDone) for start in d.starts_ms
    }
    received = {(t.channel, t.start_ms) for t in transcripts}
    failed = sum(1 for _, start in announced - received if start in failed_starts)
    return _Coverage(len(announced | received), len(received), failed)


def _segmented_to(done: list[Any]) -> dict[str, int]:
    """Per channel, the end of the audio segmentation has flushed."""
    out: dict[str, int] = {}
    for d in done:
        if isinstance(d, SegmentationDone):
            out[d.channel] = max(out.get(d.channel, 0), d.end_ms)
    return out


def _event_ms(item: Any) -> int:
    """The event time of a transcript-path element (a transcript, marker or dead letter)."""
    if isinstance(item, Transcript | SegmentationDone):
        return item.end_ms
    return int(item.event_time_ms or 0)


def _transcript_too_late(t: Transcript, meta: CallMeta | None) -> DeadLetter:
    what = (
        f"its final row v{meta.versions} stands; raise --allowed_lateness_s"
        if meta is not None
        else "no chunk of the call was seen within the allowed lateness"
    )
    return dead_letter(
        STAGE,
        "transcript_too_late",
        "lateness",
        f"transcript of {t.channel} at {t.start_ms} arrived after call {t.call_id} expired "
        f"({what})",
        call_id=t.call_id,
        event_time_ms=t.start_ms,
        topic=None if meta is None else meta.info.topic,
        partition=None if meta is None else meta.info.partition,
        size_bytes=len(t.text.encode()),
    )


def _too_late(chunk: AudioChunk, meta: CallMeta) -> DeadLetter:
    return dead_letter(
        STAGE,
        "too_late",
        "lateness",
        f"chunk {chunk.channel}#{chunk.seq} arrived after call {chunk.call_id} expired "
        f"(its final row v{meta.versions} stands; allowed lateness exceeded)",
        call_id=chunk.call_id,
        event_time_ms=chunk.event_time_ms,
        topic=chunk.topic,
        partition=chunk.partition,
        offset=chunk.offset,
        size_bytes=2 * chunk.num_samples * chunk.channels,
    )


class AggregateCalls(beam.PTransform):
    """``PCollection[AudioChunk]`` → ``rows`` (RowWithAck of CallRow) and ``dead_letter``.

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
            | "KeyByCall"
            >> beam.Map(lambda c: (c.call_id, c._replace(pcm=b""))).with_output_types(
                tuple[str, Any]
            )
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
