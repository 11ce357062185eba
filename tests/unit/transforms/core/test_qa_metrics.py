"""Per-call QA metrics (``transforms.core.qa_metrics``): pure functions on hand-made transcripts."""

from __future__ import annotations

import pytest

from schemas.records import SentimentQuarters, Transcript
from transforms.core.qa_metrics import (
    QaOptions,
    call_metrics,
    gaps,
    loudness_dbfs,
    overlaps,
    sentiment_quarters,
    speech_span,
    talk_speed,
    turn_count,
    union,
)

T0 = 1_764_072_000_000
NO_PAD = QaOptions(speech_pad_ms=0)


def turn(
    role: str,
    start_s: float,
    end_s: float,
    text: str = "hello there",
    *,
    sentiment: float | None = None,
    dbfs: float | None = -20.0,
    language_class: str = "en",
    confidence: float = -0.3,
    pii: int = 0,
) -> Transcript:
    return Transcript(
        "c1", role, T0 + int(start_s * 1000), T0 + int(end_s * 1000), text, "en",
        language_class, confidence, "m", "faster-whisper", (), (), dbfs, sentiment, pii,
    )  # fmt: skip


def test_span_arithmetic() -> None:
    assert union([(5, 8), (0, 2), (1, 3), (8, 9), (4, 4)]) == [(0, 3), (5, 9)]
    assert gaps([(0, 10), (15, 20), (60, 70)], 10) == [(20, 60)]
    # b starts later inside a: b interrupted; the 2 ms touch is below the threshold.
    assert overlaps([(0, 100), (200, 300)], [(50, 150), (298, 400)], 10) == [((50, 100), "b")]
    assert overlaps([(60, 120)], [(0, 100)], 10) == [((60, 100), "a")]


def test_padding_is_trimmed_but_never_inverted() -> None:
    assert speech_span(turn("agent", 1.0, 3.0), 200) == (T0 + 1200, T0 + 2800)
    assert speech_span(turn("agent", 1.0, 1.2), 200) == (T0 + 1100, T0 + 1100)


def test_planned_call_timings() -> None:
    """A two-party call: 7 s of dead air, a 1.5 s overtalk by the customer, 3 turns."""
    ts = [
        turn("agent", 0.0, 4.0, "Good morning, thank you for calling"),
        turn("customer", 11.0, 16.0, "I want a refund"),  # 7 s of silence before
        turn("agent", 14.5, 18.0, "I understand"),  # agent cuts in 1.5 s before the end
    ]
    m = call_metrics(ts, T0, T0 + 20_000, NO_PAD)
    assert m.duration_s == 20.0
    assert (m.agent_talk_s, m.customer_talk_s) == (7.5, 5.0)
    assert m.agent_talk_ratio == 0.6
    assert (m.non_talk_count, m.longest_non_talk_s, m.non_talk_s) == (1, 7.0, 7.0)
    assert (m.overtalk_count, m.overtalk_ms) == (1, 1500)
    assert (m.interruptions_by_agent, m.interruptions_by_customer) == (1, 0)
    assert (m.turn_count, m.utterance_count) == (3, 3)
    assert m.transcripts_complete and m.transcript_failures == 0


def test_same_result_whatever_the_order() -> None:
    ts = [turn("agent", 0, 2), turn("customer", 3, 5), turn("agent", 6, 9)]
    opts = QaOptions()
    assert call_metrics(ts, T0, T0 + 9000, opts) == call_metrics(ts[::-1], T0, T0 + 9000, opts)


def test_short_gaps_and_turn_taking_overlaps_are_not_counted() -> None:
    ts = [turn("agent", 0, 2.1), turn("customer", 2.0, 4.0), turn("agent", 5.0, 6.0)]
    m = call_metrics(ts, T0, T0 + 6000, QaOptions(speech_pad_ms=0, non_talk_min_s=2.0))
    assert (m.overtalk_count, m.non_talk_count, m.non_talk_s) == (0, 0, 0.0)


