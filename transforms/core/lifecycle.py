"""The life of one call as a pure step function: (state, event, now) → (state, outputs).

``CallLifecycle.step`` decides everything ``AggregateCalls`` does for one call key; its DoFn
only reads the key's state, calls the step and writes back what the step asks for. The same
step is what the table-driven tests drive, with no runner.

States of a call (``CallMeta.status``):

* **open**: chunks are kept as ``ChunkFact`` (no audio). The event-time timer sits at
  ``end of the latest chunk + inactivity_gap_s``; the processing-time timer emits a live row
  (``is_final=False``) every ``live_interval_s``.
* **closing** (open with ``closing`` set; with ASR only): the call reached its end (marker or
  gap) and waits until every channel with audio is segmented and every announced utterance is
  transcribed or failed, at most ``transcript_timeout_s`` of processing time (bounded runs:
  until the end of the input). Then the final row, ``transcripts_complete = false`` if it
  timed out.
* **closed** (until the watermark passes ``end + allowed_lateness_s``): a late chunk or a late
  transcript is absorbed and, ``correction_delay_s`` later in processing time, a corrected
  final row ``version=n+1`` with everything so far is emitted. Consumers keep the highest.
* **expired**: the call's logs are dropped and its last final row is emitted once more with
  the offsets of all its chunks (committed once that row is durable). A chunk or transcript
  arriving now is dead-lettered as too late. After ``tombstone_ttl_s`` of event time the key
  is forgotten (a call id reused after that starts a new call: call ids must be unique).

State is ``CallMeta`` (small, constant size) plus three append-only logs the runner stores
(``CallLog``: chunk facts, transcripts, segmentation markers and failed utterances). The step
reads the logs lazily and returns what to append, so an open call's chunk costs no log read.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

from schemas.records import (
    AudioChunk,
    CallRow,
    ChunkFact,
    DeadLetter,
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

if TYPE_CHECKING:  # scoring needs the [qa] extra; a job without ASR must not
    from transforms.core.scorecard import Scorecard

STAGE: Final = "aggregate"
_LOG = logging.getLogger(__name__)

OPEN: Final = "open"
CLOSED: Final = "closed"
EXPIRED: Final = "expired"

#: The last event-time moment of a bounded input, in ms: the global window's end
#: (9223371950454774999 µs in Beam) a second early and in whole milliseconds (runners keep
#: timers in milliseconds, so the window end itself would come back truncated and compare below
#: it). ``tests/unit/transforms/test_aggregate_teststream.py`` checks it against Beam's value.
END_OF_INPUT_MS: Final = 9_223_371_950_454_774 - 1_000

#: Metric names the step counts (``Step.counts``), all in the ``callqa.aggregate`` namespace.
CALLS_OPENED: Final = "calls_opened"
CALLS_FINALIZED: Final = "calls_finalized"
ROWS_LIVE: Final = "rows_live"
ROWS_CORRECTED: Final = "rows_corrected"
CHUNKS_LATE: Final = "chunks_late"
CHUNKS_TOO_LATE: Final = "chunks_too_late"
TRANSCRIPTS_JOINED: Final = "transcripts_joined"
TRANSCRIPTS_LATE: Final = "transcripts_late"
TRANSCRIPTS_TOO_LATE: Final = "transcripts_too_late"
TIMED_OUT: Final = "calls_transcripts_timed_out"
#: Final rows emitted without all their transcripts: a bounded run that counts any failed.
INCOMPLETE_COUNTER: Final = "calls_final_without_transcripts"
COUNTERS: Final = (
    CALLS_OPENED,
    CALLS_FINALIZED,
    ROWS_LIVE,
    ROWS_CORRECTED,
    CHUNKS_LATE,
    CHUNKS_TOO_LATE,
    TRANSCRIPTS_JOINED,
    TRANSCRIPTS_LATE,
    TRANSCRIPTS_TOO_LATE,
    TIMED_OUT,
    INCOMPLETE_COUNTER,
)


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
    """Per-call bookkeeping kept beside the logs (small, constant size)."""

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


class FailedUtterance(NamedTuple):
    """An utterance that will have no transcript (ASR failed, or its transcript was
    quarantined), kept in the ``done`` log beside the markers. Its dead letter names the call
    and the utterance's start, not the channel."""

    start_ms: int


class EventTimerFired(NamedTuple):
    """The call's event-time timer fired at ``at_ms``."""

    at_ms: int


class WallTimerFired(NamedTuple):
    """The call's processing-time timer fired."""


