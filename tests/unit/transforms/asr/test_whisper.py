"""The faster-whisper backend's pure helpers: encoder windows, decoding-loop detection,
language id among the expected languages, default length buckets (no model loaded)."""

from __future__ import annotations

import pytest

from transforms.asr.options import AsrOptions
from transforms.asr.whisper import (
    default_length_buckets_s,
    is_repetitive,
    keeps_retry,
    pick_language,
    whisper_window_frames,
)


def test_whisper_window_fits_the_utterance_within_bounds() -> None:
    assert whisper_window_frames(300, min_window_s=10) == 1000  # 3 s → the 10 s minimum
    assert whisper_window_frames(1250, min_window_s=10) == 1400  # 12.5 s + 1 s → 14 s
    assert whisper_window_frames(1300, min_window_s=10) == 1400
    assert whisper_window_frames(2950, min_window_s=10) == 3000  # capped at Whisper's 30 s
    assert whisper_window_frames(300, min_window_s=30) == 3000  # the standard window


def test_decoding_loops_are_detected() -> None:
    assert is_repetitive("I'm sorry, " * 40)
    assert is_repetitive("斜斷" * 60)
    assert not is_repetitive("Thank you for calling customer service. How can I help you today?")


@pytest.mark.parametrize(
    ("text", "loop"),
    [
        ("水,水,水,水,水,水,水,水,水", True),  # the demo's code-switched call: gzip sees 2.3x
        ("王相儿, Upgrade, 下下, 下下, 下下, 下下, 下下, 下下,", True),
        ("ok ok ok ok ok", True),
        ("谢谢谢谢", False),
        ("no no no no", False),
        ("我想 upgrade 我的 account 到 premium", False),
        ("1 1 1 1 1 2 3", False),  # a number read out
        ("尾号一一一一一", False),
    ],
)
def test_short_loops_are_caught_but_numbers_and_courtesy_are_not(text: str, loop: bool) -> None:
    assert is_repetitive(text) is loop


def test_a_retry_that_loops_worse_is_not_kept() -> None:
    loop = "I'm sorry, " * 40
    assert keeps_retry(loop, "I'm sorry, I did not catch that.")
    assert not keeps_retry("I'm sorry, " * 4 + "the line is bad.", loop)
    assert keeps_retry(loop, loop)  # as repetitive: the later attempt, as Whisper does


def test_language_id_prefers_the_expected_languages() -> None:
    noisy_english = [("<|fi|>", 0.41), ("<|en|>", 0.38), ("<|de|>", 0.1)]
    assert pick_language(noisy_english, ("zh", "en")) == "en"
    assert pick_language(noisy_english, ()) == "fi"
    # On another CPU's int8 kernels the same noisy English came out "fi" at 0.8 (CI).
    assert pick_language([("<|fi|>", 0.82), ("<|en|>", 0.09)], ("zh", "en")) == "en"
    assert pick_language([("<|fr|>", 0.92), ("<|en|>", 0.006)], ("zh", "en")) == "fr"
    assert pick_language([("<|de|>", 0.74), ("<|en|>", 0.03)], ("zh", "en")) == "de"
    assert pick_language([("<|ja|>", 0.99)], ("zh", "en")) == "ja"  # none expected ranked
    assert pick_language([("<|zh|>", 0.6), ("<|en|>", 0.3)], ("zh", "en")) == "zh"


def test_length_buckets_follow_the_minimum_window() -> None:
    assert default_length_buckets_s(AsrOptions(model_dir="m")) == [9.0, 14.0, 20.0]
    assert default_length_buckets_s(AsrOptions(model_dir="m", min_window_s=14)) == [13.0, 20.0]
    assert default_length_buckets_s(AsrOptions(model_dir="m", min_window_s=30)) == [29.0]
