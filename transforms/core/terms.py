"""Domain-term correction of ASR output: the second half of ``--asr_domain_terms`` (the first
is the decoder's prompt). A span that sounds like a Mandarin term (the same syllables, tones
aside) or is spelled nearly like a Latin one is rewritten as the term.

Whisper base writes homophones for product names it has never seen: 畅享套餐 (chang xiang tao
can) comes out as 长相套餐, SmartHome Pro as "Smartphone Pro". Prompting with the terms helps a
model that already knows them and, measured on the evaluation corpus, makes Whisper base echo
terms that were not said; a correction against the term list fixes what was said but heard
as another word (``docs/asr.md``).

Matching is deliberately narrow so that ordinary words are never rewritten:

- Han terms: the span's characters must have the term's toneless syllables, each one among
  the character's readings (polyphones count with all of theirs: 长 is chang and zhang). For
  terms of three or more syllables the usual Mandarin near-mergers (zh/z, ch/c, sh/s, n/l,
  -ng/-n) count as the same sound, as in a pinyin input method's fuzzy mode.
- Latin terms: the same letters, case aside ("volte" → VoLTE); for terms of six letters or
  more, also a near spelling (rapidfuzz ratio ≥ 85 over the letters, spaces aside).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Final, NamedTuple

from transforms.core.script import HAN, HAN_RANGES

#: Near-mergers of Mandarin initials and finals (a pinyin input method's fuzzy sounds).
_FUZZY: Final = ((re.compile(r"^([zcs])h"), r"\1"), (re.compile(r"^l"), "n"),
                 (re.compile(r"([ei])ng$"), r"\1n"), (re.compile(r"ang$"), "an"))  # fmt: skip
_FUZZY_MIN_SYLLABLES: Final = 3
_LATIN_TOKEN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9+\-]*")
_LATIN_TERM: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9+\- ]*")
_HAN_TERM: Final = re.compile(f"[{HAN_RANGES}]+")
_NEAR_SPELLING_MIN_LETTERS: Final = 6
_NEAR_SPELLING_RATIO: Final = 85.0


class _Span(NamedTuple):
    start: int
    end: int
    term: str


def _fuzzy(syllable: str) -> str:
    for pattern, repl in _FUZZY:
        syllable = pattern.sub(repl, syllable)
    return syllable


@lru_cache(maxsize=8192)
def _readings(char: str) -> frozenset[str]:
    """A Han character's toneless readings (every reading of a polyphone)."""
    from pypinyin import Style, pinyin

    return frozenset(pinyin(char, style=Style.NORMAL, heteronym=True)[0])


@lru_cache(maxsize=1024)
def _term_syllables(term: str) -> tuple[str, ...]:
    """The term's toneless syllables, polyphones read as in the term (pypinyin's phrases)."""
    from pypinyin import Style, lazy_pinyin

    return tuple(lazy_pinyin(term, style=Style.NORMAL))


def _sounds_like(span: str, term: str) -> bool:
    wanted = _term_syllables(term)
    fuzzy = len(wanted) >= _FUZZY_MIN_SYLLABLES
    for char, syllable in zip(span, wanted, strict=True):
        readings = _readings(char)
        if syllable in readings:
            continue
        if not (fuzzy and _fuzzy(syllable) in {_fuzzy(r) for r in readings}):
            return False
    return True


def _han_spans(text: str, term: str) -> list[_Span]:
    n = len(term)
    return [
        _Span(i, i + n, term)
        for i in range(len(text) - n + 1)
        if all(HAN.match(c) for c in text[i : i + n]) and _sounds_like(text[i : i + n], term)
    ]


def _letters(text: str) -> str:
    return "".join(text.split()).casefold()


def _latin_spans(text: str, term: str) -> list[_Span]:
    from rapidfuzz import fuzz

    tokens = list(_LATIN_TOKEN.finditer(text))
    want = _letters(term)
    near = len(want) >= _NEAR_SPELLING_MIN_LETTERS
    k = len(term.split())
    out = []
    for size in sorted({max(1, k - 1), k, k + 1}):
        for i in range(len(tokens) - size + 1):
            window = tokens[i : i + size]
            if any(text[a.end() : b.start()].strip() for a, b in itertools.pairwise(window)):
                continue  # only tokens separated by spaces make one term
            start, end = window[0].start(), window[-1].end()
            got = _letters(text[start:end])
            if got == want or (near and fuzz.ratio(got, want) >= _NEAR_SPELLING_RATIO):
                out.append(_Span(start, end, term))
    return out


def correct_terms(text: str, terms: Sequence[str]) -> str:
    """``text`` with every span that sounds like (Han) or is spelled nearly like (Latin) one
    of ``terms`` written as the term; longer terms first, spans never overlap.
    ``correct_terms("我想办理长相套餐", ["畅享套餐"]) == "我想办理畅享套餐"``."""
    spans: list[_Span] = []
    for term in sorted(set(terms), key=len, reverse=True):
        if _HAN_TERM.fullmatch(term):
            found = _han_spans(text, term)
        elif _LATIN_TERM.fullmatch(term):
            found = _latin_spans(text, term)
        else:
            found = []
        for s in sorted(found, key=lambda s: s.start - s.end):  # the widest match first
            if all(s.end <= t.start or s.start >= t.end for t in spans):
                spans.append(s)
    out, last = [], 0
    for s in sorted(spans):
        out += [text[last : s.start], s.term]
        last = s.end
    out.append(text[last:])
    return "".join(out)
