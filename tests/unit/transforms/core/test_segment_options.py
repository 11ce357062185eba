"""Segmentation options, noise suppression and the VAD-free cutting path (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from transforms.core.segmentation import (
    SegmentOptions,
    find_utterances,
    settled_margin_ms,
    suppress_noise,
)


def test_unknown_noise_suppression_is_refused_not_ignored() -> None:
    with pytest.raises(ValueError, match="not one of off, moderate, aggressive"):
        SegmentOptions(noise_suppression="extreme")


@pytest.mark.parametrize("level", ["moderate", "aggressive"])
def test_noise_suppression_brings_speech_closer_to_clean(level: str) -> None:
    from beam_jobs.corpus.conditions import white
    from beam_jobs.demo.speech import speak

    silence = np.zeros(8000, np.float32)
    clean = np.concatenate([silence, speak("thank you for calling", "en"), silence])
    noisy = white(clean, snr_db=5.0, seed=1)
    out = suppress_noise(noisy, level)
    assert out.dtype == np.float32 and len(out) == len(noisy)
    error_before = float(np.mean((noisy - clean) ** 2))
    error_after = float(np.mean((out - clean) ** 2))
    assert error_after < 0.6 * error_before, (error_before, error_after)
    assert float(np.std(out[:4000])) < 0.5 * float(np.std(noisy[:4000]))  # the quiet lead-in
    assert suppress_noise(noisy, "off") is noisy


def test_without_vad_audio_is_cut_into_fixed_windows() -> None:
    opts = SegmentOptions(vad_filter=False, max_utterance_s=1.0)
    audio = np.zeros(16000 * 2 + 4000, dtype=np.float32)  # 2.25 s
    assert find_utterances(audio, opts, final=False) == ([(0, 16000), (16000, 32000)], 32000)
    assert find_utterances(audio, opts, final=True) == (
        [(0, 16000), (16000, 32000), (32000, 36000)],
        36000,
    )


def test_silence_alone_is_dropped_but_what_an_unreported_onset_may_need() -> None:
    opts = SegmentOptions()  # an onset shorter than min_speech (250 ms) is not reported yet
    spans, keep_from = find_utterances(np.zeros(16000 * 3, dtype=np.float32), opts, final=False)
    assert spans == [] and keep_from == 16000 * 3 - 16 * (250 + 200)


@pytest.mark.parametrize(
    ("min_silence_ms", "pad_ms", "margin_ms"), [(500, 200, 300), (300, 200, 200), (1000, 100, 900)]
)
def test_a_span_is_settled_once_the_vad_closed_it_and_padding_cannot_move(
    min_silence_ms: int, pad_ms: int, margin_ms: int
) -> None:
    opts = SegmentOptions(min_silence_ms=min_silence_ms, speech_pad_ms=pad_ms)
    assert settled_margin_ms(opts) == margin_ms


def test_the_vad_stops_at_a_hole_until_the_watermark_passes_it() -> None:
    from transforms.core.segmentation import _contiguous, _runs

    def piece(ms: int) -> np.ndarray:
        return np.zeros(16 * ms, dtype=np.float32)

    def contiguous(placed: list[tuple[int, np.ndarray]], total: int, lost_to: int) -> int:
        return _contiguous(_runs(placed), total, lost_to)

    hole_at = [(0, piece(100)), (3200, piece(100))]  # 100..200 ms missing
    assert contiguous(hole_at, 3200 + 1600, lost_to=0) == 1600  # a chunk on its way
    assert contiguous(hole_at, 3200 + 1600, lost_to=1600) == 1600  # still before its end
    assert contiguous(hole_at, 3200 + 1600, lost_to=3200) == 4800  # lost: read as silence
    assert contiguous(hole_at, 3200 + 1600, lost_to=3200 - 10) == 4800  # ms rounding
    # a backlog: however much audio lies past the hole, it waits for the watermark
    far = [(0, piece(100)), (3200, piece(60_000))]
    assert contiguous(far, 3200 + 16 * 60_000, lost_to=0) == 1600
    assert contiguous([(1600, piece(100)), (0, piece(100))], 3200, lost_to=0) == 3200
    assert contiguous([], 0, lost_to=0) == 0


def test_touching_pieces_merge_into_runs_and_holes_stay_apart() -> None:
    from transforms.core.segmentation import _runs

    pieces = [(3200, np.zeros(1600)), (0, np.zeros(1600)), (1600 + 10, np.zeros(1590))]
    assert _runs(pieces) == [(0, 3200 + 1600)]  # 10 samples (< 1 ms) apart: one run
    assert _runs([(0, np.zeros(1600)), (4800, np.zeros(1600))]) == [(0, 1600), (4800, 6400)]
