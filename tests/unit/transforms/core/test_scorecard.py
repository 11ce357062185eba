"""``transforms/core/scorecard.py``: rules, windows, roles, matching, the default card and
the loader."""

from __future__ import annotations

import dataclasses
import pickle
import random
from pathlib import Path
from typing import Any

import pytest

from schemas.records import CallMetrics, Transcript
from tests.records import T0
from tests.records import call_metrics as metrics
from transforms.core.scorecard import (
    EVIDENCE_MAX_CHARS,
    Condition,
    InterruptionRule,
    PhraseRule,
    Question,
    Rule,
    Scorecard,
    ScorecardError,
    SentimentRule,
    SilenceRule,
    Window,
    default_scorecard,
    load_scorecard,
    normalize_text,
    parse_scorecard,
    score_call,
)


def turn(
    channel: str, start_s: float, end_s: float, text: str, sentiment: float | None = None
) -> Transcript:
    """A transcript of ``channel`` from ``start_s`` to ``end_s`` seconds after T0."""
    han = any("\u4e00" <= ch <= "\u9fff" for ch in text)
    return Transcript(
        call_id="c-1",
        channel=channel,
        start_ms=T0 + int(start_s * 1000),
        end_ms=T0 + int(end_s * 1000),
        text=text,
        language="zh" if han else "en",
        language_class="zh" if han else "en",
        confidence=-0.2,
        model_id="fake",
        backend="faster-whisper",
        words=(),
        alternatives=(),
        sentiment=sentiment,
    )


def ask(rule: Rule, turns: list[Transcript], m: CallMetrics | None = None, **q: Any):
    """The one answer of a one-question card."""
    card = Scorecard("t", (Question("q", "?", 2.0, rule, **q),))
    return score_call(card, turns, m or metrics()).answers[0]


# --- matching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Thank-you  for CALLING!", "thank you for calling"),
        ("I’m sorry", "im sorry"),
        ("您 好 ，欢迎 致电", "您好欢迎致电"),
        ("ＨＥＬＬＯ", "hello"),  # full-width
        ("请 hold 一下", "请hold一下"),  # code-switched
    ],
)
def test_normalize_folds_case_punctuation_width_and_chinese_spaces(raw, normalized):
    assert normalize_text(raw) == normalized


def test_normalize_folds_traditional_to_simplified():
    pytest.importorskip("opencc")
    assert normalize_text("請稍等，感謝您的來電") == "请稍等感谢您的来电"


def test_phonetic_match_hears_a_chinese_homophone_but_not_another_tone_or_english():
    rule = PhraseRule(("核实", "thank you for calling"), match="phonetic")
    assert ask(rule, [turn("agent", 0, 3, "为了何时您的身份")]).passed  # he2 shi2 both
    assert not ask(rule, [turn("agent", 0, 3, "这个套餐合适吗")]).passed  # 合适: he2 shi4
    assert not ask(rule, [turn("agent", 0, 3, "thanks for calling")]).passed
    assert ask(rule, [turn("agent", 0, 3, "Thank you, for calling.")]).passed
    assert not ask(PhraseRule(("核实",)), [turn("agent", 0, 3, "为了何时您的身份")]).passed


def test_the_default_identity_question_survives_a_homophone_from_the_asr():
    said = [turn("agent", 0, 4, "谢谢您的身份已经合时，请您稍等。")]
    answers = {a.question_id: a for a in score_call(default_scorecard(), said, metrics()).answers}
    assert answers["identity_verification"].passed


def test_exact_match_ignores_case_punctuation_and_spacing():
    rule = PhraseRule(("thank you for calling", "欢迎致电"))
    assert ask(rule, [turn("agent", 0, 3, "Thank you, for calling Acme.")]).passed
    assert ask(rule, [turn("agent", 0, 3, "您好， 歡迎 致電 。")]).passed
    assert not ask(rule, [turn("agent", 0, 3, "thanks for the call")]).passed


def test_exact_latin_phrase_starts_at_a_word():
    rule = PhraseRule(("resolved", "idiot"))
    assert not ask(rule, [turn("agent", 0, 3, "It is still unresolved")]).passed
    assert ask(rule, [turn("agent", 0, 3, "you idiots")]).passed
    assert ask(rule, [turn("agent", 0, 3, "问题resolved了吗")]).passed  # code-switched


