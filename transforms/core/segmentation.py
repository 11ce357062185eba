"""Where ``SegmentSpeech`` cuts one (call, channel)'s audio into utterances: pure decisions, no
Beam. The stage's DoFn reads its state, calls ``step`` and writes back what it returns.

The VAD is the Silero model faster-whisper ships as ONNX in its wheel (offline). Chunks are
laid out by event time into a per-(call, channel) buffer (a missing chunk becomes silence, so
times stay true); every ``vad_step_ms`` of new audio the VAD runs over the buffer, and speech
that ended at least ``min_silence_ms`` ago is emitted as an utterance with padding. Speech
that spans chunk boundaries stays in the buffer until it ends; ``max_utterance_s`` caps it.
The watermark passing the end-of-call marker, or ``flush_gap_s`` after the last chunk,
flushes the rest (at the marker itself, a key's last chunks may still be on their way).

Example: ``step(ChannelState(None), ChunkArrived(chunk), now_ms, opts)`` for a channel's first
chunk returns a ``Step`` whose ``buffer`` is the channel's new state cell, whose ``audio_added``
holds the chunk's audio at 16 kHz, and whose ``timers`` ask for the flush timer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final, NamedTuple

import numpy as np

from schemas.audio import CODEC_PCM_S16LE, PIPELINE_SAMPLE_RATE_HZ
from schemas.records import AudioChunk, BufferedAudio, SegmentationDone, SegmentBuffer, Utterance
from transforms.core.audio import encode, resample

_RATE: Final = PIPELINE_SAMPLE_RATE_HZ
NOISE_SUPPRESSION_LEVELS: Final = ("off", "moderate", "aggressive")
#: noisereduce (spectral gating) settings per level: stationary noise removed at 60 %, or
#: non-stationary noise tracked over time and removed at 90 %.
_NOISE_REDUCTION: Final[dict[str, dict[str, Any]]] = {
    "moderate": {"stationary": True, "prop_decrease": 0.6},
    "aggressive": {"stationary": False, "prop_decrease": 0.9},
}
#: The two event-time timers a channel asks for (the DoFn's timer ids).
FLUSH_TIMER: Final = "flush"  # cut everything and forget the channel
HOLE_TIMER: Final = "hole"  # the watermark passed a hole: it is a lost chunk


@dataclass(frozen=True)
class SegmentOptions:
    vad_filter: bool = True  # False: cut fixed windows of max_utterance_s (no VAD)
    # off | moderate | aggressive: spectral gating (noisereduce) on each utterance before ASR.
    # It does not change what the VAD hears, dereverberate, or remove babble and crosstalk.
    noise_suppression: str = "off"
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 500
    speech_pad_ms: int = 200
    max_utterance_s: float = 30.0
    vad_step_ms: int = 250  # how often the VAD looks at new audio (latency vs CPU)
    flush_gap_s: float = 30.0
    # A hole in a channel's audio is a lost chunk once the watermark is this far past it (then
    # the VAD reads it as silence): the lateness a chunk may have, behind the source's
    # watermark, and still be cut with its neighbours. A chunk that never comes delays its
    # channel's later utterances by this much event time.
    hole_wait_s: float = 30.0
    # Bounded runs: batch runners may hand a key's chunks over in any order, so each channel is
    # cut once, whole, when the watermark passes its end (the streaming path cuts as it goes).
    segment_at_watermark: bool = False

    def __post_init__(self) -> None:
        if self.noise_suppression not in NOISE_SUPPRESSION_LEVELS:
            raise ValueError(
                f"noise_suppression={self.noise_suppression!r} is not one of "
                f"{', '.join(NOISE_SUPPRESSION_LEVELS)}"
            )
        if self.max_utterance_s <= 0 or self.vad_step_ms <= 0 or self.flush_gap_s <= 0:
            raise ValueError("max_utterance_s, vad_step_ms and flush_gap_s must be > 0")
        if self.hole_wait_s < 0:
            raise ValueError("hole_wait_s must be >= 0")


class ChannelState(NamedTuple):
    """One (call, channel)'s state as ``step`` reads it: the DoFn's two state cells."""

    buffer: SegmentBuffer | None  # None: nothing held (no chunk yet, or flushed)
    audio: Iterable[BufferedAudio] = ()  # iterated only by a cut (a Beam bag reads lazily)


@dataclass(frozen=True)
class ChunkArrived:
    """A chunk of the channel (or, emptied, a copy of the call's end-of-call marker)."""

    chunk: AudioChunk


@dataclass(frozen=True)
class FlushDue:
    """The flush timer fired: the watermark passed the end-of-call marker or the flush gap."""


@dataclass(frozen=True)
class HoleDue:
    """The hole timer fired: the watermark is ``hole_wait_s`` past the hole the last cut stopped
    at, so what is still missing there is lost."""


Event = ChunkArrived | FlushDue | HoleDue


class TimerRequest(NamedTuple):
    timer: str  # FLUSH_TIMER | HOLE_TIMER
    at_ms: int  # event time to fire at (a timer set again moves)


class Step(NamedTuple):
    """What the DoFn writes and emits after one event. No dead letters: segmentation rejects
    nothing (audio before what was already cut is counted in ``late_audio_ms``)."""

    buffer: SegmentBuffer | None  # the new state cell; None: cleared (the channel is flushed)
    audio_reset: bool  # the held audio was cut: clear it before adding ``audio_added``
    audio_added: tuple[BufferedAudio, ...]  # append to the held audio
    utterances: tuple[Utterance, ...]
    done: SegmentationDone | None  # the channel was flushed
    timers: tuple[TimerRequest, ...]
    vad_runs: int  # for the metrics
    late_audio_ms: int | None  # audio before what was already cut, dropped; None: none came


_NOTHING: Final = Step(None, False, (), (), None, (), 0, None)


def step(state: ChannelState, event: Event, now_ms: int, opts: SegmentOptions) -> Step:
    """The channel's next state and outputs after ``event``, handled at event time ``now_ms``
    (a timer's firing time, or the chunk's timestamp). No I/O; the same inputs always give the
    same ``Step``."""
    if isinstance(event, ChunkArrived):
        return _on_chunk(state, event.chunk, opts)
    buf = state.buffer
    if buf is None:  # a timer of a channel already flushed
        return _NOTHING
    if isinstance(event, FlushDue):
        return _cut(buf, state.audio, opts, final=True)._replace(buffer=None)
    # The hole timer fires hole_wait_s after the hole's end: what is still missing up to
    # there is lost, and the VAD reads across it as silence.
    lost_to_ms = now_ms - int(opts.hole_wait_s * 1000)
    buf = buf._replace(lost_to_ms=max(buf.lost_to_ms, lost_to_ms))
    return _cut(buf, state.audio, opts, final=False)


def steps(state: ChannelState, events: Sequence[Event], now_ms: int, opts: SegmentOptions) -> Step:
    """``step`` over ``events`` in order (a ``ChunkRun``'s chunks), as the one ``Step`` the DoFn
    writes: each event sees the state the one before left, and a timer asked for twice is
    asked for once, at its last time."""
    buf = state.buffer
    reset = False
    added: list[BufferedAudio] = []
    utterances: list[Utterance] = []
    timers: dict[str, TimerRequest] = {}
    done: SegmentationDone | None = None
    vad_runs = 0
    late_ms: int | None = None
    for event in events:
        held = tuple(added) if reset else chain(state.audio, tuple(added))
        out = step(ChannelState(buf, held), event, now_ms, opts)
        if out.audio_reset:
            reset, added = True, list(out.audio_added)
        else:
            added.extend(out.audio_added)
        buf = out.buffer
        utterances.extend(out.utterances)
        timers.update((t.timer, t) for t in out.timers)
        done = out.done or done
        vad_runs += out.vad_runs
        if out.late_audio_ms is not None:
            late_ms = (late_ms or 0) + out.late_audio_ms
    return Step(
        buf, reset, tuple(added), tuple(utterances), done, tuple(timers.values()), vad_runs, late_ms
    )


def _on_chunk(state: ChannelState, chunk: AudioChunk, opts: SegmentOptions) -> Step:
    buf = state.buffer
    end_ms = chunk_end_ms(chunk)
    if buf is None:
        buf = SegmentBuffer(
            chunk.call_id,
            chunk.channel,
            chunk.event_time_ms,
            end_ms,
            chunk.event_time_ms,
            chunk.language_hint,
        )
    added: tuple[BufferedAudio, ...] = ()
    if chunk.num_samples > 0:  # a copied end-of-call marker has no audio
        added = (BufferedAudio(chunk.event_time_ms, _samples_16k(chunk).tobytes()),)
    buf = buf._replace(end_ms=max(buf.end_ms, end_ms))
    if chunk.end_of_call:
        buf = buf._replace(marker_ms=max(buf.marker_ms or end_ms, end_ms))
    if opts.segment_at_watermark or not buf.emitted:
        # Nothing emitted yet: a chunk may come before the first one seen (or before a
        # copied marker that arrived first), and is laid out, not dropped as late.
        buf = buf._replace(start_ms=min(buf.start_ms, chunk.event_time_ms))
    # The end of the call flushes the channel once the watermark passes the marker, not at
    # the marker: the runner may hand this key's last chunks over after it (Beam keeps no
    # order; seen on Prism 2.77 as a call's last utterance cut short), and the watermark
    # says they have all been read. What has settled is cut below, without waiting.
    flush_at_ms = (
        buf.end_ms + int(opts.flush_gap_s * 1000)
        if buf.marker_ms is None or opts.segment_at_watermark
        else max(buf.marker_ms, buf.end_ms)
    )
    flush = TimerRequest(FLUSH_TIMER, flush_at_ms)
    # segment_at_watermark: everything is cut when the flush timer fires
    due = buf.end_ms - buf.vad_at_ms >= opts.vad_step_ms or chunk.end_of_call
    if opts.segment_at_watermark or not due:
        return Step(buf, False, added, (), None, (flush,), 0, None)
    cut = _cut(buf, chain(state.audio, added), opts, final=False)
    if not cut.audio_reset:  # everything held stays: the chunk is appended to it
        cut = cut._replace(audio_added=added)
    return cut._replace(timers=(*cut.timers, flush))


def _samples_16k(chunk: AudioChunk) -> np.ndarray:
    """A chunk's audio as mono 16 kHz float32."""
    samples = np.frombuffer(chunk.pcm, dtype="<i2").astype(np.float32) / 32768.0
    if chunk.channels == 2:
        samples = samples.reshape(-1, 2).mean(axis=1)
    return resample(samples, chunk.sample_rate_hz, _RATE).astype(np.float32)


def _cut(
    buf: SegmentBuffer, held: Iterable[BufferedAudio], opts: SegmentOptions, final: bool
) -> Step:
    """Run the VAD over the held audio: the utterances it settled, and what is left to hold.
    ``final``: nothing more will come (the channel's ``SegmentationDone`` goes out)."""
    audio = np.zeros(_ms_to_samples(buf.end_ms - buf.start_ms), dtype=np.float32)
    placed: list[tuple[int, np.ndarray]] = []  # (sample offset, samples) of each piece
    late_audio_ms: int | None = None
    for event_ms, raw in held:
        piece = np.frombuffer(raw, dtype=np.float32)
        at = _ms_to_samples(event_ms - buf.start_ms)
        if at < 0:  # before what was already cut: late audio, dropped from segmentation
            late_audio_ms = (late_audio_ms or 0) + 1000 * min(-at, len(piece)) // _RATE
            piece, at = piece[-at:], 0
        piece = piece[: max(0, len(audio) - at)]
        audio[at : at + len(piece)] = piece
        placed.append((at, piece))
    # A hole is a chunk still on its way (Beam keeps no order), not silence: the VAD looks
    # only up to the first hole until the watermark passes it (the hole timer).
    runs = _runs(placed)
    lost_to = _ms_to_samples(buf.lost_to_ms - buf.start_ms)
    heard = len(audio) if final else _contiguous(runs, len(audio), lost_to)
    spans, keep_from = find_utterances(audio[:heard], opts, final)
    utterances = []
    for start, end in spans:
        speech = suppress_noise(audio[start:end], opts.noise_suppression)
        start_ms = buf.start_ms + 1000 * start // _RATE
        end_ms = buf.start_ms + 1000 * end // _RATE
        pcm = encode(speech, CODEC_PCM_S16LE)
        utterances.append(
            Utterance(buf.call_id, buf.channel, start_ms, end_ms, _RATE, pcm, buf.language_hint)
        )
    emitted = buf.emitted + tuple(u.start_ms for u in utterances)
    done = SegmentationDone(buf.call_id, buf.channel, emitted, buf.end_ms) if final else None
    rest_ms = buf.start_ms + 1000 * keep_from // _RATE
    # Nothing cut (speech still going on): the held audio stays as it is, instead of being
    # written back whole (it grows with the utterance: about 1.9 MB of state per channel per
    # step over a 30 s utterance).
    keep_all = not final and not utterances and late_audio_ms is None and rest_ms == buf.start_ms
    kept: list[BufferedAudio] = []
    if not final and not keep_all:  # keep what follows the cut, one piece per run (holes stay)
        cut = _ms_to_samples(rest_ms - buf.start_ms)
        for start, end in runs:
            if end > cut:
                event_ms = buf.start_ms + 1000 * max(start, cut) // _RATE
                at = _ms_to_samples(event_ms - buf.start_ms)
                kept.append(BufferedAudio(event_ms, audio[at:end].tobytes()))
    hole_ms = None
    timers: tuple[TimerRequest, ...] = ()
    if heard < len(audio):  # the end of the hole the VAD stopped at
        resume = next((a for a, _ in runs if a > heard), len(audio))
        hole_ms = buf.start_ms - (-1000 * resume // _RATE)  # rounded up: lost_to covers it
        # wake up when the watermark is hole_wait_s past it
        timers = (TimerRequest(HOLE_TIMER, hole_ms + int(opts.hole_wait_s * 1000)),)
    buf = buf._replace(start_ms=rest_ms, vad_at_ms=buf.end_ms, emitted=emitted, hole_ms=hole_ms)
    return Step(buf, not keep_all, tuple(kept), tuple(utterances), done, timers, 1, late_audio_ms)


def suppress_noise(samples: np.ndarray, level: str) -> np.ndarray:
    """Spectral-gating noise reduction of one utterance (16 kHz float32); ``off``: as is."""
    if level == "off" or len(samples) < _RATE // 10:
        return samples
    import noisereduce

    reduced = noisereduce.reduce_noise(y=samples, sr=_RATE, **_NOISE_REDUCTION[level])
    return np.asarray(reduced, dtype=np.float32)


def _ms_to_samples(ms: float) -> int:
    return int(ms * _RATE / 1000)


def settled_margin_ms(opts: SegmentOptions) -> int:
    """How far (ms) before the end of the buffer a span's padded end must lie to be final.

    The VAD closes a span (speech end ``e``, padded end ``e + pad``) once it has heard
    ``min_silence`` of silence after ``e``; a span still open at the buffer's end ends at the
    buffer's end. A closed span's end can still move only if the next speech starts within
    ``2 * pad`` of ``e`` (the VAD then splits the gap between the two), so the span is settled
    once the buffer reaches ``e + max(min_silence, 2 * pad)``: its padded end lies at least
    ``max(min_silence - pad, pad)`` before the buffer's end. Waiting any longer only adds
    latency (it used to wait ``min_silence + pad``: 400 ms more with the defaults)."""
    return max(opts.min_silence_ms - opts.speech_pad_ms, opts.speech_pad_ms, 1)


def find_utterances(
    samples: np.ndarray, opts: SegmentOptions, final: bool
) -> tuple[list[tuple[int, int]], int]:
    """Complete speech spans ``[start, end)`` in ``samples`` (16 kHz float32), and the sample
    index before which the buffer can be dropped. ``final``: nothing more will come."""
    if not opts.vad_filter:
        window = _ms_to_samples(opts.max_utterance_s * 1000)
        stop = len(samples) if final else len(samples) - len(samples) % window
        spans = [(s, min(s + window, stop)) for s in range(0, stop, window)]
        return spans, stop
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    found = get_speech_timestamps(
        samples,
        VadOptions(
            threshold=opts.threshold,
            min_speech_duration_ms=opts.min_speech_ms,
            min_silence_duration_ms=opts.min_silence_ms,
            speech_pad_ms=opts.speech_pad_ms,
            max_speech_duration_s=opts.max_utterance_s,
        ),
    )
    horizon = len(samples) if final else len(samples) - _ms_to_samples(settled_margin_ms(opts))
    spans = [(int(t["start"]), int(t["end"])) for t in found if t["end"] <= horizon]
    if final:
        return spans, len(samples)
    if spans:
        return spans, spans[-1][1]
    unfinished = [int(t["start"]) for t in found]
    # Nothing settled: keep what an onset the VAD does not report yet (shorter than
    # min_speech) could still need, with its padding.
    keep_ms = max(settled_margin_ms(opts), opts.min_speech_ms + opts.speech_pad_ms)
    return [], (unfinished[0] if unfinished else max(0, len(samples) - _ms_to_samples(keep_ms)))


_SLACK_SAMPLES: Final = _ms_to_samples(1)  # absorbs the rounding of chunk times to ms


def _runs(placed: list[tuple[int, np.ndarray]]) -> list[tuple[int, int]]:
    """The ``[start, end)`` sample ranges the placed pieces cover, touching pieces merged."""
    runs: list[tuple[int, int]] = []
    for at, piece in sorted(placed, key=lambda p: p[0]):
        end = at + len(piece)
        if runs and at <= runs[-1][1] + _SLACK_SAMPLES:
            runs[-1] = (runs[-1][0], max(runs[-1][1], end))
        else:
            runs.append((at, end))
    return runs


def _contiguous(runs: list[tuple[int, int]], total: int, lost_to: int) -> int:
    """Samples from the buffer's start up to its first hole that ends after ``lost_to`` (the
    watermark: a hole before it will not fill, so it is read as silence); ``total`` when there
    is none."""
    covered = 0
    for start, end in runs:
        if start > covered + _SLACK_SAMPLES and start > lost_to + _SLACK_SAMPLES:
            return covered
        covered = max(covered, end)
    return total


def chunk_end_ms(chunk: AudioChunk) -> int:
    """Event time just after a chunk's last sample."""
    return chunk.event_time_ms + 1000 * chunk.num_samples // chunk.sample_rate_hz
