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
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, cast

import yaml
from rapidfuzz import fuzz

from schemas.records import CallMetrics, ScorecardAnswer, ScorecardResult, Transcript
from transforms.core.script import HAN, HAN_RANGES

Role = Literal["agent", "customer", "any"]
ROLES: Final = ("agent", "customer", "any")
EVIDENCE_MAX_CHARS: Final = 120  # fits one table cell in the report
# rapidfuzz partial_ratio is 0..100; 85 lets a short phrase survive one ASR slip ("i under stand")
# while two-character Chinese phrases still need both characters (one of two scores 50).
DEFAULT_FUZZY_THRESHOLD: Final = 85.0


@dataclass(frozen=True)
class Window:
    """The part of the call a question looks at: the whole call, or its first/last stretch
    given in seconds (``length_s``) or in percent of the call (``length_pct``)."""

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


@dataclass(frozen=True)
class PhraseRule:
    """Holds when any (``any_of``) or every (``all_of``) phrase is said in a turn in scope.

    An item of ``phrases`` is a phrase or a tuple of alternatives ("please hold" or "one
    moment"): with ``all_of`` every item must be said (each by any of its alternatives), not
    necessarily in one turn; with ``any_of`` any alternative of any item will do.

    ``exact``: substring of the normalised turn (``normalize_text``); a phrase starting with a
    Latin letter must start at a word ("resolved" is not found in "unresolved", "idiot" is
    found in "idiots"). ``fuzzy``: rapidfuzz ``partial_ratio >= threshold`` on normalised text.
    """

    phrases: tuple[str | tuple[str, ...], ...]
    match: Literal["exact", "fuzzy"] = "exact"
    mode: Literal["any_of", "all_of"] = "any_of"
    threshold: float = DEFAULT_FUZZY_THRESHOLD

    @property
    def groups(self) -> tuple[tuple[str, ...], ...]:
        """Each item as its alternatives (a plain phrase: one alternative)."""
        return tuple((p,) if isinstance(p, str) else p for p in self.phrases)


@dataclass(frozen=True)
class SilenceRule:
    """Holds when the call's longest gap and/or its number of gaps stay within the limits
    (``min_longest_s``: "there was a gap of at least N s", e.g. to make a hold question apply).
    """

    max_longest_s: float | None = None
    max_count: int | None = None
    min_longest_s: float | None = None


@dataclass(frozen=True)
class InterruptionRule:
    """Holds when the role's interruptions (``any``: both parties') are at most ``max_count``."""

    max_count: int


@dataclass(frozen=True)
class SentimentRule:
    """Holds when a sentiment is within ``[min, max]`` (either may be open).

    ``source="turns"``: the role's duration-weighted sentiment over its scored turns in the
    window (each turn weighted by its overlap with the window), -1..1. ``"trajectory"``: the
    customer's ``CallMetrics.sentiment_trajectory`` (last quarter - first), -2..2. No sentiment
    to measure counts as holding: a call without analysis is not marked down.
    """

    min: float | None = None
    max: float | None = None
    source: Literal["turns", "trajectory"] = "turns"


Rule = PhraseRule | SilenceRule | InterruptionRule | SentimentRule


@dataclass(frozen=True)
class Condition:
    """A rule with the role and window it looks at: when a question applies (``applies_if``)."""

    rule: Rule
    role: Role = "any"
    window: Window = Window()
    negate: bool = False


@dataclass(frozen=True)
class Question:
    """One scorecard question; worth ``weight`` points when its rule holds (after ``negate``).

    ``applies_if``: the question is asked only of calls where at least one of these conditions
    holds (empty: every call). Otherwise its answer is "not applicable": ``passed`` None, no
    points and no potential, so a call without a hold is not marked down on hold etiquette.
    """

    id: str
    text: str
    weight: float
    rule: Rule
    role: Role = "any"
    window: Window = Window()
    negate: bool = False
    applies_if: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Scorecard:
    name: str
    questions: tuple[Question, ...]