def test_fuzzy_tolerates_asr_slips_that_exact_misses():
    said = [turn("agent", 0, 3, "I'm so sorry to here that, I under stand")]
    for phrase in ("sorry to hear", "I understand"):
        assert not ask(PhraseRule((phrase,)), said).passed
        answer = ask(PhraseRule((phrase,), match="fuzzy"), said)
        assert answer.passed and answer.evidence.startswith(f'"{phrase}" ~')
    assert not ask(PhraseRule(("I understand",), match="fuzzy", threshold=99), said).passed


def test_fuzzy_does_not_match_a_short_turn_inside_a_long_phrase():
    assert not ask(
        PhraseRule(("thank you for calling",), match="fuzzy"), [turn("agent", 0, 1, "you")]
    ).passed


def test_any_of_needs_one_phrase_all_of_needs_every_phrase_across_turns():
    turns = [
        turn("agent", 0, 2, "please verify your date of birth"),
        turn("agent", 5, 7, "And your postcode?"),
    ]
    both, three = ("date of birth", "postcode"), ("date of birth", "postcode", "last four digits")
    assert ask(PhraseRule(three), turns).passed
    answer = ask(PhraseRule(both, mode="all_of"), turns)
    assert answer.passed and answer.evidence.startswith('"postcode"')
    assert answer.evidence_ms == T0 + 5000  # the turn that completed the set
    answer = ask(PhraseRule(three, mode="all_of"), turns)
    assert (
        not answer.passed
        and answer.evidence == "missing 'last four digits' (all turns, whole call)"
    )


def test_phrase_evidence_names_phrase_and_turn_and_fits():
    long_text = "Well, " + "let me look into this for you, " * 8 + "I'm sorry about the wait."
    answer = ask(
        PhraseRule(("i'm sorry",)), [turn("agent", 3, 9, "ok"), turn("agent", 10, 30, long_text)]
    )
    assert answer.passed and answer.evidence_ms == T0 + 10_000
    assert answer.evidence.startswith('"i\'m sorry": …') and "I'm sorry" in answer.evidence
    assert len(answer.evidence) <= EVIDENCE_MAX_CHARS


# --- roles, windows, negate ------------------------------------------------------------------


def test_role_selects_channel_and_mixed_counts_for_either():
    rule = PhraseRule(("hello",))
    customer = [turn("customer", 0, 2, "hello?")]
    assert not ask(rule, customer, role="agent").passed
    assert ask(rule, customer, role="customer").passed
    assert ask(rule, customer, role="any").passed
    assert ask(rule, [turn("mixed", 0, 2, "Hello, Acme")], role="agent").passed


def test_first_seconds_window_counts_turns_that_overlap_it():
    rule, window = PhraseRule(("hello",)), Window("first", length_s=15)
    late = [
        turn("agent", 0, 2, "uh"),
        turn("agent", 20, 22, "hello"),
        turn("customer", 40, 60, "x"),
    ]
    assert not ask(rule, late, role="agent", window=window).passed
    straddling = [turn("agent", 14, 18, "hello"), turn("customer", 40, 60, "x")]
    assert ask(rule, straddling, role="agent", window=window).passed


def test_window_is_relative_to_the_first_transcript():
    turns = [turn("agent", 100, 102, "hello"), turn("agent", 150, 160, "bye")]
    assert ask(PhraseRule(("hello",)), turns, window=Window("first", length_s=5)).passed


def test_last_percent_window():
    rule, window = PhraseRule(("anything else",)), Window("last", length_pct=30)
    early = [turn("agent", 0, 10, "anything else?"), turn("customer", 10, 100, "long story")]
    assert not ask(rule, early, window=window, role="agent").passed
    late = [turn("customer", 0, 70, "long story"), turn("agent", 75, 80, "Anything else?")]
    assert ask(rule, late, window=window, role="agent").passed


