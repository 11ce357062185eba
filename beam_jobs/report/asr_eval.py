"""Scoring transcripts against a script: WER (English words), CER (Chinese characters) and
MER (mixed error rate for code-switched text: Han characters and Latin words as tokens).

Normalisation before scoring, as the Open ASR Leaderboard does: English text goes through
Whisper's English normaliser (numbers to digits, contractions expanded, punctuation dropped);
Chinese is folded from traditional to simplified characters (Whisper sometimes writes
traditional) and scored per character.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Final

from transforms.core.script import HAN_RANGES, has_han

_TOKENS: Final = re.compile(f"[{HAN_RANGES}]|[a-z0-9']+")
UNITS: Final = {"en": "WER", "zh": "CER", "zh-en": "MER"}


@lru_cache(maxsize=1)
def _english() -> Any:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})


@lru_cache(maxsize=1)
def _t2s() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


def tokens(text: str) -> list[str]:
    """Han characters one by one, Latin words whole; punctuation and case dropped."""
    text = _t2s().convert(text) if has_han(text) else _english()(text)
    return _TOKENS.findall(text.lower())


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)]


def error_rate(reference: str, hypothesis: str) -> float:
    """Token error rate: WER for English, CER for Chinese, MER for both mixed."""
    ref = tokens(reference)
    return edit_distance(ref, tokens(hypothesis)) / max(1, len(ref))


def error_counts(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference tokens), to pool rates over several utterances or calls."""
    ref = tokens(reference)
    return edit_distance(ref, tokens(hypothesis)), len(ref)
