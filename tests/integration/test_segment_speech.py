"""SegmentSpeech on real speech (espeak-ng) with the Silero VAD that faster-whisper ships:
two phrases separated by 2 s of silence, streamed as 100 ms chunks, become two utterances at
the right event times; their transcripts come back through RunInference."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
import soundfile as sf
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from beam_jobs.services.models import install_embedded_whisper
from schemas.records import AudioChunk, SegmentationDone, Transcript, Utterance
from transforms.asr.options import AsrOptions
from transforms.asr.whisper import FasterWhisperModelHandler
from transforms.core.audio import encode, resample
from transforms.core.segmentation import SegmentOptions, find_utterances
from transforms.segment import SegmentSpeech

pytestmark = pytest.mark.slow

T0 = 1_764_072_000_000
PHRASES = ("thank you for calling how can I help you", "goodbye and have a nice day")
SILENCE_S = 2.0


def speech(tmp_path: Path) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Silence, phrase 1, 2 s silence, phrase 2, silence; with each phrase's (start, end) s."""
    assert shutil.which("espeak-ng"), "espeak-ng is missing: deploy/local/setup.sh installs it"
    parts, spans, t = [np.zeros(8000, np.float32)], [], 0.5
    for i, text in enumerate(PHRASES):
        wav = tmp_path / f"p{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
        x, rate = sf.read(wav, dtype="float32")
        x = resample(np.trim_zeros(x), rate, 16000)
        parts += [x, np.zeros(int(SILENCE_S * 16000), np.float32)]
        spans.append((t, t + len(x) / 16000))
        t += len(x) / 16000 + SILENCE_S
    return np.concatenate(parts), spans


def chunks_of(samples: np.ndarray) -> list[AudioChunk]:
    out = []
    for seq, i in enumerate(range(0, len(samples), 1600)):
        pcm = encode(samples[i : i + 1600], "pcm_s16le")
        out.append(AudioChunk("seg-1", "customer", seq, 16000, 1, "pcm_s16le", T0 + i // 16,
                              "capture_time", len(pcm) // 2, False, pcm, None, None, None, "en",
                              "audio", 0, seq))  # fmt: skip
    out[-1] = out[-1]._replace(end_of_call=True)
    return out


def test_find_utterances_holds_back_speech_that_may_continue(tmp_path: Path) -> None:
    samples, spans = speech(tmp_path)
    cut = int((spans[0][1] + 0.1) * 16000)  # just after phrase 1 ends: not yet 500 ms quiet
    assert find_utterances(samples[:cut], SegmentOptions(), final=False)[0] == []
    done, keep_from = find_utterances(samples, SegmentOptions(), final=True)
    assert len(done) == 2 and keep_from == len(samples)


def test_a_span_is_cut_as_soon_as_it_is_settled_and_as_the_whole_file_cuts_it(
    tmp_path: Path,
) -> None:
    """Grown 100 ms at a time, the buffer yields phrase 1 within 0.2 s of the VAD's closing
    silence (min_silence after the speech), and with the span the whole-file cut gives."""
    samples, spans = speech(tmp_path)
    opts = SegmentOptions()
    whole, _ = find_utterances(samples, opts, final=True)
    first = None
    for end in range(1600, len(samples), 1600):
        cut, _ = find_utterances(samples[:end], opts, final=False)
        if cut:
            first = (end, cut[0])
            break
    assert first is not None
    end, span = first
    assert span == whole[0]
    closed_at_s = spans[0][1] + opts.min_silence_ms / 1000
    assert end / 16000 <= closed_at_s + 0.2, (end / 16000, closed_at_s)