def test_negate_passes_when_no_forbidden_phrase_and_fails_with_evidence():
    rule = PhraseRule(("shut up", "闭嘴"))
    clean = ask(rule, [turn("agent", 0, 2, "Let me check that.")], role="agent", negate=True)
    assert clean.passed and clean.points == 2.0 and clean.evidence_ms is None
    rude = [turn("agent", 0, 2, "ok"), turn("agent", 30, 32, "你给我闭嘴！")]
    answer = ask(rule, rude, role="agent", negate=True)
    assert not answer.passed and answer.points == 0.0 and answer.potential == 2.0
    assert answer.evidence == '"闭嘴": 你给我闭嘴！' and answer.evidence_ms == T0 + 30_000


# --- metric rules ----------------------------------------------------------------------------


def test_silence_rule_longest_gap_and_count():
    rule = SilenceRule(max_longest_s=10)
    ok = ask(rule, [], metrics(longest_non_talk_s=7.24, non_talk_count=3))
    assert ok.passed and ok.evidence == "longest gap 7.2 s (max 10 s)" and ok.evidence_ms is None
    assert not ask(rule, [], metrics(longest_non_talk_s=10.5)).passed
    both = ask(SilenceRule(10, 2), [], metrics(longest_non_talk_s=3.0, non_talk_count=3))
    assert not both.passed and both.evidence == "longest gap 3.0 s (max 10 s); 3 gaps (max 2)"


@pytest.mark.parametrize(("role", "passed"), [("agent", True), ("customer", False), ("any", False)])
def test_interruption_rule_counts_the_role(role, passed):
    m = metrics(interruptions_by_agent=2, interruptions_by_customer=3)
    assert ask(InterruptionRule(max_count=2), [], m, role=role).passed is passed


def test_sentiment_rule_is_duration_weighted_in_the_window():
    turns = [
        turn("customer", 0, 60, "angry", -0.9),  # outside the last 25%
        turn("customer", 80, 90, "hmm", -0.6),  # 10 s
        turn("customer", 90, 120, "thanks", 0.4),  # 30 s
        turn("agent", 100, 110, "anything else", -1.0),  # another role
    ]
    answer = ask(
        SentimentRule(min=-0.2), turns, role="customer", window=Window("last", length_pct=25)
    )
    # last 25% of 0..120 s is 90..120 s: -0.6 overlaps it by only 1 ms, so ~ +0.40
    assert answer.passed and answer.evidence == "customer sentiment (last 25%) +0.40 (min -0.2)"
    whole = ask(SentimentRule(min=-0.2), turns[1:3], role="customer")
    assert whole.passed and whole.evidence.endswith("+0.15 (min -0.2)")  # (-6 + 12) / 40
    low = ask(SentimentRule(min=0.2), turns[1:3], role="customer")
    assert not low.passed and low.evidence_ms == T0 + 80_000  # the most negative turn


def test_sentiment_rule_without_scores_holds_and_trajectory_reads_metrics():
    answer = ask(SentimentRule(min=0.0), [turn("customer", 0, 5, "ok")], role="customer")
    assert answer.passed and answer.evidence == "no customer sentiment (whole call) to measure"
    traj = SentimentRule(min=-0.3, source="trajectory")
    assert not ask(traj, [], metrics(sentiment_trajectory=-0.5), role="customer").passed
    assert ask(traj, [], metrics(sentiment_trajectory=0.1), role="customer").passed


# --- scoring ---------------------------------------------------------------------------------


def test_scoring_arithmetic_and_determinism():
    card = Scorecard(
        "arith",
        (
            Question("a", "?", 1.5, PhraseRule(("hello",))),
            Question("b", "?", 2.5, PhraseRule(("goodbye",))),
            Question("c", "?", 1.0, SilenceRule(max_count=0)),
        ),
    )
    turns = [turn("agent", i, i + 1, "hello" if i == 3 else f"turn {i}") for i in range(10)]
    result = score_call(card, turns, metrics())
    assert [a.points for a in result.answers] == [1.5, 0.0, 1.0]
    assert (result.scorecard, result.score, result.potential) == ("arith", 2.5, 5.0)
    assert result.normalized_score == pytest.approx(0.5)
    random.Random(7).shuffle(turns)
    assert score_call(card, turns, metrics()) == result
    assert score_call(Scorecard("empty", ()), turns, metrics()).normalized_score == 0.0


