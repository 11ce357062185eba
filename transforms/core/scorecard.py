"""QA scorecards: configurable questions answered from one call's transcripts and metrics.

A scorecard is a YAML file (``load_scorecard``; the packaged one is ``default_scorecard()``,
``transforms/core/scorecards/default.yaml``). Each question has a weight, a rule, the role
whose turns it looks at and a window of the call; ``score_call`` answers every question for
one call, as a pure function shared by the streaming job, the batch job and tests::

    card = default_scorecard()
    result = score_call(card, transcripts, metrics)  # ScorecardResult
    result.normalized_score  # 0..1

Rule kinds: ``phrase`` (what was said), ``silence`` and ``interruption`` (from ``CallMetrics``,
whole call), ``sentiment`` (the transcripts' ``sentiment`` in the window, or the customer's
trajectory). ``negate`` flips a rule, so "no forbidden word" is a negated ``phrase`` rule.

The records are frozen pydantic dataclasses: they are the file's schema (the loader validates
the YAML against them) and what ``score_call`` reads, and they pickle like any dataclass.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal, cast

import yaml
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails
from rapidfuzz import fuzz

from schemas.records import CallMetrics, ScorecardAnswer, ScorecardResult, Transcript
from transforms.core.script import HAN, HAN_RANGES, to_script

Role = Literal["agent", "customer", "any"]
EVIDENCE_MAX_CHARS: Final = 120  # fits one table cell in the report
# rapidfuzz partial_ratio is 0..100; 85 lets a short phrase survive one ASR slip ("i under stand")
# while two-character Chinese phrases still need both characters (one of two scores 50).
DEFAULT_FUZZY_THRESHOLD: Final = 85.0

# ---------------------------------------------------------------------------------------------
# Records, and the scorecard file's schema
#
# A misspelt field is an error, not ignored. Numbers, strings and booleans are strict: YAML reads
# `no` as false and `1.5` as a float, and the user must hear about it rather than get a coercion.
# Each field's ``description`` is what the loader's error message says it must be.

_RECORD: Final = ConfigDict(extra="forbid")


def _want(description: str, **constraints: Any) -> Any:
    """A strict field whose errors read "field 'x' must be <description>, got <value>"."""
    return Field(strict=True, description=description, **constraints)


_Text = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1),
    Field(description="a non-empty string"),
]
_Flag = Annotated[bool, _want("true or false")]
_Seconds = Annotated[float | None, _want("a number >= 0", ge=0, allow_inf_nan=False)]
_Count = Annotated[int | None, _want("an integer >= 0", ge=0)]
_Level = Annotated[float | None, _want("a number", allow_inf_nan=False)]  # range: SentimentRule
_WINDOW_RE: Final = re.compile(r"(?:whole\s+)?call|(first|last)\s+(\d+(?:\.\d+)?)\s*(s|%)")


@dataclass(frozen=True, config=_RECORD)
class Window:
    """The part of the call a question looks at: the whole call, or its first/last stretch
    given in seconds (``length_s``) or in percent of the call (``length_pct``).

    In YAML: ``call``, ``first|last N s`` or ``first|last N %``."""

    edge: Literal["call", "first", "last"] = "call"
    length_s: float | None = None
    length_pct: float | None = None

    def bounds_ms(self, start_ms: int, end_ms: int) -> tuple[float, float]:
        """``[lo, hi]`` event time of this window in a call spanning ``start_ms..end_ms``."""
        if self.edge == "call":
            return float(start_ms), float(end_ms)
        if self.length_s is not None:
            length = self.length_s * 1000
        else:
            length = (end_ms - start_ms) * (self.length_pct or 0.0) / 100
        return (start_ms, start_ms + length) if self.edge == "first" else (end_ms - length, end_ms)

    def __str__(self) -> str:
        if self.edge == "call":
            return "whole call"
        if self.length_s is not None:
            return f"{self.edge} {self.length_s:g} s"
        return f"{self.edge} {self.length_pct:g}%"


def _window(value: object) -> Window:
    """A ``Window`` as is, or parsed from its YAML text."""
    if isinstance(value, Window):
        return value
    m = _WINDOW_RE.fullmatch(value.strip().lower()) if isinstance(value, str) else None
    length = float(m.group(2)) if m and m.group(2) else None
    if m is None or length == 0 or (m.group(3) == "%" and length is not None and length > 100):
        raise ValueError(
            "field 'window' must be 'call', 'first|last N s' or 'first|last N %' "
            f"(N > 0, at most 100 for %), got {value!r}"
        )
    if length is None:
        return Window()
    edge = cast(Literal["first", "last"], m.group(1))
    return Window(edge, length_s=length) if m.group(3) == "s" else Window(edge, length_pct=length)


def _phrase_item(p: object) -> str | tuple[str, ...]:
    """A phrase, or a non-empty list of alternative phrases."""
    alts = tuple(p) if isinstance(p, list | tuple) and p else (p,)
    for alt in alts:
        if not isinstance(alt, str) or not normalize_text(alt):
            raise ValueError(
                f"field 'phrases' has {alt!r}, which is not a phrase with letters or digits "
                "(quote words YAML reads as booleans or numbers, e.g. 'no'; a list item "
                "must be a non-empty list of such phrases)"
            )
    said = cast(tuple[str, ...], alts)
    return tuple(a.strip() for a in said) if isinstance(p, list | tuple) else said[0].strip()


@dataclass(frozen=True, config=_RECORD)
class PhraseRule:
    """Holds when any (``any_of``) or every (``all_of``) phrase is said in a turn in scope.

    An item of ``phrases`` is a phrase or a tuple of alternatives ("please hold" or "one
    moment"): with ``all_of`` every item must be said (each by any of its alternatives), not
    necessarily in one turn; with ``any_of`` any alternative of any item will do.

    ``exact``: substring of the normalised turn (``normalize_text``); a phrase starting with a
    Latin letter must start at a word ("resolved" is not found in "unresolved", "idiot" is
    found in "idiots"). ``fuzzy``: rapidfuzz ``partial_ratio >= threshold`` on normalised text.
    ``phonetic``: ``exact``, or for a Chinese phrase the same syllables with the same tones
    (pypinyin) in the turn: Mandarin ASR often writes a word as a homophone (核实 → 何时).
    """

    phrases: Annotated[
        tuple[Annotated[str | tuple[str, ...], PlainValidator(_phrase_item)], ...],
        Field(min_length=1, description="a non-empty list of phrases"),
    ]
    match: Literal["exact", "fuzzy", "phonetic"] = "exact"
    mode: Literal["any_of", "all_of"] = "any_of"
    threshold: Annotated[
        float, _want("a number in (0, 100]", gt=0, le=100, allow_inf_nan=False)
    ] = DEFAULT_FUZZY_THRESHOLD
    kind: Literal["phrase"] = "phrase"

    @model_validator(mode="before")
    @classmethod
    def _threshold_is_fuzzy(cls, data: Any) -> Any:
        if isinstance(data, dict) and "threshold" in data and data.get("match") != "fuzzy":
            raise ValueError(
                "field 'threshold' applies only to 'match: fuzzy'; remove it or set match"
            )
        return data

    @property
    def groups(self) -> tuple[tuple[str, ...], ...]:
        """Each item as its alternatives (a plain phrase: one alternative)."""
        return tuple((p,) if isinstance(p, str) else p for p in self.phrases)


@dataclass(frozen=True, config=_RECORD)
class SilenceRule:
    """Holds when the call's longest gap and/or its number of gaps stay within the limits
    (``min_longest_s``: "there was a gap of at least N s", e.g. to make a hold question apply).
    """

    max_longest_s: _Seconds = None
    max_count: _Count = None
    min_longest_s: _Seconds = None
    kind: Literal["silence"] = "silence"

    def __post_init__(self) -> None:
        lo, hi = self.min_longest_s, self.max_longest_s
        if lo is None and hi is None and self.max_count is None:
            raise ValueError("set 'max_longest_s', 'min_longest_s' and/or 'max_count' in the rule")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"'min_longest_s' ({lo:g}) must not exceed 'max_longest_s' ({hi:g})")


@dataclass(frozen=True, config=_RECORD)
class InterruptionRule:
    """Holds when the role's interruptions (``any``: both parties') are at most ``max_count``."""

    max_count: Annotated[int, _want("an integer >= 0", ge=0)]
    kind: Literal["interruption"] = "interruption"


@dataclass(frozen=True, config=_RECORD)
class SentimentRule:
    """Holds when a sentiment is within ``[min, max]`` (either may be open).

    ``source="turns"``: the role's duration-weighted sentiment over its scored turns in the
    window (each turn weighted by its overlap with the window), -1..1. ``"trajectory"``: the
    customer's ``CallMetrics.sentiment_trajectory`` (last quarter - first), -2..2. No sentiment
    to measure counts as holding: a call without analysis is not marked down.
    """

    min: _Level = None
    max: _Level = None
    source: Literal["turns", "trajectory"] = "turns"
    kind: Literal["sentiment"] = "sentiment"

    def __post_init__(self) -> None:
        bound = 2 if self.source == "trajectory" else 1  # a trajectory is a difference of two means
        for name, v in (("min", self.min), ("max", self.max)):
            if v is not None and not -bound <= v <= bound:
                raise ValueError(
                    f"field {name!r} must be a number from -{bound} to {bound}, got {v:g}"
                )
        if self.min is None and self.max is None:
            raise ValueError("set 'min', 'max' or both in the sentiment rule")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"field 'min' ({self.min:g}) must not exceed field 'max' ({self.max:g})"
            )


Rule = Annotated[
    PhraseRule | SilenceRule | InterruptionRule | SentimentRule, Field(discriminator="kind")
]
_RULES: Final = {
    "phrase": PhraseRule,
    "silence": SilenceRule,
    "interruption": InterruptionRule,
    "sentiment": SentimentRule,
}
_WindowField = Annotated[Window, PlainValidator(_window)]


def _check_scope(rule: Rule, role: Role, window: Window) -> None:
    """The role and window a rule can look at (metric rules: the whole call)."""
    if rule.kind in ("silence", "interruption") and window != Window():
        raise ValueError(
            f"field 'window' does not apply to {rule.kind} rules (they use the whole call)"
        )
    if rule.kind == "silence" and role != "any":
        raise ValueError("field 'role' does not apply to silence rules; remove it")
    trajectory = isinstance(rule, SentimentRule) and rule.source == "trajectory"
    if trajectory and (role != "customer" or window != Window()):
        raise ValueError(
            "'source: trajectory' is the customer's whole call: set 'role: customer' and "
            "remove 'window'"
        )


@dataclass(frozen=True, config=_RECORD)
class Condition:
    """A rule with the role and window it looks at: when a question applies (``applies_if``).

    In YAML, a rule's fields (``kind``, ...) with optional ``role``, ``window`` and ``negate``.
    """

    rule: Rule
    role: Role = "any"
    window: _WindowField = Window()
    negate: _Flag = False

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        own = {k: v for k, v in data.items() if k in ("role", "window", "negate")}
        return {**own, "rule": {k: v for k, v in data.items() if k not in own}}

    def __post_init__(self) -> None:
        _check_scope(self.rule, self.role, self.window)


def _conditions(value: Any) -> Any:
    """``applies_if``: one condition or a non-empty list of them (absent or null: none)."""
    if value is None:
        return ()
    if value == []:
        raise ValueError("field 'applies_if' must be a condition or a non-empty list of conditions")
    return value if isinstance(value, list | tuple) else [value]


@dataclass(frozen=True, config=_RECORD)
class Question:
    """One scorecard question; worth ``weight`` points when its rule holds (after ``negate``).

    ``applies_if``: the question is asked only of calls where at least one of these conditions
    holds (empty: every call). Otherwise its answer is "not applicable": ``passed`` None, no
    points and no potential, so a call without a hold is not marked down on hold etiquette.
    """

    id: _Text
    text: _Text
    weight: Annotated[float, _want("a number greater than 0", gt=0, allow_inf_nan=False)]
    rule: Rule
    role: Role = "any"
    window: _WindowField = Window()
    negate: _Flag = False
    applies_if: Annotated[tuple[Condition, ...], BeforeValidator(_conditions)] = ()

    def __post_init__(self) -> None:
        _check_scope(self.rule, self.role, self.window)


def _questions(value: Any) -> Any:
    if value == []:  # a card built in code may be empty; a file without questions is a mistake
        raise ValueError("field 'questions' must be a non-empty list of questions")
    return value


@dataclass(frozen=True, config=_RECORD)
class Scorecard:
    name: _Text
    questions: Annotated[
        tuple[Question, ...],
        Field(description="a non-empty list of questions"),
        BeforeValidator(_questions),
    ]

    def __post_init__(self) -> None:
        ids = [q.id for q in self.questions]
        if twice := next((i for n, i in enumerate(ids) if i in ids[:n]), None):
            raise ValueError(f"question id {twice!r} is used twice; make ids unique")


# ---------------------------------------------------------------------------------------------
# Matching text

_APOSTROPHES: Final = re.compile("['\u2018\u2019`]")  # "I'm" and "Im" (ASR drops them) agree
_SEPARATORS: Final = re.compile(r"[\W_]+")
_SPACE_BY_HAN: Final = re.compile(f" (?=[{HAN_RANGES}])|(?<=[{HAN_RANGES}]) ")


def normalize_text(text: str) -> str:
    """Case-, width- and punctuation-folded text; Chinese without spaces, folded to simplified
    characters (OpenCC).

    ``"您好，請 稍等! Thank-you, I'm"`` → ``"您好请稍等thank you im"``.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = to_script(text, "simplified")
    text = _SEPARATORS.sub(" ", _APOSTROPHES.sub("", text)).strip()
    return _SPACE_BY_HAN.sub("", text)