# ---------------------------------------------------------------------------------------------
# Matching text

_APOSTROPHES: Final = re.compile("['\u2018\u2019`]")  # "I'm" and "Im" (ASR drops them) agree
_SEPARATORS: Final = re.compile(r"[\W_]+")
_SPACE_BY_HAN: Final = re.compile(f" (?=[{HAN_RANGES}])|(?<=[{HAN_RANGES}]) ")


@lru_cache(maxsize=1)
def _t2s() -> Callable[[str], str] | None:
    """OpenCC's traditional→simplified converter, or None when opencc is not installed."""
    try:
        import opencc
    except ImportError:
        return None
    for config in ("t2s", "t2s.json"):  # the PyPI builds disagree on the config name
        try:
            return cast(Callable[[str], str], opencc.OpenCC(config).convert)
        except Exception:  # noqa: BLE001 - an unusable build just means no folding
            continue
    return None


def normalize_text(text: str) -> str:
    """Case-, width- and punctuation-folded text; Chinese without spaces, folded to simplified
    characters when opencc is installed.

    ``"您好，請 稍等! Thank-you, I'm"`` → ``"您好请稍等thank you im"``.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    if HAN.search(text) and (t2s := _t2s()) is not None:
        text = t2s(text)
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


def _match_score(rule: PhraseRule, phrase: str, text: str) -> float | None:
    if rule.match == "exact":
        return 100.0 if _contains(text, phrase) else None
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

_WINDOW_RE: Final = re.compile(r"(?:whole\s+)?call|(first|last)\s+(\d+(?:\.\d+)?)\s*(s|%)")
_QUESTION_KEYS: Final = ("id", "text", "weight", "role", "window", "negate", "rule", "applies_if")
_CONDITION_KEYS: Final = ("role", "window", "negate")  # beside the rule's own fields
_RULE_KEYS: Final = {
    "phrase": ("kind", "phrases", "match", "mode", "threshold"),
    "silence": ("kind", "max_longest_s", "max_count", "min_longest_s"),
    "interruption": ("kind", "max_count"),
    "sentiment": ("kind", "min", "max", "source"),
}


class ScorecardError(ValueError):
    """A scorecard that cannot be used; the message names the place and says what to fix."""


def _fail(where: str, message: str) -> NoReturn:
    raise ScorecardError(f"{where}: {message}.")


def _fields(value: object, where: str, what: str, allowed: Sequence[str] | None) -> dict[str, Any]:
    """``value`` as a mapping whose keys are all in ``allowed`` (None: any keys)."""
    if not isinstance(value, dict):
        _fail(where, f"{what} must be a mapping of fields, got {type(value).__name__}")
    for key in value:
        if allowed is not None and key not in allowed:
            _fail(where, f"unknown field {str(key)!r}; use one of: {', '.join(allowed)}")
    return value


def _number(d: dict[str, Any], key: str, where: str, want: str, ok: Callable[[Any], bool]) -> Any:
    """``d[key]`` when it is a finite number (not a bool) that ``ok`` accepts, None if absent."""
    if key not in d:
        return None
    value = d[key]
    is_num = isinstance(value, int | float) and not isinstance(value, bool)
    if not (is_num and math.isfinite(value) and ok(value)):
        _fail(where, f"field {key!r} must be {want}, got {value!r}")
    return value


def _required(value: Any, key: str, where: str) -> Any:
    if value is None:
        _fail(where, f"field {key!r} is missing")
    return value


def _choice(d: dict[str, Any], key: str, where: str, options: Sequence[str], default: str) -> Any:
    value = d.get(key, default)
    if value not in options:
        _fail(where, f"field {key!r} must be one of {', '.join(options)}, got {value!r}")
    return value


def _text(d: dict[str, Any], key: str, where: str) -> str:
    value = _required(d.get(key), key, where)
    if not isinstance(value, str) or not value.strip():
        _fail(where, f"field {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _window(d: dict[str, Any], where: str) -> Window:
    value = d.get("window", "call")
    m = _WINDOW_RE.fullmatch(value.strip().lower()) if isinstance(value, str) else None
    length = float(m.group(2)) if m and m.group(2) else None
    if m is None or length == 0 or (m.group(3) == "%" and length is not None and length > 100):
        _fail(
            where,
            "field 'window' must be 'call', 'first|last N s' or 'first|last N %' "
            f"(N > 0, at most 100 for %), got {value!r}",
        )
    if length is None:
        return Window()
    edge = cast(Literal["first", "last"], m.group(1))
    return Window(edge, length_s=length) if m.group(3) == "s" else Window(edge, length_pct=length)


def _phrase_item(p: object, where: str) -> str | tuple[str, ...]:
    """A phrase, or a non-empty list of alternative phrases."""
    for alt in p if isinstance(p, list) and p else [p]:
        if not isinstance(alt, str) or not normalize_text(alt):
            _fail(
                where,
                f"field 'phrases' has {alt!r}, which is not a phrase with letters or digits "
                "(quote words YAML reads as booleans or numbers, e.g. 'no'; a list item "
                "must be a non-empty list of such phrases)",
            )
    return tuple(a.strip() for a in p) if isinstance(p, list) else cast(str, p).strip()


def _phrase_rule(r: dict[str, Any], where: str) -> PhraseRule:
    phrases = _required(r.get("phrases"), "phrases", where)
    if not isinstance(phrases, list) or not phrases:
        _fail(where, f"field 'phrases' must be a non-empty list of strings, got {phrases!r}")
    items = tuple(_phrase_item(p, where) for p in phrases)
    match = _choice(r, "match", where, ("exact", "fuzzy"), "exact")
    if "threshold" in r and match != "fuzzy":
        _fail(where, "field 'threshold' applies only to 'match: fuzzy'; remove it or set match")
    threshold = _number(r, "threshold", where, "a number in (0, 100]", lambda v: 0 < v <= 100)
    mode = _choice(r, "mode", where, ("any_of", "all_of"), "any_of")
    threshold = DEFAULT_FUZZY_THRESHOLD if threshold is None else float(threshold)
    return PhraseRule(items, match, mode, threshold)


def _count(v: Any) -> bool:
    return isinstance(v, int) and v >= 0


def _rule(q: dict[str, Any], where: str) -> Rule:
    raw = _required(q.get("rule"), "rule", where)
    fields = _fields(raw, where, "field 'rule'", None)
    _required(fields.get("kind"), "kind", where)
    kind = _choice(fields, "kind", where, tuple(_RULE_KEYS), "")
    r = _fields(raw, where, "field 'rule'", _RULE_KEYS[kind])
    if kind in ("silence", "interruption") and "window" in q:
        _fail(where, f"field 'window' does not apply to {kind} rules (they use the whole call)")
    if kind == "phrase":
        return _phrase_rule(r, where)
    if kind == "interruption":
        count = _number(r, "max_count", where, "an integer >= 0", _count)
        return InterruptionRule(_required(count, "max_count", where))
    if kind == "silence":
        if "role" in q:
            _fail(where, "field 'role' does not apply to silence rules; remove it")
        longest = _number(r, "max_longest_s", where, "a number >= 0", lambda v: v >= 0)
        shortest = _number(r, "min_longest_s", where, "a number >= 0", lambda v: v >= 0)
        count = _number(r, "max_count", where, "an integer >= 0", _count)
        if longest is None and count is None and shortest is None:
            _fail(where, "set 'max_longest_s', 'min_longest_s' and/or 'max_count' in the rule")
        if longest is not None and shortest is not None and shortest > longest:
            _fail(
                where, f"'min_longest_s' ({shortest}) must not exceed 'max_longest_s' ({longest})"
            )
        return SilenceRule(
            None if longest is None else float(longest),
            count,
            None if shortest is None else float(shortest),
        )
    source = _choice(r, "source", where, ("turns", "trajectory"), "turns")
    bound = 2 if source == "trajectory" else 1  # a trajectory is a difference of two means
    want = f"a number from -{bound} to {bound}"
    lo = _number(r, "min", where, want, lambda v: -bound <= v <= bound)
    hi = _number(r, "max", where, want, lambda v: -bound <= v <= bound)
    if lo is None and hi is None:
        _fail(where, "set 'min', 'max' or both in the sentiment rule")
    if lo is not None and hi is not None and lo > hi:
        _fail(where, f"field 'min' ({lo}) must not exceed field 'max' ({hi})")
    if source == "trajectory" and (q.get("role") != "customer" or "window" in q):
        _fail(
            where,
            "'source: trajectory' is the customer's whole call: set 'role: customer' and "
            "remove 'window'",
        )
    return SentimentRule(
        None if lo is None else float(lo), None if hi is None else float(hi), source
    )


def _question(raw: object, source: str, index: int) -> Question:
    q = _fields(raw, f"{source}, question #{index}", "a question", None)
    qid = _text(q, "id", f"{source}, question #{index}")
    where = f"{source}, question {qid!r}"
    _fields(q, where, "a question", _QUESTION_KEYS)
    text = _text(q, "text", where)
    weight = _number(q, "weight", where, "a number greater than 0", lambda v: v > 0)
    weight = float(_required(weight, "weight", where))
    role = _choice(q, "role", where, ROLES, "any")
    negate = _negate(q, where)
    window, rule = _window(q, where), _rule(q, where)
    return Question(qid, text, weight, rule, role, window, negate, _applies_if(q, where))


def _negate(d: dict[str, Any], where: str) -> bool:
    negate = d.get("negate", False)
    if not isinstance(negate, bool):
        _fail(where, f"field 'negate' must be true or false, got {negate!r}")
    return negate


def _applies_if(q: dict[str, Any], where: str) -> tuple[Condition, ...]:
    """``applies_if``: one condition or a list of them, each a rule's fields (``kind``, ...)
    with optional ``role``, ``window`` and ``negate``, as in a question."""
    raw = q.get("applies_if")
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        _fail(where, "field 'applies_if' must be a condition or a non-empty list of conditions")
    conditions = []
    for i, item in enumerate(items, 1):
        at = f"{where}, applies_if #{i}"
        fields = _fields(item, at, "a condition", None)
        own = {k: v for k, v in fields.items() if k in _CONDITION_KEYS}
        rule = {k: v for k, v in fields.items() if k not in _CONDITION_KEYS}
        negate = _negate(own, at)
        parsed = _rule({**own, "rule": rule}, at)
        role = _choice(own, "role", at, ROLES, "any")
        conditions.append(Condition(parsed, role, _window(own, at), negate))
    return tuple(conditions)


def parse_scorecard(text: str, source: str = "scorecard") -> Scorecard:
    """A validated ``Scorecard`` from YAML text; ``source`` names it in error messages.

    Raises ``ScorecardError`` (a ``ValueError``) with one sentence naming the question and field.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ScorecardError(f"{source} is not valid YAML{at}; fix its syntax.") from e
    top = _fields(data, source, "the scorecard", ("name", "questions"))
    name = _text(top, "name", source)
    raw_questions = _required(top.get("questions"), "questions", source)
    if not isinstance(raw_questions, list) or not raw_questions:
        _fail(source, "field 'questions' must be a non-empty list of questions")
    questions: list[Question] = []
    for i, raw in enumerate(raw_questions, 1):
        question = _question(raw, source, i)
        if any(question.id == other.id for other in questions):
            _fail(f"{source}, question {question.id!r}", "this id is used twice; make ids unique")
        questions.append(question)
    return Scorecard(name, tuple(questions))


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
