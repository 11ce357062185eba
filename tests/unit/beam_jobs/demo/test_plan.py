"""The demo's plan: how many calls at once this machine's ASR speed holds, and when each
call starts so that no more run at once."""

from __future__ import annotations

import numpy as np

from beam_jobs.demo.plan import HELD_SHARE_OF_CEILING, plan, start_times_ms, turn_utterances
from transforms.io.recordings import CallAudio


def test_the_calls_at_once_are_the_share_of_the_ceiling_the_job_holds() -> None:
    fast = plan(speech_rate=24.0, speech_per_call_s=0.8, calls=4)
    assert fast.ceiling_calls == 30.0 and fast.concurrent == 4  # capped at the demo's calls
    some = plan(speech_rate=6.0, speech_per_call_s=0.8, calls=4)
    assert some.concurrent == int(HELD_SHARE_OF_CEILING * 7.5)
    assert f"{some.concurrent} at a time" in some.summary()


def test_a_machine_too_slow_for_one_call_says_so_and_by_how_much() -> None:
    slow = plan(speech_rate=1.0, speech_per_call_s=0.8, calls=4)
    assert slow.concurrent == 0
    text = slow.summary()
    needed = 0.8 / (HELD_SHARE_OF_CEILING * 1.0)
    assert "too slow to keep up with even one call" in text and f"{needed:.1f}x" in text


def test_calls_start_when_a_slot_frees() -> None:
    durations = [40.0, 30.0, 50.0, 20.0]
    assert start_times_ms(durations, 4, 0) == [0, 1500, 3000, 4500]
    # the 4th waits for a slot (the 2nd ended at 31.5 s) and keeps 1.5 s after the 3rd
    assert start_times_ms(durations, 2, 0) == [0, 1500, 41_000, 42_500]
    one = start_times_ms(durations, 0, 1000)  # too slow: one at a time
    assert one == [1000, 42_000, 73_000, 124_000]


def test_turns_become_utterances_up_to_the_speech_asked_for() -> None:
    x = np.linspace(-0.5, 0.5, 8000 * 10, dtype=np.float32)
    audio = CallAudio("c", 8000, {"agent": x, "customer": x[::-1].copy()}, language_hint="zh")
    turns = [("agent", 0.5, 2.5), ("customer", 3.0, 4.0), ("agent", 5.0, 9.0)]
    utts = turn_utterances(audio, turns, max_speech_s=3.0)
    assert [(u.channel, u.start_ms, u.end_ms) for u in utts] == [
        ("agent", 500, 2500),
        ("customer", 3000, 4000),
    ]
    assert all(u.sample_rate_hz == 16000 and u.language_hint == "zh" for u in utts)
    assert len(utts[0].pcm) == 2 * 16000 * 2  # 2 s at 16 kHz, 16-bit