#: What a call key receives: its chunks (audio dropped), with ASR its transcripts, markers and
#: failures (transcript-path dead letters), and its two timers.
Event = AudioChunk | Transcript | SegmentationDone | DeadLetter | EventTimerFired | WallTimerFired
#: What the ``done`` log holds.
Done = SegmentationDone | FailedUtterance


class CallLog(NamedTuple):
    """Read access to a call's stored logs: Beam bag states in the job, lists in tests."""

    facts: Callable[[], Iterable[ChunkFact]]
    transcripts: Callable[[], Iterable[Transcript]]
    done: Callable[[], Iterable[Done]]

    @classmethod
    def of(
        cls,
        facts: Iterable[ChunkFact] = (),
        transcripts: Iterable[Transcript] = (),
        done: Iterable[Done] = (),
    ) -> CallLog:
        f, t, d = list(facts), list(transcripts), list(done)
        return cls(lambda: f, lambda: t, lambda: d)

    @classmethod
    def of_one(cls, read: Callable[[], Iterable[ChunkFact | Transcript | Done]]) -> CallLog:
        """The three logs kept in one store (the job's one bag state), told apart by type. The
        store is read once, when a log is first asked for: make a new one for each step."""
        split: list[tuple[list[ChunkFact], list[Transcript], list[Done]]] = []

        def parts() -> tuple[list[ChunkFact], list[Transcript], list[Done]]:
            if not split:
                facts: list[ChunkFact] = []
                transcripts: list[Transcript] = []
                done: list[Done] = []
                for item in read():
                    if isinstance(item, ChunkFact):
                        facts.append(item)
                    elif isinstance(item, Transcript):
                        transcripts.append(item)
                    else:
                        done.append(item)
                split.append((facts, transcripts, done))
            return split[0]

        return cls(lambda: parts()[0], lambda: parts()[1], lambda: parts()[2])


class Emit(NamedTuple):
    """A call row to write; ``with_offsets``: carry the acks of all the call's chunk offsets."""

    row: CallRow
    with_offsets: bool = False


class Timers(NamedTuple):
    """Timer requests: ``None`` leaves a timer as it is."""

    event_ms: int | None = None  # set the event-time timer
    wall_s: float | None = None  # set the processing-time timer (epoch seconds)
    clear_wall: bool = False  # clear the processing-time timer


class Step(NamedTuple):
    """What one event does to a call. ``meta`` None: the key keeps no bookkeeping."""

    meta: CallMeta | None
    append: tuple[ChunkFact | Transcript | Done, ...] = ()
    clear_logs: bool = False  # after the rows are emitted (their offsets read)
    rows: tuple[Emit, ...] = ()
    dead_letters: tuple[DeadLetter, ...] = ()
    timers: Timers = Timers()
    counts: tuple[str, ...] = ()  # metric names, once per increment


class Coverage(NamedTuple):
    """How far a call's transcripts cover what segmentation announced, by utterance (channel,
    start): a marker delivered twice, or a flush re-fired over the same utterances, counts
    them once."""

    announced: int  # utterances announced or received
    received: int  # distinct transcripts
    failed: int  # announced utterances without a transcript whose start has a failure

    @property
    def missing(self) -> int:
        return self.announced - self.received - self.failed