def _is_latin_word_char(ch: str) -> bool:
    return ch.isalnum() and not HAN.match(ch)


def _contains(text: str, phrase: str) -> bool:
    """``phrase`` in ``text`` (both normalised), starting at a word when it starts with Latin."""
    at = text.find(phrase)
    while at >= 0:
        if at == 0 or not _is_latin_word_char(phrase[0]) or not _is_latin_word_char(text[at - 1]):
            return True
        at = text.find(phrase, at + 1)
    return False


def _one_by_one(text: str) -> Any:
    return list(text)  # pypinyin: characters without a reading, one token each


@lru_cache(maxsize=4096)
def syllables(text: str) -> tuple[str, ...]:
    """Normalised text as Mandarin syllables with tone numbers (pypinyin, with its phrase
    dictionary for the readings of polyphones); other characters one by one.
    ``syllables("核实") == syllables("何时") == ("he2", "shi2")``."""
    from pypinyin import Style, lazy_pinyin

    said = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors=_one_by_one)
    return tuple(said)


def _sounds_in(text: str, phrase: str) -> bool:
    """Whether ``phrase``'s syllables occur, in order and adjacent, in ``text``'s."""
    said, wanted = syllables(text), syllables(phrase)
    n = len(wanted)
    return any(said[i : i + n] == wanted for i in range(len(said) - n + 1))


