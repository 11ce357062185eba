"""SegmentSpeech options and the VAD-free cutting path (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from transforms.segment import SegmentOptions, find_utterances, suppress_noise


def test_unknown_noise_suppression_is_refused_not_ignored() -> None:
    with pytest.raises(ValueError, match="not one of off, moderate, aggressive"):
        SegmentOptions(noise_suppression="extreme")


@pytest.mark.parametrize("level", ["moderate", "aggressive"])
def test_noise_suppression_brings_speech_closer_to_clean(level: str) -> None:
    from beam_jobs.speech import add_noise, speak

    silence = np.zeros(8000, np.float32)
    clean = np.concatenate([silence, speak("thank you for calling", "en"), silence])
    noisy = add_noise(clean, snr_db=5.0, seed=1)
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


def test_silence_alone_is_dropped_up_to_the_horizon() -> None:
    opts = SegmentOptions()
    spans, keep_from = find_utterances(np.zeros(16000 * 3, dtype=np.float32), opts, final=False)
    assert spans == [] and keep_from == 16000 * 3 - 16 * (500 + 200)
