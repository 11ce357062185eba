"""``SegmentSpeech``: ``AudioChunk`` → ``Utterance`` per (call, channel), with Silero VAD.

Where to cut is decided by ``transforms.core.segmentation.step`` (pure; its docstring tells
how): the stateful DoFn here only reads a channel's state, calls it, and writes back the state,
timers and outputs it returns.

Outputs: ``utterances`` (``Utterance``) and ``done`` (``SegmentationDone``): when a channel is
flushed, how many utterances it produced, so the per-call aggregation can tell when every
transcript of a call is in. The end-of-call marker travels on one channel only; in streaming
runs it is copied to the call's other channels (as an empty chunk) so all of them flush
together instead of waiting for the flush gap.
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

from schemas.audio import ROLES
from schemas.records import AudioChunk, ChunkRun
from transforms.core.segmentation import (
    FLUSH_TIMER,
    HOLE_TIMER,
    ChannelState,
    ChunkArrived,
    Event,
    FlushDue,
    HoleDue,
    SegmentOptions,
    chunk_end_ms,
    steps,
)

_NS: Final = "callqa.segment"
DONE_TAG: Final = "done"


class SegmentSpeechFn(beam.DoFn):
    """Stateful over ``((call_id, channel), AudioChunk | ChunkRun)`` → ``Utterance`` (main) and
    ``SegmentationDone`` (tagged ``done``) when a channel is flushed. A run's chunks are
    stepped through in order and the state written once (``segmentation.steps``).

    Metrics: ``utterances``, ``utterance_ms``, ``vad_runs``, ``late_audio_ms``.
    """

    CHUNKS = BagStateSpec("chunks", PickleCoder())  # BufferedAudio
    BUFFER = ReadModifyWriteStateSpec("buffer", PickleCoder())  # SegmentBuffer
    FLUSH = TimerSpec(FLUSH_TIMER, TimeDomain.WATERMARK)
    HOLE = TimerSpec(HOLE_TIMER, TimeDomain.WATERMARK)  # the watermark passed a hole: it is lost

    def __init__(self, opts: SegmentOptions) -> None:
        self._opts = opts
        self.utterances = Metrics.counter(_NS, "utterances")
        self.vad_runs = Metrics.counter(_NS, "vad_runs")
        self.speech_ms = Metrics.distribution(_NS, "utterance_ms")
        self.late_audio_ms = Metrics.counter(_NS, "late_audio_ms")

    def setup(self) -> None:
        if self._opts.vad_filter:
            from faster_whisper.vad import get_vad_model

            get_vad_model()  # load the ONNX model once per worker, not on the first chunk

    def process(
        self,
        element: tuple[tuple[str, str], AudioChunk | ChunkRun],
        ts: Any = beam.DoFn.TimestampParam,
        chunks: Any = beam.DoFn.StateParam(CHUNKS),
        buffer: Any = beam.DoFn.StateParam(BUFFER),
        flush: Any = beam.DoFn.TimerParam(FLUSH),
        hole: Any = beam.DoFn.TimerParam(HOLE),
    ) -> Iterator[Any]:
        got = element[1]
        arrived = [ChunkArrived(c) for c in (got.chunks if isinstance(got, ChunkRun) else (got,))]
        yield from self._step(arrived, ts, chunks, buffer, flush, hole)

    @on_timer(FLUSH)
    def on_flush(
        self,
        ts: Any = beam.DoFn.TimestampParam,
        chunks: Any = beam.DoFn.StateParam(CHUNKS),
        buffer: Any = beam.DoFn.StateParam(BUFFER),
        flush: Any = beam.DoFn.TimerParam(FLUSH),
        hole: Any = beam.DoFn.TimerParam(HOLE),
    ) -> Iterator[Any]:
        yield from self._step([FlushDue()], ts, chunks, buffer, flush, hole)

    @on_timer(HOLE)
    def on_hole(
        self,
        ts: Any = beam.DoFn.TimestampParam,
        chunks: Any = beam.DoFn.StateParam(CHUNKS),
        buffer: Any = beam.DoFn.StateParam(BUFFER),
        flush: Any = beam.DoFn.TimerParam(FLUSH),
        hole: Any = beam.DoFn.TimerParam(HOLE),
    ) -> Iterator[Any]:
        yield from self._step([HoleDue()], ts, chunks, buffer, flush, hole)

    def _step(
        self, events: Sequence[Event], ts: Any, chunks: Any, buffer: Any, flush: Any, hole: Any
    ) -> Iterator[Any]:
        """Read the state, call ``steps``, write what it returns back, and emit."""
        state = ChannelState(buffer.read(), chunks.read())
        out = steps(state, events, ts.micros // 1000, self._opts)
        if out.buffer is None:
            buffer.clear()
        else:
            buffer.write(out.buffer)
        if out.audio_reset:
            chunks.clear()
        for piece in out.audio_added:
            chunks.add(piece)
        timers = {FLUSH_TIMER: flush, HOLE_TIMER: hole}
        for request in out.timers:
            timers[request.timer].set(Timestamp(micros=request.at_ms * 1000))
        if out.vad_runs:
            self.vad_runs.inc(out.vad_runs)
        if out.late_audio_ms is not None:
            self.late_audio_ms.inc(out.late_audio_ms)
        for utterance in out.utterances:
            self.utterances.inc()
            self.speech_ms.update(utterance.end_ms - utterance.start_ms)
            yield utterance
        if out.done is not None:
            yield beam.pvalue.TaggedOutput(DONE_TAG, out.done)


def key_by_call_channel(
    got: AudioChunk | ChunkRun, copy_marker: bool
) -> Iterator[tuple[tuple[str, str], AudioChunk | ChunkRun]]:
    """Key a chunk or run by (call, channel); with ``copy_marker``, an end-of-call chunk also
    goes, emptied and stamped with its end, to the call's other channels so that they flush
    then."""
    chunks = got.chunks if isinstance(got, ChunkRun) else (got,)
    yield (chunks[0].call_id, chunks[0].channel), got
    if not copy_marker:
        return
    for chunk in chunks:
        if chunk.end_of_call:
            marker = chunk._replace(pcm=b"", num_samples=0, event_time_ms=chunk_end_ms(chunk))
            for role in ROLES:
                if role != chunk.channel:
                    yield (chunk.call_id, role), marker._replace(channel=role)


class SegmentSpeech(beam.PTransform):
    """``PCollection[AudioChunk | ChunkRun]`` → ``utterances`` (Utterance) and ``done``
    (SegmentationDone) per (call, channel)."""

    def __init__(self, opts: SegmentOptions) -> None:
        super().__init__()
        self._opts = opts

    def expand(self, chunks: beam.PCollection[AudioChunk]) -> beam.pvalue.DoOutputsTuple:
        # Bounded runs cut each channel when the watermark passes its end, so the marker (which
        # may arrive before a channel's audio there) must not flush anything early.
        copy_marker = not self._opts.segment_at_watermark
        return (
            chunks
            | "KeyByCallChannel" >> beam.FlatMap(key_by_call_channel, copy_marker)
            | "Segment"
            >> beam.ParDo(SegmentSpeechFn(self._opts)).with_outputs(DONE_TAG, main="utterances")
        )