GOOD_EN = [
    turn("agent", 0, 4, "Hello, thank you for calling Acme, this is Sam.", 0.5),
    turn("customer", 4, 10, "Hi, my card was charged twice.", -0.4),
    turn("agent", 10, 14, "I'm sorry to hear that. Can you verify your date of birth?", 0.1),
    turn("customer", 14, 17, "March third, 1980.", 0.0),
    turn("agent", 17, 20, "Thanks. One moment please while I check.", 0.2),
    turn("agent", 26, 32, "Thank you for waiting. I've refunded the second charge.", 0.4),
    turn("customer", 32, 36, "Great, thank you so much!", 0.8),
    turn("agent", 36, 40, "Is there anything else I can help you with?", 0.3),
    turn("customer", 40, 42, "No, that's all.", 0.3),
    turn("agent", 42, 45, "Thank you for calling, have a nice day. Goodbye!", 0.6),
]
GOOD_ZH = [  # partly traditional characters and spaced out, as ASR sometimes writes
    turn("agent", 0, 4, "您好，歡迎致電 ACME 客服，我是小王。", 0.5),
    turn("customer", 4, 10, "你好，我的账单多扣了一笔钱。", -0.4),
    turn("agent", 10, 15, "非常抱歉给您带来不便，请提供身份证后四位核实一下。", 0.1),
    turn("customer", 15, 18, "一二三四。", 0.0),
    turn("agent", 18, 21, "好的，请 稍等。", 0.2),
    turn("agent", 27, 33, "感謝您的耐心等待，已经为您退款。", 0.4),
    turn("customer", 33, 37, "太好了，谢谢！", 0.8),
    turn("agent", 37, 41, "请问还有什么可以帮您的吗？", 0.3),
    turn("customer", 41, 43, "没有了。", 0.3),
    turn("agent", 43, 46, "感谢您的来电，祝您生活愉快，再见！", 0.6),
]


@pytest.mark.parametrize("turns", [GOOD_EN, GOOD_ZH], ids=["en", "zh"])
def test_default_scorecard_gives_a_good_call_full_marks(turns):
    result = score_call(default_scorecard(), turns, metrics(longest_non_talk_s=6.0))
    failed = {a.question_id: a.evidence for a in result.answers if not a.passed}
    assert failed == {}
    assert result.scorecard == "default" and result.normalized_score == 1.0


def test_default_scorecard_marks_down_a_bad_call():
    turns = [
        turn("customer", 0, 5, "Hello? I've been waiting forever.", -0.7),
        turn("agent", 5, 9, "Yeah, what do you want.", -0.3),
        turn("customer", 9, 15, "My card was charged twice.", -0.5),
        turn("agent", 40, 44, "That's not my problem, you must be stupid.", -0.9),
        turn("customer", 44, 50, "Unbelievable. I want to cancel.", -0.9),
    ]
    m = metrics(longest_non_talk_s=25.0, non_talk_count=1, interruptions_by_agent=3)
    result = score_call(default_scorecard(), turns, m)
    answers = {a.question_id: a for a in result.answers}
    assert {q for q, a in answers.items() if a.passed} == set()
    assert answers["no_forbidden_words"].evidence.startswith('"stupid": That')
    assert answers["no_forbidden_words"].evidence_ms == T0 + 40_000
    assert answers["no_long_silence"].evidence == "longest gap 25.0 s (max 10 s)"
    assert result.score == 0.0 and result.potential == 13.0


def test_default_scorecard_is_packaged_and_every_phrase_is_simplified():
    card = default_scorecard()
    assert len({q.id for q in card.questions}) == len(card.questions) == 10
    weights = {q.id: q.weight for q in card.questions}
    assert weights["no_forbidden_words"] > weights["identity_verification"] > weights["greeting"]
    for q in card.questions:
        rules = [q.rule, *(c.rule for c in q.applies_if)]
        for rule in rules:
            if isinstance(rule, PhraseRule):
                phrases = [p for group in rule.groups for p in group]
                assert all(normalize_text(p) == normalize_text(p.lower()) for p in phrases)


# --- loader ----------------------------------------------------------------------------------