def _match_score(rule: PhraseRule, phrase: str, text: str) -> float | None:
    if rule.match == "exact":
        return 100.0 if _contains(text, phrase) else None
    if rule.match == "phonetic":
        heard = _contains(text, phrase) or (HAN.search(phrase) and _sounds_in(text, phrase))
        return 100.0 if heard else None
    # partial_ratio aligns the shorter string inside the longer: a turn "you" would match
    # "thank you for calling" at 100, so a turn shorter than the phrase is compared whole.
    scorer = fuzz.partial_ratio if len(text) >= len(phrase) else fuzz.ratio
    score = scorer(phrase, text, score_cutoff=rule.threshold)
    return score if score and score >= rule.threshold else None


def _clip(text: str) -> str:
    return text if len(text) <= EVIDENCE_MAX_CHARS else text[: EVIDENCE_MAX_CHARS - 1] + "…"


def _turn_evidence(label: str, turn_text: str, phrase: str) -> str:
    text = " ".join(turn_text.split())
    at = text.casefold().find(phrase.casefold())
    if len(label) + 2 + len(text) > EVIDENCE_MAX_CHARS and at > 20:
        text = "…" + text[at - 20 :]  # keep the phrase in view in a long turn
    return _clip(f"{label}: {text}")


# ---------------------------------------------------------------------------------------------
# Scoring