@dataclass(frozen=True)
class CallLifecycle:
    """The step function with what it needs: the config and the loaded scorecard."""

    cfg: AggregationConfig
    scorecard: Scorecard | None = None
    _prior: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_prior", dict(self.cfg.prior_versions))

    def step(self, meta: CallMeta | None, log: CallLog, event: Event, now_s: float) -> Step:
        """One event for one call; ``now_s`` is the processing time (epoch seconds)."""
        out = _Effects(log)
        if isinstance(event, EventTimerFired):
            meta = self._on_event_timer(meta, out, event.at_ms, now_s)
        elif isinstance(event, WallTimerFired):
            meta = self._on_wall_timer(meta, out, now_s)
        elif isinstance(event, AudioChunk):
            meta = self._on_chunk(meta, out, event, now_s)
        else:
            meta = self._on_asr_event(meta, out, event, now_s)
        return out.result(meta)

    # -- events -------------------------------------------------------------------------------

    def _on_chunk(
        self, meta: CallMeta | None, out: _Effects, chunk: AudioChunk, now_s: float
    ) -> CallMeta:
        cfg = self.cfg
        if meta is not None and meta.status == EXPIRED:
            out.count(CHUNKS_TOO_LATE)
            out.dead_letters.append(_too_late(chunk, meta))
            return meta
        fact = chunk_fact(chunk)
        out.add(fact)
        if meta is None:
            out.count(CALLS_OPENED)
            prior = self._prior.get(chunk.call_id, 0)
            meta = CallMeta(OPEN, call_info(chunk), fact_end_ms(fact), prior, False, "")
            if cfg.live_interval_s > 0:
                out.set_wall(now_s + cfg.live_interval_s)
        if meta.status != OPEN:  # CLOSED: a late chunk; a corrected version follows shortly
            out.count(CHUNKS_LATE)
            return self._correction_due(meta, out, now_s)
        meta = meta._replace(max_end_ms=max(meta.max_end_ms, fact_end_ms(fact)))
        if chunk.end_of_call and not cfg.marker_waits_for_watermark:
            return self._close(meta, out, "end_of_call", now_s)
        meta = meta._replace(marker_seen=meta.marker_seen or chunk.end_of_call)
        out.set_event(meta.max_end_ms + (0 if meta.marker_seen else self._gap_ms))
        return meta

    def _on_asr_event(
        self,
        meta: CallMeta | None,
        out: _Effects,
        item: Transcript | SegmentationDone | DeadLetter,
        now_s: float,
    ) -> CallMeta | None:
        """A transcript, a segmentation marker or an ASR failure for this call."""
        if meta is not None and meta.status == EXPIRED:
            if isinstance(item, Transcript):
                out.count(TRANSCRIPTS_TOO_LATE)
                out.dead_letters.append(_transcript_too_late(item, meta))
            return meta
        if isinstance(item, Transcript):
            out.count(TRANSCRIPTS_JOINED)
            out.add(item)
        elif isinstance(item, SegmentationDone):
            out.add(item)
        else:  # a DeadLetter of the transcript path: that utterance will not come
            out.add(FailedUtterance(int(item.event_time_ms or 0)))
        if meta is None:
            # The call's chunks have not arrived yet (bounded runs), or the call was forgotten
            # (tombstone gone): clean up, with dead letters, if no chunk comes.
            out.set_event(_event_ms(item) + self._lateness_ms + self._gap_ms)
            return None
        if meta.status == OPEN and meta.closing and self._transcripts_ready(out):
            return self._finalize(meta, out, meta.closing)
        if meta.status == CLOSED and not isinstance(item, SegmentationDone):
            out.count(TRANSCRIPTS_LATE)
            return self._correction_due(meta, out, now_s)
        return meta

    def _on_event_timer(
        self, meta: CallMeta | None, out: _Effects, fire_ms: int, now_s: float
    ) -> CallMeta | None:
        cfg = self.cfg
        if meta is None:  # transcripts of a call whose chunks never came (or came too late)
            self._drop_orphans(out)
            return None
        if meta.status == OPEN:
            if not meta.closing:
                reason = "end_of_call" if meta.marker_seen else "inactivity"
                return self._close(meta, out, reason, now_s)
            if fire_ms >= END_OF_INPUT_MS:
                out.count(TIMED_OUT)
                return self._finalize(meta, out, meta.closing)
            self._set_end_of_input_deadline(out)  # a chunk's gap timer replaced the deadline
            return meta
        if meta.status == CLOSED:
            if (
                cfg.await_transcripts
                and not cfg.bounded
                and meta.expiry_deadline_s == 0.0
                and not self._transcripts_ready(out)
            ):
                # A backlog moves event time faster than ASR: the missing transcripts get one
                # more transcript timeout (processing time) before the call expires.
                out.set_wall(now_s + cfg.transcript_timeout_s)
                return meta._replace(expiry_deadline_s=now_s + cfg.transcript_timeout_s)
            return self._expire(meta, out, now_s)
        return None  # EXPIRED: the tombstone's time is up

    def _on_wall_timer(self, meta: CallMeta | None, out: _Effects, now_s: float) -> CallMeta | None:
        if meta is None:
            return None
        if meta.status == OPEN and meta.closing and now_s >= meta.closing_deadline_s:
            out.count(TIMED_OUT)
            return self._finalize(meta, out, meta.closing)
        if meta.status == OPEN:
            wait_s = math.inf
            if self.cfg.live_interval_s > 0:
                out.count(ROWS_LIVE)
                out.rows.append(Emit(self._row(meta, out, meta.versions, False, "live")))
                wait_s = self.cfg.live_interval_s
            if meta.closing:
                wait_s = min(wait_s, max(0.0, meta.closing_deadline_s - now_s))
            if wait_s < math.inf:
                out.set_wall(now_s + wait_s)
        elif meta.status == CLOSED:
            if meta.late_pending:
                meta = self._finalize(meta, out, "late_correction")
            if meta.expiry_deadline_s > 0.0:  # expiry waiting for transcripts
                if now_s >= meta.expiry_deadline_s or self._transcripts_ready(out):
                    meta = self._expire(meta, out, now_s)
                else:
                    out.set_wall(meta.expiry_deadline_s)
        return meta

    # -- transitions --------------------------------------------------------------------------

    def _correction_due(self, meta: CallMeta, out: _Effects, now_s: float) -> CallMeta:
        out.set_wall(now_s + self.cfg.correction_delay_s)
        return meta._replace(late_pending=True)

    def _close(self, meta: CallMeta, out: _Effects, reason: str, now_s: float) -> CallMeta:
        """The call reached its end: final now, or once its transcripts are in."""
        if self._transcripts_ready(out):
            return self._finalize(meta, out, reason)
        if meta.closing:
            return meta
        if self.cfg.bounded:  # processing time means nothing there
            self._set_end_of_input_deadline(out)
            return meta._replace(closing=reason, closing_deadline_s=math.inf)
        deadline_s = now_s + self.cfg.transcript_timeout_s
        out.set_wall(deadline_s)
        return meta._replace(closing=reason, closing_deadline_s=deadline_s)

    def _set_end_of_input_deadline(self, out: _Effects) -> None:
        """Bounded runs: the end of the input is the last moment a transcript can come (the
        watermark reaches the end only once every upstream stage is done). Streaming has no
        event-time deadline: a backlog moves event time far faster than ASR can follow."""
        if self.cfg.bounded:
            out.set_event(END_OF_INPUT_MS)

    def _finalize(self, meta: CallMeta, out: _Effects, reason: str) -> CallMeta:
        summary = summarize(out.facts())
        version = meta.versions + 1
        first = meta.last_row is None  # this run's first final row (prior versions: not v1)
        out.count(CALLS_FINALIZED if first else ROWS_CORRECTED)
        row = self._row(meta, out, version, True, reason)
        out.rows.append(Emit(row))
        for dl in sequence_dead_letters(meta.info, summary, STAGE):
            # Gaps are reported once, as seen at the first final row; every duplicate is
            # reported (a letter per offset, so re-reporting one rewrites the same file).
            if first or dl.reason == "duplicate_seq":
                out.dead_letters.append(dl)
        end_ms = max(meta.max_end_ms, summary.end_ms)
        out.set_event(end_ms + self._lateness_ms)
        return meta._replace(
            status=CLOSED,
            versions=version,
            late_pending=False,
            max_end_ms=end_ms,
            last_reason=reason,
            closing="",
            last_row=row,
        )

    def _expire(self, meta: CallMeta, out: _Effects, now_s: float) -> CallMeta:
        """No more versions. Re-emit the last final row (the write-once sink keeps the file)
        with the call's offsets, so they are committed only once it is durable."""
        if meta.late_pending:  # the correction must not be lost to expiry
            meta = self._finalize(meta, out, "late_correction")
        assert meta.last_row is not None, "a closed call has a final row"
        out.rows.append(Emit(meta.last_row, with_offsets=True))
        out.clear_logs = True
        out.clear_wall()
        expired_at_ms = meta.max_end_ms + self._lateness_ms
        out.set_event(expired_at_ms + int(self.cfg.tombstone_ttl_s * 1000))
        return meta._replace(status=EXPIRED, last_row=None)

    def _drop_orphans(self, out: _Effects) -> None:
        """Dead letters for the transcripts of a call that never opened (nothing is kept)."""
        for t in distinct_transcripts(out.transcripts()):
            out.count(TRANSCRIPTS_TOO_LATE)
            out.dead_letters.append(_transcript_too_late(t, None))
        out.clear_logs = True

    # -- reading the logs ---------------------------------------------------------------------

    def _transcripts_ready(self, out: _Effects) -> bool:
        """Every channel with audio is segmented and every announced utterance is in."""
        if not self.cfg.await_transcripts:
            return True
        done = list(out.done())
        audio_end: dict[str, int] = {}
        for f in out.facts():
            audio_end[f.channel] = max(audio_end.get(f.channel, 0), fact_end_ms(f))
        segmented = segmented_to(done)
        # Every channel segmented up to its last audio: no utterance is still unannounced.
        if any(segmented.get(ch, -1) < end for ch, end in audio_end.items()):
            return False
        return coverage(done, out.transcripts()).missing == 0

    def _row(
        self, meta: CallMeta, out: _Effects, version: int, final: bool, reason: str
    ) -> CallRow:
        summary = summarize(out.facts())
        metrics = scorecard = None
        if self.cfg.await_transcripts:
            transcripts = distinct_transcripts(out.transcripts())
            done = list(out.done())
            cov = coverage(done, transcripts)
            metrics = call_metrics(
                transcripts,
                summary.start_ms,
                summary.end_ms,
                self.cfg.qa,
                expected_utterances=cov.announced if final else None,
                transcript_failures=cov.failed,
            )
            if not final:  # a live row is complete only in what it has seen so far
                metrics = metrics._replace(transcripts_complete=False)
            elif not metrics.transcripts_complete:
                out.count(INCOMPLETE_COUNTER)
                _LOG.warning(
                    "call %s: final row v%d (%s) without all transcripts: %d of %d in, %d "
                    "failed; segmented to %s",
                    meta.info.call_id, version, reason, cov.received, cov.announced, cov.failed,
                    segmented_to(done),
                )  # fmt: skip
            elif self.scorecard is not None:
                from transforms.core.scorecard import score_call

                scorecard = score_call(self.scorecard, transcripts, metrics)
        return call_row(meta.info, summary, version, final, reason)._replace(
            metrics=metrics, scorecard=scorecard
        )

    @property
    def _gap_ms(self) -> int:
        return int(self.cfg.inactivity_gap_s * 1000)

    @property
    def _lateness_ms(self) -> int:
        return int(self.cfg.allowed_lateness_s * 1000)


