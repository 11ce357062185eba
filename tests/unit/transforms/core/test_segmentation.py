"""``transforms.core.segmentation.step`` event by event, without Beam: a small driver holds the
state and the timers as the DoFn and the runner would, and each table row says what comes out,
when, and which timers fired."""

from __future__ import annotations

import functools
import itertools
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pytest
import soundfile as sf

from schemas.records import AudioChunk, BufferedAudio, SegmentationDone, SegmentBuffer, Utterance
from transforms.core.audio import encode, resample
from transforms.core.segmentation import (
    FLUSH_TIMER,
    HOLE_TIMER,
    ChannelState,
    ChunkArrived,
    Event,
    FlushDue,
    HoleDue,
    SegmentOptions,
    settled_margin_ms,
    step,
    steps,
)

T0 = 1_764_072_000_000
RATE = 16000
#: A tone the fixed-window rows cut (without the VAD any audio is cut the same).
SOURCE = (0.25 * np.sin(2 * np.pi * 220 * np.arange(10 * RATE) / RATE)).astype(np.float32)
END = 10**9  # a watermark past every timer (ms from T0)


def chunk(
    start_ms: int,
    ms: int = 100,
    *,
    end_of_call: bool = False,
    samples: np.ndarray | None = None,
    rate_hz: int = RATE,
) -> AudioChunk:
    """A mono chunk at ``T0 + start_ms``: ``samples`` (16 kHz), else that stretch of SOURCE."""
    x = SOURCE[16 * start_ms : 16 * (start_ms + ms)] if samples is None else samples
    pcm = encode(resample(x, RATE, rate_hz), "pcm_s16le")
    return AudioChunk(
        call_id="call-1",
        channel="customer",
        seq=start_ms // 100,
        sample_rate_hz=rate_hz,
        channels=1,
        codec="pcm_s16le",
        event_time_ms=T0 + start_ms,
        event_time_source="capture_time",
        num_samples=len(pcm) // 2,
        end_of_call=end_of_call,
        pcm=pcm,
        tenant=None,
        agent_id=None,
        queue=None,
        language_hint="en",
        topic="audio",
        partition=0,
        offset=start_ms // 100,
    )


def chunks(
    start_ms: int, end_ms: int, *, skip: tuple[int, ...] = (), marker: bool = False, **kw: Any
) -> list[ChunkArrived]:
    """100 ms chunks from ``start_ms`` to ``end_ms``, in order, but those starting at ``skip``;
    ``marker``: the last one ends the call."""
    starts = [s for s in range(start_ms, end_ms, 100) if s not in skip]
    return [ChunkArrived(chunk(s, end_of_call=marker and s == starts[-1], **kw)) for s in starts]


def marker_copy(at_ms: int) -> ChunkArrived:
    """The call's end-of-call marker as copied to a channel: no audio, stamped with its end."""
    empty = chunk(at_ms, end_of_call=True)._replace(pcm=b"", num_samples=0)
    return ChunkArrived(empty)


class Advance(NamedTuple):
    """The watermark moves to ``to_ms`` (from T0): the timers due fire, earliest first."""

    to_ms: int