_Turn = tuple[Transcript, str]  # a transcript and its normalised text
_Outcome = tuple[bool, str, int | None]  # rule held, evidence, evidence_ms


def _in_scope(turns: Sequence[_Turn], q: Condition, span: tuple[int, int]) -> list[_Turn]:
    # Mono recordings ("mixed") have no speaker labels, so their turns count for either role.
    roles = {"agent", "customer", "mixed"} if q.role == "any" else {q.role, "mixed"}
    lo, hi = q.window.bounds_ms(*span)
    whole = q.window.edge == "call"
    return [
        (t, n)
        for t, n in turns
        if t.channel in roles and (whole or (t.start_ms < hi and t.end_ms > lo))
    ]


def _phrase(rule: PhraseRule, q: Condition, scope: list[_Turn]) -> _Outcome:
    # item index -> (the alternative said, the first turn saying it, its score)
    found: dict[int, tuple[str, Transcript, float]] = {}
    wanted = [[(p, normalize_text(p)) for p in group] for group in rule.groups]
    for turn, text in scope:
        for i, group in enumerate(wanted):
            if i in found:
                continue
            for phrase, norm in group:
                if (score := _match_score(rule, norm, text)) is not None:
                    found[i] = (phrase, turn, score)
                    break
        if found and (rule.mode == "any_of" or len(found) == len(wanted)):
            break
    held = len(found) == len(wanted) if rule.mode == "all_of" else bool(found)
    where = f"({'all' if q.role == 'any' else q.role} turns, {q.window})"
    if not held:
        if rule.mode == "all_of" and found:
            missing = [repr(" / ".join(g)) for i, g in enumerate(rule.groups) if i not in found]
            return False, _clip(f"missing {', '.join(missing)} {where}"), None
        count = sum(len(g) for g in rule.groups)
        return False, _clip(f"none of {count} phrases found {where}"), None
    # any_of: the first phrase of the earliest turn; all_of: the phrase that completed the set.
    phrase, turn, score = (
        next(iter(found.values())) if rule.mode == "any_of" else list(found.values())[-1]
    )
    label = f'"{phrase}"' + (f" ~{score:.0f}" if rule.match == "fuzzy" else "")
    return True, _turn_evidence(label, turn.text, phrase), turn.start_ms