VALID = """
name: mini
questions:
  - id: greeting
    text: Greeted?
    weight: 2
    role: agent
    window: first 15 s
    rule: {kind: phrase, phrases: [hello, 您好], match: fuzzy, threshold: 90}
  - id: calm_end
    text: Calm end?
    weight: 1.5
    role: customer
    window: Last 30 %
    rule: {kind: sentiment, min: -0.2, max: 1}
  - id: quiet
    text: Quiet?
    weight: 1
    negate: true
    rule: {kind: silence, max_count: 0}
"""


def test_load_scorecard_reads_every_field(tmp_path: Path):
    path = tmp_path / "mini.yaml"
    path.write_text(VALID, encoding="utf-8")
    card = load_scorecard(path)
    assert card.name == "mini"
    greeting, calm, quiet = card.questions
    assert greeting == Question(
        "greeting",
        "Greeted?",
        2.0,
        PhraseRule(("hello", "您好"), "fuzzy", "any_of", 90.0),
        "agent",
        Window("first", length_s=15.0),
    )
    assert calm.window == Window("last", length_pct=30.0) and calm.rule == SentimentRule(-0.2, 1.0)
    assert quiet.negate and quiet.role == "any" and quiet.window == Window()


def _question(**fields: Any) -> dict[str, Any]:
    return {
        "id": "greeting",
        "text": "Greeted?",
        "weight": 1,
        "rule": {"kind": "phrase", "phrases": ["hi"]},
        **fields,
    }