@dataclass
class Channel:
    """One (call, channel) as the DoFn and the runner keep it: the two state cells as a record
    and a list, the timers as the latest time each was set to."""

    opts: SegmentOptions
    buffer: SegmentBuffer | None = None
    audio: list[BufferedAudio] = field(default_factory=list)
    timers: dict[str, int] = field(default_factory=dict)  # ms from T0
    fired: list[tuple[str, int]] = field(default_factory=list)
    utterances: list[tuple[Utterance, int | str]] = field(default_factory=list)  # and by what
    done: list[SegmentationDone] = field(default_factory=list)
    vad_runs: int = 0
    late_audio_ms: int = 0

    def run(self, events: list[ChunkArrived | Advance]) -> Channel:
        for event in events:
            if isinstance(event, Advance):
                self.advance(event.to_ms)
            else:
                end_ms = event.chunk.event_time_ms - T0 + round(event.chunk.duration_ms)
                self.send(event, event.chunk.event_time_ms, end_ms)
        return self

    def advance(self, to_ms: int) -> None:
        while self.timers and min(self.timers.values()) <= to_ms:
            name = min(self.timers, key=lambda n: self.timers[n])
            at_ms = self.timers.pop(name)
            self.fired.append((name, at_ms))
            self.send(FlushDue() if name == FLUSH_TIMER else HoleDue(), T0 + at_ms, name)

    def send(self, event: Event, now_ms: int, by: int | str) -> None:
        out = step(ChannelState(self.buffer, tuple(self.audio)), event, now_ms, self.opts)
        self.buffer = out.buffer
        if out.audio_reset:
            self.audio.clear()
        self.audio.extend(out.audio_added)
        self.timers.update({t.timer: t.at_ms - T0 for t in out.timers})
        self.utterances += [(u, by) for u in out.utterances]
        self.done += [out.done] if out.done else []
        self.vad_runs += out.vad_runs
        self.late_audio_ms += out.late_audio_ms or 0

    def cuts(self) -> list[tuple[int, int, int | str]]:
        """(start, end) from T0 of each utterance, and the chunk end or timer that cut it."""
        return [(u.start_ms - T0, u.end_ms - T0, by) for u, by in self.utterances]


class Case(NamedTuple):
    opts: SegmentOptions
    events: list[ChunkArrived | Advance]
    cuts: list[tuple[int, int, int | str]]  # (start, end, chunk end or timer that cut it)
    done: list[tuple[tuple[int, ...], int]]  # (utterance starts, end) of each SegmentationDone
    fired: list[tuple[str, int]]  # timers, in the order they fired, and at what time
    vad_runs: int
    late_audio_ms: int = 0
    silent: tuple[int, int] | None = None  # audio never sent: zeros in the utterances