def test_talk_speed_english_words_and_chinese_characters() -> None:
    en = turn("agent", 0, 6, "one two three four five six seven eight nine ten eleven twelve")
    zh = turn("agent", 10, 13, "您好请问有什么可以帮您", language_class="zh")
    mixed = turn("agent", 20, 22, "premium 会员", language_class="zh-en")
    words, chars = talk_speed([en, zh], 0)
    assert words == 120.0  # 12 words in 6 s
    assert chars == 220.0  # 11 characters in 3 s
    words, chars = talk_speed([mixed], 0)
    # 1 word + 2 characters share the 2 s by token count: 90 per minute each
    assert (words, chars) == (pytest.approx(90, abs=0.2), pytest.approx(90, abs=0.2))
    assert talk_speed([], 0) == (None, None)


def test_loudness_is_an_energy_mean() -> None:
    loud, quiet = turn("agent", 0, 1, dbfs=-10.0), turn("agent", 1, 2, dbfs=-30.0)
    assert loudness_dbfs([loud, quiet]) == pytest.approx(-12.96, abs=0.01)
    assert loudness_dbfs([turn("agent", 0, 1, dbfs=None)]) is None


def test_turns_merge_consecutive_utterances_of_one_role() -> None:
    ts = [turn("agent", 0, 1), turn("agent", 1, 2), turn("customer", 2, 3), turn("agent", 3, 4)]
    assert turn_count(ts) == 3
    assert turn_count([]) == 0


def test_sentiment_by_quarter_overall_and_trajectory() -> None:
    ts = [
        turn("customer", 0, 10, sentiment=-0.8),
        turn("agent", 10, 20, sentiment=0.5),
        turn("customer", 30, 40, sentiment=0.6),
        turn("customer", 32, 34, sentiment=None),  # unscored turns do not count
    ]
    q = sentiment_quarters(ts, T0, T0 + 40_000)
    assert q == SentimentQuarters(-0.8, 0.5, None, 0.6)
    m = call_metrics(ts, T0, T0 + 40_000, NO_PAD)
    assert m.customer_sentiment_quarters == SentimentQuarters(-0.8, None, None, 0.6)
    assert m.agent_sentiment_quarters == SentimentQuarters(None, 0.5, None, None)
    assert m.sentiment_trajectory == 1.4
    assert m.customer_sentiment == pytest.approx(-0.1)
    assert m.sentiment == pytest.approx(0.1)


def test_language_mix_confidence_pii_and_completeness() -> None:
    ts = [
        turn("agent", 0, 1, "你好", language_class="zh", confidence=-0.1, pii=1),
        turn("customer", 2, 3, "hi", language_class="en", confidence=-0.5),
        turn("agent", 4, 5, "premium 会员", language_class="zh-en", confidence=-0.3, pii=2),
        turn("customer", 6, 7, "ok", language_class="en", confidence=-0.3),
    ]
    m = call_metrics(ts, T0, T0 + 7000, NO_PAD, expected_utterances=6, transcript_failures=1)
    assert (m.zh_share, m.en_share, m.zh_en_share) == (0.25, 0.5, 0.25)
    assert (m.mean_confidence, m.min_confidence) == (-0.3, -0.5)
    assert m.pii_redactions == 3
    assert not m.transcripts_complete and m.transcript_failures == 1
    done = call_metrics(ts, T0, T0 + 7000, NO_PAD, expected_utterances=5, transcript_failures=1)
    assert done.transcripts_complete


def test_a_call_without_speech() -> None:
    m = call_metrics([], T0, T0 + 5000, QaOptions())
    assert (m.agent_talk_ratio, m.sentiment, m.zh_share, m.mean_confidence) == (None,) * 4
    assert (m.utterance_count, m.non_talk_count, m.keywords) == (0, 0, ())


def test_keywords_come_from_the_call_text() -> None:
    ts = [
        turn("customer", 0, 3, "my refund for the refund order never arrived"),
        turn("agent", 4, 6, "let me check the refund"),
    ]
    m = call_metrics(ts, T0, T0 + 6000, QaOptions(keywords_per_call=3))
    assert m.keywords[0] == "refund" and len(m.keywords) <= 3
    assert "the" not in m.keywords


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="non_talk_min_s"):
        QaOptions(non_talk_min_s=0)