@pytest.mark.parametrize(
    ("question", "message"),
    [
        (_question(colour="red"), r"question 'greeting': unknown field 'colour'; use one of: id,"),
        (
            _question(weight=0),
            r"question 'greeting': field 'weight' must be a number greater than 0, got 0\.",
        ),
        (_question(weight="heavy"), r"field 'weight' must be a number greater than 0, got 'heavy'"),
        (_question(weight=True), r"field 'weight' must be a number"),
        (_question(role="boss"), r"field 'role' must be one of agent, customer, any, got 'boss'"),
        (
            _question(window="first 15"),
            r"question 'greeting': field 'window' must be 'call', 'first\|last N s'",
        ),
        (_question(window="last 150%"), r"field 'window' must be .* got 'last 150%'"),
        (_question(window="first 0 s"), r"field 'window' must be"),
        (_question(negate="yes"), r"field 'negate' must be true or false, got 'yes'"),
        (
            _question(rule={"kind": "phrase", "phrases": []}),
            r"question 'greeting': field 'phrases' must be a non-empty list",
        ),
        (
            _question(rule={"kind": "phrase", "phrases": [False]}),
            r"has False, .*quote words YAML reads as booleans",
        ),
        (_question(rule={"kind": "phrase", "phrases": ["!!"]}), r"has '!!', which is not a phrase"),
        (
            _question(rule={"kind": "phrase", "phrases": ["hi"], "threshold": 80}),
            r"field 'threshold' applies only to 'match: fuzzy'",
        ),
        (
            _question(rule={"kind": "phrase", "phrases": ["hi"], "mode": "some_of"}),
            r"field 'mode' must be one of any_of, all_of",
        ),
        (
            _question(rule={"kind": "shout"}),
            r"field 'kind' must be one of phrase, silence, interruption, sentiment",
        ),
        (_question(rule={"phrases": ["hi"]}), r"question 'greeting': field 'kind' is missing\."),
        (
            _question(rule={"kind": "silence", "max_s": 3}),
            r"unknown field 'max_s'; use one of: kind, max_longest_s, max_count",
        ),
        (
            _question(rule={"kind": "silence"}),
            r"set 'max_longest_s', 'min_longest_s' and/or 'max_count'",
        ),
        (
            _question(rule={"kind": "silence", "min_longest_s": 9, "max_longest_s": 5}),
            r"'min_longest_s' \(9\) must not exceed 'max_longest_s' \(5\)",
        ),
        (
            _question(rule={"kind": "phrase", "phrases": [["please hold", 3]]}),
            r"has 3, which is not a phrase",
        ),
        (
            _question(rule={"kind": "phrase", "phrases": [[]]}),
            r"has \[\], which is not a phrase",
        ),
        (
            _question(applies_if=[]),
            r"field 'applies_if' must be a condition or a non-empty list",
        ),
        (
            _question(applies_if={"kind": "silence", "min_longest_s": 5, "role": "agent"}),
            r"question 'greeting', applies_if #1: field 'role' does not apply to silence",
        ),
        (
            _question(applies_if=[{"kind": "phrase", "phrases": ["x"]}, {"kind": "loud"}]),
            r"applies_if #2: field 'kind' must be one of phrase",
        ),
        (
            _question(applies_if={"kind": "phrase", "phrases": ["x"], "negate": "no"}),
            r"applies_if #1: field 'negate' must be true or false",
        ),
        (
            _question(rule={"kind": "silence", "max_longest_s": 5}, window="first 5 s"),
            r"field 'window' does not apply to silence rules",
        ),
        (
            _question(rule={"kind": "interruption", "max_count": 1.5}),
            r"field 'max_count' must be an integer >= 0, got 1\.5",
        ),
        (
            _question(rule={"kind": "sentiment", "min": 0.5, "max": 0.1}),
            r"field 'min' \(0\.5\) must not exceed field 'max'",
        ),
        (
            _question(rule={"kind": "sentiment", "min": -3}),
            r"field 'min' must be a number from -1 to 1, got -3",
        ),
        (
            _question(rule={"kind": "sentiment", "min": 0, "source": "trajectory"}),
            r"set 'role: customer'",
        ),
        (_question(rule="hello"), r"field 'rule' must be a mapping of fields, got str"),
        ({"text": "x", "weight": 1}, r"question #1: field 'id' is missing\."),
        # missing fields
        (
            {"id": "greeting", "text": "x", "rule": {"kind": "interruption", "max_count": 1}},
            r"question 'greeting': field 'weight' is missing\.",
        ),
        (_question(rule={"kind": "interruption"}), r"field 'max_count' is missing\."),
        # wrong types
        (_question(id=123), r"question #1: field 'id' must be a non-empty string, got 123\."),
        (_question(id="  "), r"question #1: field 'id' must be a non-empty string, got '  '"),
        (_question(text=""), r"field 'text' must be a non-empty string, got ''"),
        (_question(weight=None), r"field 'weight' must be a number greater than 0, got None"),
        (_question(negate=1), r"field 'negate' must be true or false, got 1\."),
        (_question(window=5), r"field 'window' must be 'call', .* got 5\."),
        (1, r"question #1: a question must be a mapping of fields, got int\."),
        (
            _question(rule={"kind": "phrase", "phrases": "hi"}),
            r"field 'phrases' must be a non-empty list of phrases, got 'hi'\.",
        ),
        (
            _question(rule={"kind": "silence", "max_longest_s": "10 s"}),
            r"field 'max_longest_s' must be a number >= 0, got '10 s'\.",
        ),
        (
            _question(applies_if="long silence"),
            r"applies_if #1: a condition must be a mapping of fields, got str\.",
        ),
        # bad values
        (_question(weight=-1), r"field 'weight' must be a number greater than 0, got -1\."),
        (
            _question(weight=float("inf")),
            r"field 'weight' must be a number greater than 0, got inf",
        ),
        (
            _question(rule={"kind": "phrase", "phrases": ["hi"], "match": "fuzzy", "threshold": 0}),
            r"field 'threshold' must be a number in \(0, 100\], got 0\.",
        ),
        (
            _question(rule={"kind": "interruption", "max_count": -1}),
            r"field 'max_count' must be an integer >= 0, got -1\.",
        ),
        (
            _question(rule={"kind": "silence", "max_longest_s": float("inf")}),
            r"field 'max_longest_s' must be a number >= 0, got inf\.",
        ),
        (
            _question(
                role="customer", rule={"kind": "sentiment", "min": 2.5, "source": "trajectory"}
            ),
            r"field 'min' must be a number from -2 to 2, got 2\.5\.",
        ),
        # bad enum values
        (
            _question(rule={"kind": "sentiment", "min": 0, "source": "both"}),
            r"field 'source' must be one of turns, trajectory, got 'both'\.",
        ),
        (
            _question(rule={"kind": "phrase", "phrases": ["hi"], "match": "regex"}),
            r"field 'match' must be one of exact, fuzzy, phonetic, got 'regex'\.",
        ),
        (_question(rule={"kind": 5}), r"field 'kind' must be one of phrase, .*, got 5\."),
        # unknown fields and fields that do not apply
        (
            _question(applies_if={"kind": "silence", "min_longest_s": 5, "colour": "red"}),
            r"applies_if #1: unknown field 'colour'; use one of: kind, max_longest_s,",
        ),
        (
            _question(rule={"kind": "interruption", "max_count": 1}, window="last 5 s"),
            r"field 'window' does not apply to interruption rules",
        ),
        (
            _question(rule={"kind": "silence", "max_count": 1}, role="agent"),
            r"question 'greeting': field 'role' does not apply to silence rules; remove it\.",
        ),
    ],
)
def test_loader_errors_name_question_and_field(tmp_path: Path, question, message):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "questions": [question]}, allow_unicode=True))
    with pytest.raises(ScorecardError, match=message) as info:
        load_scorecard(path)
    assert str(info.value).startswith(f"{path}, question ")