WINDOWS = SegmentOptions(vad_filter=False, max_utterance_s=1.0)  # 1 s windows, every 250 ms
in_order = chunks(0, 1300)
reordered = in_order[:5] + in_order[6:10] + [in_order[5]] + in_order[10:]
CASES = {
    "max_utterance_s cuts a long stretch; the flush gap flushes the rest": Case(
        WINDOWS,
        [*chunks(0, 2500), Advance(END)],
        cuts=[(0, 1000, 1200), (1000, 2000, 2100), (2000, 2500, FLUSH_TIMER)],
        done=[((0, 1000, 2000), 2500)],
        fired=[(FLUSH_TIMER, 2500 + 30_000)],
        vad_runs=8 + 1,  # every 300 ms of new audio (100 ms chunks, vad_step 250), the flush
    ),
    "the end-of-call marker cuts at once and flushes when the watermark passes it": Case(
        WINDOWS,
        [*chunks(0, 1400, marker=True), Advance(END)],
        cuts=[(0, 1000, 1200), (1000, 1400, FLUSH_TIMER)],
        done=[((0, 1000), 1400)],
        fired=[(FLUSH_TIMER, 1400)],
        vad_runs=4 + 1 + 1,  # 1400 - 1200 < vad_step: the marker runs the VAD
    ),
    "a marker copied to a silent channel flushes it with no utterance": Case(
        WINDOWS,
        [marker_copy(1400), Advance(END)],
        cuts=[],
        done=[((), 1400)],
        fired=[(FLUSH_TIMER, 1400)],
        vad_runs=2,
    ),
    "a marker flushes across a hole; the hole's timer then finds nothing": Case(
        WINDOWS,
        [*chunks(0, 1300, skip=(500,), marker=True), Advance(END)],
        cuts=[(0, 1000, FLUSH_TIMER), (1000, 1300, FLUSH_TIMER)],
        done=[((0, 1000), 1300)],
        fired=[(FLUSH_TIMER, 1300), (HOLE_TIMER, 600 + 30_000)],
        vad_runs=4 + 1,  # at 300, 700, 1000, 1300 ms (stopped at the hole), the flush
        silent=(500, 600),
    ),
    "a chunk handed over late fills its hole: cut as in order, one vad step later": Case(
        WINDOWS,
        [*reordered, Advance(END)],
        cuts=[(0, 1000, 1300), (1000, 1300, FLUSH_TIMER)],
        done=[((0, 1000), 1300)],
        # the hole (500-600 ms) asked for a wake-up hole_wait_s past it; nothing is missing then
        fired=[(HOLE_TIMER, 600 + 30_000), (FLUSH_TIMER, 1300 + 30_000)],
        vad_runs=4 + 1 + 1,
    ),
    "a duplicate chunk is laid out once": Case(
        WINDOWS,
        [*in_order[:4], in_order[3], *in_order[4:], Advance(END)],
        cuts=[(0, 1000, 1200), (1000, 1300, FLUSH_TIMER)],
        done=[((0, 1000), 1300)],
        fired=[(FLUSH_TIMER, 1300 + 30_000)],
        vad_runs=4 + 1,
    ),
    "a chunk before the first one seen is laid out, not dropped": Case(
        WINDOWS,
        [*in_order[2:5], *in_order[:2], *in_order[5:], Advance(END)],
        cuts=[(0, 1000, 1100), (1000, 1300, FLUSH_TIMER)],
        done=[((0, 1000), 1300)],
        fired=[(FLUSH_TIMER, 1300 + 30_000)],
        vad_runs=3 + 1,  # at 500, 800, 1100 ms
    ),
    "a hole waits for the watermark, then is a lost chunk read as silence": Case(
        SegmentOptions(vad_filter=False, max_utterance_s=1.0, hole_wait_s=1.0),
        [*chunks(0, 1300, skip=(500,)), Advance(END)],
        cuts=[(0, 1000, HOLE_TIMER), (1000, 1300, FLUSH_TIMER)],
        done=[((0, 1000), 1300)],
        fired=[(HOLE_TIMER, 600 + 1000), (FLUSH_TIMER, 1300 + 30_000)],
        vad_runs=4 + 1 + 1,  # at 300, 700, 1000, 1300 ms, the hole, the flush
        silent=(500, 600),
    ),
    "audio before what was already cut is dropped and counted": Case(
        SegmentOptions(vad_filter=False, max_utterance_s=1.0, hole_wait_s=1.0),
        [*chunks(0, 1300, skip=(500,)), Advance(1600), *chunks(500, 600), Advance(END)],
        cuts=[(0, 1000, HOLE_TIMER), (1000, 1300, FLUSH_TIMER)],
        done=[((0, 1000), 1300)],
        fired=[(HOLE_TIMER, 1600), (FLUSH_TIMER, 1300 + 30_000)],
        vad_runs=4 + 1 + 1,
        late_audio_ms=100,
        silent=(500, 600),
    ),
    "segment_at_watermark: any order, one cut at the flush gap, the marker ignored": Case(
        SegmentOptions(vad_filter=False, max_utterance_s=1.0, segment_at_watermark=True),
        [*reversed(chunks(0, 2500, marker=True)), Advance(END)],
        cuts=[(0, 1000, FLUSH_TIMER), (1000, 2000, FLUSH_TIMER), (2000, 2500, FLUSH_TIMER)],
        done=[((0, 1000, 2000), 2500)],
        fired=[(FLUSH_TIMER, 2500 + 30_000)],
        vad_runs=1,
    ),
    "8 kHz chunks are cut at 16 kHz, at the same times": Case(
        WINDOWS,
        [*chunks(0, 1300, rate_hz=8000), Advance(END)],
        cuts=[(0, 1000, 1200), (1000, 1300, FLUSH_TIMER)],
        done=[((0, 1000), 1300)],
        fired=[(FLUSH_TIMER, 1300 + 30_000)],
        vad_runs=4 + 1,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_fixed_windows(case: Case) -> None:
    ch = Channel(case.opts).run(case.events)
    assert ch.cuts() == case.cuts
    assert [(tuple(t - T0 for t in d.starts_ms), d.end_ms - T0) for d in ch.done] == case.done
    assert ch.fired == case.fired
    assert (ch.vad_runs, ch.late_audio_ms) == (case.vad_runs, case.late_audio_ms)
    assert ch.buffer is None and ch.audio == [] and ch.timers == {}  # flushed: state cleared
    for u, _ in ch.utterances:
        assert (u.call_id, u.channel, u.language_hint, u.sample_rate_hz) == (
            "call-1",
            "customer",
            "en",
            RATE,
        )
        got = np.frombuffer(u.pcm, dtype="<i2").astype(np.int32)
        assert len(got) == 16 * (u.end_ms - u.start_ms)
        if any(isinstance(e, ChunkArrived) and e.chunk.sample_rate_hz != RATE for e in case.events):
            continue  # resampled: not the source's samples
        want = SOURCE[16 * (u.start_ms - T0) : 16 * (u.end_ms - T0)].copy()
        if case.silent:
            a, b = (16 * (t - (u.start_ms - T0)) for t in case.silent)
            want[max(a, 0) : max(b, 0)] = 0.0
        # the audio as sent (one LSB: s16 → float → s16)
        assert np.abs(got - np.frombuffer(encode(want, "pcm_s16le"), "<i2")).max() <= 1


def test_a_chunk_that_is_not_due_for_the_vad_leaves_the_held_audio_unread() -> None:
    """The DoFn hands over its bag unread: only a cut iterates it."""

    class Unread:
        def __iter__(self) -> Iterator[BufferedAudio]:
            raise AssertionError("the held audio was read")

    first = step(ChannelState(None), ChunkArrived(chunk(0)), T0, WINDOWS)
    assert first.buffer is not None and len(first.audio_added) == 1 and not first.audio_reset
    out = step(ChannelState(first.buffer, Unread()), ChunkArrived(chunk(100)), T0 + 100, WINDOWS)
    assert out.buffer is not None and out.buffer.end_ms == T0 + 200
    assert not out.audio_reset and [a.event_ms for a in out.audio_added] == [T0 + 100]
    assert out.timers == ((FLUSH_TIMER, T0 + 200 + 30_000),) and out.vad_runs == 0


# With the VAD: real speech (espeak-ng), streamed as 100 ms chunks.


@functools.cache
def spoken(text: str) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", wav.name, text], check=True)
        x, rate = sf.read(wav.name, dtype="float32")
    return resample(np.trim_zeros(x), rate, RATE)


def silence(ms: int) -> np.ndarray:
    return np.zeros(16 * ms, np.float32)


def phrase() -> np.ndarray:
    return spoken("thank you for calling how can I help you")  # 2.37 s


def burst(ms: int) -> np.ndarray:
    return phrase()[8000 : 8000 + 16 * ms]  # a stretch from the middle of a word


class VadCase(NamedTuple):
    opts: SegmentOptions
    lead_ms: int  # silence before the speech
    speech: Any  # () -> 16 kHz samples
    tail_ms: int  # silence after it: long enough that all is cut before the flush
    count: int  # utterances
    max_ms: int | None = None  # no utterance longer


VAD_CASES = {
    "speech then silence is cut once the silence settles": VadCase(
        SegmentOptions(), 500, phrase, 2000, count=1
    ),
    "speech shorter than min_speech_ms is dropped": VadCase(
        SegmentOptions(), 1000, lambda: burst(100), 1000, count=0
    ),
    "... and kept when min_speech_ms is shorter": VadCase(
        SegmentOptions(min_speech_ms=100), 1000, lambda: burst(100), 1000, count=1
    ),
    "speech longer than max_utterance_s is split": VadCase(
        SegmentOptions(max_utterance_s=1.0), 500, phrase, 1000, count=4, max_ms=1000
    ),
}


@pytest.mark.parametrize("case", VAD_CASES.values(), ids=VAD_CASES.keys())
def test_vad(case: VadCase) -> None:
    speech = case.speech()
    samples = np.concatenate([silence(case.lead_ms), speech, silence(case.tail_ms)])
    events: list[ChunkArrived | Advance] = [
        ChunkArrived(chunk(s // 16, samples=samples[s : s + 1600]))
        for s in range(0, len(samples), 1600)
    ]
    ch = Channel(case.opts).run([*events, Advance(END)])
    cuts = ch.cuts()
    assert len(cuts) == case.count, cuts
    assert [d.starts_ms for d in ch.done] == [tuple(u.start_ms for u, _ in ch.utterances)]
    if not cuts:
        return
    pad_ms = case.opts.speech_pad_ms
    speech_end_ms = case.lead_ms + len(speech) // 16
    # the speech, padded, whatever it is split into (the VAD's onset and offset: within 150 ms)
    assert case.lead_ms - pad_ms - 150 <= cuts[0][0] <= case.lead_ms, cuts
    assert speech_end_ms <= cuts[-1][1] <= speech_end_ms + pad_ms + 150, cuts
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(cuts)), cuts  # in order, apart
    for start, end, by in cuts:
        # cut as the audio came, once settled (the span's end that far before the buffer's
        # end), at the next VAD run: vad_step_ms rounded up to whole 100 ms chunks
        assert isinstance(by, int), cuts
        settled_ms = end + settled_margin_ms(case.opts)
        assert settled_ms <= by <= settled_ms + case.opts.vad_step_ms + 100, cuts
        if case.max_ms is not None:
            assert end - start <= case.max_ms, cuts


def test_speech_still_going_on_is_appended_to_not_written_back() -> None:
    """While nothing is cut, a VAD run keeps the held audio as it is: the chunk is appended
    (the state write stays one chunk, not everything held since the utterance began)."""
    samples = np.concatenate([silence(300), phrase(), phrase()])  # ~4.7 s, still speaking
    ch = Channel(SegmentOptions())
    appended = rewritten = 0
    for s in range(0, len(samples), 1600):
        held = len(ch.audio)
        event = ChunkArrived(chunk(s // 16, samples=samples[s : s + 1600]))
        ch.send(event, T0 + s // 16, s // 16)
        if ch.buffer is not None and ch.buffer.vad_at_ms == ch.buffer.end_ms:  # the VAD ran
            if len(ch.audio) == held + 1:
                appended += 1
            else:
                rewritten += 1
    assert not ch.utterances  # no pause long enough to cut
    assert appended >= 12 and rewritten <= 3, (appended, rewritten)
    held = np.concatenate([np.frombuffer(a.samples, np.float32) for a in ch.audio])
    assert ch.buffer is not None and ch.audio[0].event_ms == ch.buffer.start_ms
    assert abs(len(held) - 16 * (ch.buffer.end_ms - ch.buffer.start_ms)) <= 16  # ms rounding


@pytest.mark.parametrize("run_chunks", [1, 3, 5, 12])
def test_a_run_of_chunks_cuts_what_the_chunks_one_by_one_cut(run_chunks: int) -> None:
    """``steps`` over a run (one source bundle's chunks of a channel) leaves the state and
    emits the utterances that ``step`` chunk by chunk does: the keyed stage writes once."""
    samples = np.concatenate([silence(400), phrase(), silence(900), phrase(), silence(1500)])
    events = [
        ChunkArrived(chunk(s // 16, samples=samples[s : s + 1600]))
        for s in range(0, len(samples), 1600)
    ]
    one_by_one = Channel(SegmentOptions()).run(list(events))
    runs = Channel(SegmentOptions())
    for k in range(0, len(events), run_chunks):
        run = events[k : k + run_chunks]
        last = run[-1].chunk
        out = steps(
            ChannelState(runs.buffer, tuple(runs.audio)), run, last.event_time_ms, runs.opts
        )
        runs.buffer = out.buffer
        if out.audio_reset:
            runs.audio.clear()
        runs.audio.extend(out.audio_added)
        assert len({t.timer for t in out.timers}) == len(out.timers)  # each timer set once
        runs.timers.update({t.timer: t.at_ms - T0 for t in out.timers})
        runs.utterances += [(u, 0) for u in out.utterances]
    assert len(one_by_one.utterances) == 2
    assert [u for u, _ in runs.utterances] == [u for u, _ in one_by_one.utterances]
    assert runs.buffer == one_by_one.buffer and runs.timers == one_by_one.timers
    assert runs.audio and [a.event_ms for a in runs.audio][0] == one_by_one.audio[0].event_ms
    held = np.concatenate([np.frombuffer(a.samples, np.float32) for a in runs.audio])
    same = np.concatenate([np.frombuffer(a.samples, np.float32) for a in one_by_one.audio])
    assert np.array_equal(held, same)
