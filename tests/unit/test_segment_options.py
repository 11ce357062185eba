"""SegmentSpeech options and the VAD-free cutting path (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from transforms.segment import SegmentOptions, find_utterances


def test_unimplemented_noise_suppression_is_refused_not_ignored() -> None:
    with pytest.raises(ValueError, match="not implemented"):
        SegmentOptions(noise_suppression="moderate")


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