QUIET = "rule: {kind: silence, max_count: 0}"
ONE_QUESTION = f"name: x\nquestions:\n  - {{id: a, text: t, weight: 1, {QUIET}}}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nquestions: [", r"is not valid YAML at line \d+; fix its syntax\."),
        ("- 1\n- 2", r"the scorecard must be a mapping of fields, got list"),
        ("name: x\nquestions: []", r"field 'questions' must be a non-empty list"),
        ("questions: [{}]", r"field 'name' is missing"),
        (
            "name: x\nquestions: [1]\nowner: me",
            r"unknown field 'owner'; use one of: name, questions",
        ),
        ("", r"^card\.yaml: the scorecard must be a mapping of fields, got NoneType\.$"),
        (
            "name: 12\nquestions: [1]",
            r"^card\.yaml: field 'name' must be a non-empty string, got 12",
        ),
        (
            "name: x\nquestions: 5",
            r"field 'questions' must be a non-empty list of questions, got 5",
        ),
        (
            "name: x\nquestions:",
            r"field 'questions' must be a non-empty list of questions, got None",
        ),
        (
            f"{ONE_QUESTION}  - {{text: t, weight: 1}}",
            r"^card\.yaml, question #2: field 'id' is missing\.$",
        ),
        (
            f"{ONE_QUESTION}  - {{id: b, text: t, weight: 0, {QUIET}}}",
            r"^card\.yaml, question 'b': field 'weight' must be a number greater than 0, got 0\.$",
        ),
    ],
)
def test_loader_errors_on_the_file_as_a_whole(text, message):
    with pytest.raises(ScorecardError, match=message):
        parse_scorecard(text, source="card.yaml")


def test_loader_rejects_duplicate_ids(tmp_path: Path):
    path = tmp_path / "dup.yaml"
    one = "  - {id: greeting, text: t, weight: 1, rule: {kind: interruption, max_count: 1}}\n"
    path.write_text("name: dup\nquestions:\n" + one + one)
    with pytest.raises(ScorecardError, match=r"dup\.yaml: question id 'greeting' is used twice"):
        load_scorecard(path)


def test_records_built_in_code_are_validated_too():
    with pytest.raises(ValueError, match=r"set 'max_longest_s', 'min_longest_s'"):
        SilenceRule()
    with pytest.raises(ValueError, match=r"field 'role' does not apply to silence rules"):
        Question("q", "?", 1.0, SilenceRule(max_count=0), role="agent")
    assert Scorecard("empty", ()).questions == ()  # an empty card in code is fine


def test_loaded_scorecard_is_frozen_hashable_and_pickles(tmp_path: Path):
    path = tmp_path / "mini.yaml"
    path.write_text(VALID, encoding="utf-8")
    for card in (load_scorecard(path), default_scorecard()):
        back = pickle.loads(pickle.dumps(card))
        assert back == card and hash(back) == hash(card)
        assert back.questions[0].rule == card.questions[0].rule
        assert score_call(back, GOOD_EN, metrics()) == score_call(card, GOOD_EN, metrics())
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.questions[0].weight = 5.0