class _Effects:
    """The outputs one step collects, and the logs as the step sees them (stored + appended)."""

    def __init__(self, log: CallLog) -> None:
        self._log = log
        self.appended: list[ChunkFact | Transcript | Done] = []
        self.clear_logs = False
        self.rows: list[Emit] = []
        self.dead_letters: list[DeadLetter] = []
        self.counts: list[str] = []
        self._timers = Timers()

    def add(self, item: ChunkFact | Transcript | Done) -> None:
        self.appended.append(item)

    def count(self, name: str) -> None:
        self.counts.append(name)

    def set_event(self, at_ms: int) -> None:
        self._timers = self._timers._replace(event_ms=at_ms)

    def set_wall(self, at_s: float) -> None:
        self._timers = self._timers._replace(wall_s=at_s, clear_wall=False)

    def clear_wall(self) -> None:
        self._timers = self._timers._replace(wall_s=None, clear_wall=True)

    def facts(self) -> Iterable[ChunkFact]:
        new = [a for a in self.appended if isinstance(a, ChunkFact)]
        return itertools.chain(self._log.facts(), new)

    def transcripts(self) -> Iterable[Transcript]:
        new = [a for a in self.appended if isinstance(a, Transcript)]
        return itertools.chain(self._log.transcripts(), new)

    def done(self) -> Iterable[Done]:
        new = [a for a in self.appended if isinstance(a, SegmentationDone | FailedUtterance)]
        return itertools.chain(self._log.done(), new)

    def result(self, meta: CallMeta | None) -> Step:
        return Step(
            meta=meta,
            append=tuple(self.appended),
            clear_logs=self.clear_logs,
            rows=tuple(self.rows),
            dead_letters=tuple(self.dead_letters),
            timers=self._timers,
            counts=tuple(self.counts),
        )


def distinct_transcripts(transcripts: Iterable[Transcript]) -> list[Transcript]:
    """One transcript per utterance (channel, start): a replay may deliver one twice."""
    by_key = {(t.channel, t.start_ms): t for t in transcripts}
    return [by_key[k] for k in sorted(by_key)]


def coverage(done: Iterable[Done], transcripts: Iterable[Transcript]) -> Coverage:
    done = list(done)
    failed_starts = {d.start_ms for d in done if isinstance(d, FailedUtterance)}
    announced = {
        (d.channel, start) for d in done if isinstance(d, SegmentationDone) for start in d.starts_ms
    }
    received = {(t.channel, t.start_ms) for t in transcripts}
    failed = sum(1 for _, start in announced - received if start in failed_starts)
    return Coverage(len(announced | received), len(received), failed)


def segmented_to(done: Iterable[Done]) -> dict[str, int]:
    """Per channel, the end of the audio segmentation has flushed."""
    out: dict[str, int] = {}
    for d in done:
        if isinstance(d, SegmentationDone):
            out[d.channel] = max(out.get(d.channel, 0), d.end_ms)
    return out


def _event_ms(item: Transcript | SegmentationDone | DeadLetter) -> int:
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