def _sentiment(
    rule: SentimentRule, q: Condition, scope: list[_Turn], span: tuple[int, int], m: CallMetrics
) -> _Outcome:
    at_ms: int | None = None
    if rule.source == "trajectory":
        value, label = m.sentiment_trajectory, "customer sentiment trajectory"
    else:
        lo, hi = q.window.bounds_ms(*span)
        scored = [t for t, _ in scope if t.sentiment is not None]
        weights = [max(1.0, min(t.end_ms, hi) - max(t.start_ms, lo)) for t in scored]
        value = (
            sum(w * cast(float, t.sentiment) for t, w in zip(scored, weights, strict=True))
            / sum(weights)
            if scored
            else None
        )
        label = f"{'overall' if q.role == 'any' else q.role} sentiment ({q.window})"
        if scored:  # point at the turn that pulls hardest against the limit that is set
            extreme = min if rule.min is not None else max
            at_ms = extreme(scored, key=lambda t: (cast(float, t.sentiment), t.start_ms)).start_ms
    if value is None:
        return True, f"no {label} to measure", None
    held = (rule.min is None or value >= rule.min) and (rule.max is None or value <= rule.max)
    limits = [
        f"{name} {v:+g}" for name, v in (("min", rule.min), ("max", rule.max)) if v is not None
    ]
    return held, f"{label} {value:+.2f} ({', '.join(limits)})", at_ms