def test_loader_says_which_file_is_missing(tmp_path: Path):
    with pytest.raises(ScorecardError, match=r"Cannot read scorecard .*nope\.yaml \(No such file"):
        load_scorecard(tmp_path / "nope.yaml")


# --- alternatives and "not applicable" -------------------------------------------------------

HOLD = PhraseRule(
    (("please hold", "one moment", "请稍等"), ("thank you for waiting", "让您久等了")),
    mode="all_of",
)


def test_all_of_alternatives_need_each_item_said_in_any_turn():
    asked = [turn("agent", 0, 3, "One moment please."), turn("agent", 20, 23, "Sorry.")]
    answer = ask(HOLD, asked, role="agent")
    assert answer.passed is False
    assert answer.evidence.startswith("missing 'thank you for waiting / 让您久等了' (agent")
    both = [turn("agent", 0, 3, "好的，请稍等。"), turn("agent", 20, 23, "让您久等了。")]
    answer = ask(HOLD, both, role="agent")
    assert answer.passed and answer.evidence.startswith('"让您久等了": 让您久等了')
    assert answer.evidence_ms == T0 + 20_000
    anyone = PhraseRule(HOLD.phrases)  # any_of: any alternative of any item
    assert ask(anyone, [turn("agent", 0, 3, "Please hold.")]).evidence.startswith('"please hold"')


def _hold_card() -> Scorecard:
    hold = next(q for q in default_scorecard().questions if q.id == "hold_handling")
    return Scorecard("hold", (hold,))


def test_hold_question_is_not_applicable_to_a_call_without_a_hold():
    turns = [turn("agent", 0, 4, "Hello, how can I help?"), turn("customer", 4, 8, "Hi.")]
    result = score_call(_hold_card(), turns, metrics(longest_non_talk_s=3.0))
    (answer,) = result.answers
    assert (answer.passed, answer.points, answer.potential) == (None, 0.0, 0.0)
    assert answer.evidence.startswith("not applicable: none of 11 phrases found (agent turns")
    assert "; longest gap 3.0 s (min 15 s)" in answer.evidence
    assert (result.score, result.potential, result.normalized_score) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("turns", "longest_s", "passed"),
    [
        # a 20 s silence is a hold even if nobody says so: asked, and failed
        ([turn("agent", 0, 4, "Hello."), turn("agent", 24, 26, "Okay.")], 20.0, False),
        # the agent mentions a hold: asked; asked and thanked: passed
        (
            [turn("agent", 0, 4, "Please hold."), turn("agent", 9, 12, "Thanks for waiting.")],
            5,
            True,
        ),
        ([turn("agent", 0, 4, "请您稍等。"), turn("agent", 9, 12, "好的。")], 5.0, False),
    ],
)
def test_hold_question_applies_after_a_long_silence_or_a_mention(turns, longest_s, passed):
    (answer,) = score_call(_hold_card(), turns, metrics(longest_non_talk_s=longest_s)).answers
    assert answer.passed is passed and answer.potential == 1.0


def test_a_negated_condition_and_the_silence_minimum():
    only_quiet = Question(
        "q", "?", 1.0, SilenceRule(max_count=0),
        applies_if=(Condition(SilenceRule(min_longest_s=10), negate=True),),
    )  # fmt: skip
    card = Scorecard("t", (only_quiet,))
    assert (
        score_call(card, [], metrics(longest_non_talk_s=12.0, non_talk_count=1)).answers[0].evidence
        == "not applicable: not: longest gap 12.0 s (min 10 s)"
    )
    assert score_call(card, [], metrics(longest_non_talk_s=2.0)).answers[0].passed is True


def test_loader_reads_applies_if_and_alternatives():
    card = parse_scorecard(
        """
name: t
questions:
  - id: hold
    text: Hold etiquette?
    weight: 1
    role: agent
    applies_if:
      kind: phrase
      role: agent
      window: first 50%
      phrases: [hold]
    rule:
      kind: phrase
      mode: all_of
      phrases: [[please hold, 请稍等], thanks]
"""
    )
    (q,) = card.questions
    assert q.rule == PhraseRule((("please hold", "请稍等"), "thanks"), mode="all_of")
    assert q.applies_if == (
        Condition(PhraseRule(("hold",)), "agent", Window("first", length_pct=50.0)),
    )