def test_two_phrases_become_two_utterances_and_transcripts(tmp_path: Path) -> None:
    samples, spans = speech(tmp_path)
    stream = BeamTestStream().advance_watermark_to(Timestamp(micros=T0 * 1000))
    for c in chunks_of(samples):
        stream = stream.add_elements([TimestampedValue(c, c.event_time_ms / 1000)])
    # The watermark passing the end-of-call marker flushes the channels (emitting in time for
    # assert_that, which drops what comes once the watermark is at infinity).
    end_ms = T0 + len(samples) // 16 + 1000
    stream = stream.advance_watermark_to(Timestamp(micros=end_ms * 1000))
    stream = stream.advance_watermark_to_infinity()
    # Batches within a bundle: the DirectRunner's TestStream moves the watermark to infinity
    # while a stateful batch may still wait on its processing-time timer, and assert_that
    # then drops what it emits as late.
    handler = FasterWhisperModelHandler(
        AsrOptions(str(install_embedded_whisper()), max_batch_duration_s=0)
    )

    def check_utterances(utts: list[Utterance]) -> None:
        utts = sorted(utts, key=lambda u: u.start_ms)
        assert len(utts) == 2, [(u.start_ms - T0, u.end_ms - T0) for u in utts]
        for u, (start_s, end_s) in zip(utts, spans, strict=True):
            assert abs((u.start_ms - T0) / 1000 - start_s) < 0.35  # padding is 200 ms
            assert abs((u.end_ms - T0) / 1000 - end_s) < 0.35
            assert (
                len(u.pcm) // 2 == (u.end_ms - u.start_ms) * 16
                or abs(len(u.pcm) // 2 - (u.end_ms - u.start_ms) * 16) <= 16
            )

    def check_transcripts(ts: list[Transcript]) -> None:
        texts = [t.text.lower() for t in sorted(ts, key=lambda t: t.start_ms)]
        assert "help" in texts[0] and "goodbye" in texts[1], texts

    def check_done(done: list[SegmentationDone]) -> None:
        # The customer channel announces its two utterances; the end-of-call marker copied to
        # the other channels flushes them with none.
        counts = sorted((d.channel, d.utterances) for d in done)
        assert counts == [("agent", 0), ("customer", 2), ("mixed", 0)], counts

    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    segmented = p | stream | SegmentSpeech(SegmentOptions())
    utts = segmented.utterances
    assert_that(utts, check_utterances, label="utterances")
    assert_that(segmented.done, check_done, label="done")
    assert_that(utts | RunInference(handler), check_transcripts, label="transcripts")
    p.run().wait_until_finish()


def test_chunks_handed_over_after_the_end_of_call_marker_are_still_cut(tmp_path: Path) -> None:
    """Beam keeps no order within a key: the marker (the last chunk) arrives before the last
    3 s of audio, the end of phrase 2 included; the flush waits for the watermark, so phrase 2
    comes out whole, as in order."""
    samples, spans = speech(tmp_path)
    chunks = chunks_of(samples)
    reordered = chunks[:-31] + [chunks[-1]] + chunks[-31:-1]
    stream = BeamTestStream().advance_watermark_to(Timestamp(micros=T0 * 1000))
    for c in reordered:
        stream = stream.add_elements([TimestampedValue(c, c.event_time_ms / 1000)])
    end_ms = T0 + len(samples) // 16 + 1000
    stream = stream.advance_watermark_to(Timestamp(micros=end_ms * 1000))
    stream = stream.advance_watermark_to_infinity()

    def check(utts: list[Utterance]) -> None:
        got = sorted(((u.start_ms - T0) / 1000, (u.end_ms - T0) / 1000) for u in utts)
        assert len(got) == 2, got
        for (start_s, end_s), (want_start, want_end) in zip(got, spans, strict=True):
            assert abs(start_s - want_start) < 0.35 and abs(end_s - want_end) < 0.35, got

    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    segmented = p | stream | SegmentSpeech(SegmentOptions())
    assert_that(segmented.utterances, check)
    p.run().wait_until_finish()


def _segment_and_check(
    stream: BeamTestStream,
    check: Callable[[list[Any]], None],
    opts: SegmentOptions,
    hole_ms: int,
) -> None:
    """Run SegmentSpeech; ``check`` gets, per utterance and from T0, (start s, end s, output
    element time s, RMS of its audio in the 100 ms at ``hole_ms``, or None), sorted."""

    class Keep(beam.DoFn):
        def process(self, u: Utterance, ts: Any = beam.DoFn.TimestampParam) -> Any:
            at = (T0 + hole_ms - u.start_ms) * 16
            pcm = np.frombuffer(u.pcm, dtype="<i2").astype(np.float32) / 32768.0
            rms = float(np.sqrt(np.mean(pcm[at : at + 1600] ** 2))) if at >= 0 else None
            times = ((u.start_ms - T0) / 1000, (u.end_ms - T0) / 1000)
            yield (*times, ts.micros / 1e6 - T0 / 1000, rms if at < len(pcm) else None)

    p = beam.Pipeline(options=PipelineOptions(streaming=True))
    out = p | stream | SegmentSpeech(opts)
    assert_that(out.utterances | beam.ParDo(Keep()), lambda rows: check(sorted(rows)))
    p.run().wait_until_finish()


def test_a_hole_waits_for_the_watermark_however_much_audio_comes_after_it(
    tmp_path: Path,
) -> None:
    """A backlog: a chunk of phrase 1 comes after all the rest of the call's audio (17 s of
    it), with the watermark held before it. The VAD waits at the hole (it is not silence until
    the watermark passes it), so phrase 1 comes out whole once the chunk is in."""
    samples, spans = speech(tmp_path)
    chunks = chunks_of(samples)
    k = int((spans[0][0] + spans[0][1]) / 2 * 10)  # a chunk in the middle of phrase 1
    stream = BeamTestStream().advance_watermark_to(Timestamp(micros=T0 * 1000))
    for c in chunks[:k] + chunks[k + 1 : -1] + [chunks[k], chunks[-1]]:
        stream = stream.add_elements([TimestampedValue(c, c.event_time_ms / 1000)])
    stream = stream.advance_watermark_to_infinity()

    hole_ms = chunks[k].event_time_ms - T0
    want_rms = float(np.sqrt(np.mean(samples[hole_ms * 16 : hole_ms * 16 + 1600] ** 2)))

    def check(got: list[Any]) -> None:
        assert len(got) == 2, got
        for (start_s, end_s, _, _), (want_start, want_end) in zip(got, spans, strict=True):
            assert abs(start_s - want_start) < 0.35 and abs(end_s - want_end) < 0.35, got
        # the late chunk's speech is in phrase 1, not read as silence and dropped
        assert got[0][3] == pytest.approx(want_rms, rel=0.05), (got, want_rms)

    _segment_and_check(stream, check, SegmentOptions(), hole_ms)


def test_a_hole_the_watermark_passed_is_a_lost_chunk_read_as_silence(tmp_path: Path) -> None:
    """A chunk of phrase 1 never comes; the watermark follows the others. Once it is
    ``hole_wait_s`` past the hole, phrase 1 is cut across it (100 ms of silence inside
    speech), before the call ends."""
    samples, spans = speech(tmp_path)
    chunks = chunks_of(samples)
    k = int((spans[0][0] + spans[0][1]) / 2 * 10)
    stream = BeamTestStream().advance_watermark_to(Timestamp(micros=T0 * 1000))
    for c in chunks[:k] + chunks[k + 1 :]:
        stream = stream.add_elements([TimestampedValue(c, c.event_time_ms / 1000)])
        stream = stream.advance_watermark_to(Timestamp(micros=(c.event_time_ms + 1) * 1000))
    stream = stream.advance_watermark_to_infinity()

    def check(got: list[Any]) -> None:
        assert len(got) == 2, got
        start_s, end_s, emitted_at_s, hole_rms = got[0]
        assert hole_rms == 0.0, got  # the lost chunk is read as silence
        assert abs(start_s - spans[0][0]) < 0.35 and abs(end_s - spans[0][1]) < 0.35, got
        assert emitted_at_s < spans[1][0], got  # by the hole timer, not the end-of-call flush

    _segment_and_check(stream, check, SegmentOptions(hole_wait_s=0.5), chunks[k].event_time_ms - T0)