def _silence(rule: SilenceRule, m: CallMetrics) -> _Outcome:
    held, parts = True, []
    if rule.max_longest_s is not None or rule.min_longest_s is not None:
        lo, hi = rule.min_longest_s, rule.max_longest_s
        held &= (lo is None or m.longest_non_talk_s >= lo) and (
            hi is None or m.longest_non_talk_s <= hi
        )
        limits = [f"{name} {v:g} s" for name, v in (("min", lo), ("max", hi)) if v is not None]
        parts.append(f"longest gap {m.longest_non_talk_s:.1f} s ({', '.join(limits)})")
    if rule.max_count is not None:
        held &= m.non_talk_count <= rule.max_count
        parts.append(f"{m.non_talk_count} gaps (max {rule.max_count})")
    return held, "; ".join(parts), None


def _interruption(rule: InterruptionRule, q: Condition, m: CallMetrics) -> _Outcome:
    by = {"agent": m.interruptions_by_agent, "customer": m.interruptions_by_customer}
    count = by[q.role] if q.role in by else sum(by.values())
    who = "both parties" if q.role == "any" else f"the {q.role}"
    return count <= rule.max_count, f"{count} interruptions by {who} (max {rule.max_count})", None


def _answer(q: Condition, turns: list[_Turn], span: tuple[int, int], m: CallMetrics) -> _Outcome:
    rule = q.rule
    if isinstance(rule, PhraseRule):
        return _phrase(rule, q, _in_scope(turns, q, span))
    if isinstance(rule, SentimentRule):
        return _sentiment(rule, q, _in_scope(turns, q, span), span, m)
    if isinstance(rule, SilenceRule):
        return _silence(rule, m)
    return _interruption(rule, q, m)


def _not_applicable(
    q: Question, turns: list[_Turn], span: tuple[int, int], m: CallMetrics
) -> str | None:
    """None when one of ``q.applies_if`` holds, else the evidence that none does."""
    misses = []
    for condition in q.applies_if:
        held, evidence, _ = _answer(condition, turns, span, m)
        if held != condition.negate:
            return None
        misses.append(("not: " if condition.negate else "") + evidence)
    return _clip("not applicable: " + "; ".join(misses))


def score_call(
    card: Scorecard, transcripts: Sequence[Transcript], metrics: CallMetrics
) -> ScorecardResult:
    """Answer every question of ``card`` for one call.

    Windows are relative to the call's speech: its first transcript's start to its last
    transcript's end; a turn is in a window when it overlaps it. Deterministic: the order of
    ``transcripts`` does not matter. Each answer carries ``weight`` points when it passed, and
    its evidence: the matched phrase with a snippet of the turn (``evidence_ms``: the turn's
    start) or the measured value. A question whose ``applies_if`` holds for none of its
    conditions is not applicable: ``passed`` None, 0 points of 0. ``normalized_score`` is
    score / potential (0 when nothing applies).
    """
    ordered = sorted(transcripts, key=lambda t: (t.start_ms, t.end_ms, t.channel, t.text))
    turns = [(t, normalize_text(t.text)) for t in ordered]
    span = (ordered[0].start_ms, max(t.end_ms for t in ordered)) if ordered else (0, 0)
    answers = []
    for q in card.questions:
        if q.applies_if and (skip := _not_applicable(q, turns, span, metrics)) is not None:
            answers.append(ScorecardAnswer(q.id, None, 0.0, 0.0, skip, None))
            continue
        asked = Condition(q.rule, q.role, q.window, q.negate)
        held, evidence, at_ms = _answer(asked, turns, span, metrics)
        passed = held != q.negate
        points = q.weight if passed else 0.0
        answers.append(ScorecardAnswer(q.id, passed, points, q.weight, evidence, at_ms))
    score = sum(a.points for a in answers)
    potential = sum(a.potential for a in answers)
    normalized = score / potential if potential > 0 else 0.0
    return ScorecardResult(card.name, score, potential, normalized, tuple(answers))


# ---------------------------------------------------------------------------------------------
# Loading

_CARD: Final = TypeAdapter(Scorecard)
_WHAT: Final = {Scorecard: "the scorecard", Question: "a question", Condition: "a condition"}


class ScorecardError(ValueError):
    """A scorecard that cannot be used; the message names the place and says what to fix."""


def _question_name(data: Any, index: int) -> str:
    """``'id'`` of the ``index``-th question of the file, or ``#n`` while it has none."""
    listed = data.get("questions") if isinstance(data, dict) else None
    raw = listed[index] if isinstance(listed, list) and index < len(listed) else None
    qid = raw.get("id") if isinstance(raw, dict) else None
    return repr(qid.strip()) if isinstance(qid, str) and qid.strip() else f"#{index + 1}"


def _error_message(error: ErrorDetails, data: Any, source: str) -> str:
    """One sentence for one schema error: the question (by id), the condition, the field."""
    where, model, field = source, cast(Any, Scorecard), ""
    loc = list(error["loc"])
    while loc and not field:
        part, after = loc.pop(0), loc[0] if loc else None
        if part == "questions" and isinstance(after, int):
            where, model = f"{source}, question {_question_name(data, after)}", Question
        elif part == "applies_if" and isinstance(after, int):
            where, model = f"{where}, applies_if #{after + 1}", Condition
        elif part == "rule" and isinstance(after, str) and after in _RULES:
            model = _RULES[after]  # the union's tag
        else:
            field = str(part)
            continue
        loc.pop(0)
    fields = model.__pydantic_fields__
    value, kind = error["input"], error["type"]
    if kind == "value_error":  # our validators' messages name the field themselves
        message = str(error["ctx"]["error"])
    elif kind == "missing":
        message = f"field {field!r} is missing"
    elif kind == "unexpected_keyword_argument":
        known = sorted(fields, key=lambda f: f != "kind")  # a rule's kind first
        message = f"unknown field {field!r}; use one of: {', '.join(known)}"
    elif kind == "union_tag_not_found":
        message = "field 'kind' is missing"
    elif kind == "union_tag_invalid":
        message = f"field 'kind' must be one of {', '.join(_RULES)}, got {value.get('kind')!r}"
    elif kind in ("dataclass_type", "model_attributes_type"):
        what = f"field {field!r}" if field else _WHAT[model]
        message = f"{what} must be a mapping of fields, got {type(value).__name__}"
    elif kind == "literal_error":
        options = re.findall(r"'([^']*)'", error["ctx"]["expected"])
        message = f"field {field!r} must be one of {', '.join(options)}, got {value!r}"
    else:  # a wrong type or a value out of range: what the field's description asks for
        want = fields[field].description if field in fields else None
        message = f"field {field!r} must be {want or error['msg'].lower()}, got {value!r}"
    return f"{where}: {message}."


def parse_scorecard(text: str, source: str = "scorecard") -> Scorecard:
    """A validated ``Scorecard`` from YAML text; ``source`` names it in error messages.

    Raises ``ScorecardError`` (a ``ValueError``) with one sentence naming the question and field:
    of several problems, the outermost (the file's own fields before a question's).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ScorecardError(f"{source} is not valid YAML{at}; fix its syntax.") from e
    try:
        return _CARD.validate_python(data)
    except ValidationError as e:
        errors = e.errors()
        locs = [error["loc"] for error in errors]
        # An error whose items failed too (e.g. "too short" once bad items are dropped) is
        # explained by them; of the rest, the outermost comes first.
        own = [x for x in errors if not any(o[: len(x["loc"])] == x["loc"] != o for o in locs)]
        first = min(own, key=lambda error: len(error["loc"]))
        raise ScorecardError(_error_message(first, data, source)) from e


def load_scorecard(path: str | Path) -> Scorecard:
    """A validated ``Scorecard`` from a YAML file (format: ``scorecards/default.yaml``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ScorecardError(
            f"Cannot read scorecard {path} ({e.strerror}); pass the path of a YAML scorecard."
        ) from e
    return parse_scorecard(text, source=str(path))


@lru_cache(maxsize=1)
def default_scorecard() -> Scorecard:
    """The packaged default scorecard (zh + en phrases), parsed once per process."""
    resource = resources.files("transforms.core") / "scorecards" / "default.yaml"
    return parse_scorecard(resource.read_text(encoding="utf-8"), source="default scorecard")
