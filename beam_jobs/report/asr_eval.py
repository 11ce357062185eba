"""Scoring transcripts against a script: WER (English words), CER (Chinese characters) and
MER (mixed error rate for code-switched text: Han characters and Latin words as tokens).

Both sides are normalised the same way before scoring, by kept libraries:
- full- and half-width forms folded (Unicode NFKC);
- Chinese: traditional folded to simplified (OpenCC ``t2s``: Whisper sometimes writes
  traditional) and Chinese numerals to digits (cn2an, so "一三八" and "138" agree); each Han
  character and each digit is a token;
- English: Whisper's English normaliser (numbers to digits, contractions expanded);
- punctuation and case dropped. The edit distance is jiwer's.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any, Final

from transforms.core.script import HAN_RANGES, has_han, to_script

_TOKENS: Final = re.compile(f"[{HAN_RANGES}]|[a-z']+|[0-9]+")
_HAN_TOKENS: Final = re.compile(f"[{HAN_RANGES}]|[a-z']+|[0-9]")
UNITS: Final = {"en": "WER", "zh": "CER", "zh-en": "MER"}


@lru_cache(maxsize=1)
def _english() -> Any:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})


def _chinese(text: str) -> str:
    import cn2an

    return str(cn2an.transform(to_script(text, "simplified"), "cn2an"))


def tokens(text: str) -> list[str]:
    """Han characters and digits one by one in Chinese text, Latin words whole; width,
    script, numerals, punctuation and case normalised."""
    text = unicodedata.normalize("NFKC", text)
    if has_han(text):
        return _HAN_TOKENS.findall(_chinese(text).lower())
    return _TOKENS.findall(_english()(text).lower())


def error_counts(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference tokens): substitutions + deletions + insertions, to pool rates
    over several utterances or calls."""
    import jiwer

    ref, hyp = tokens(reference), tokens(hypothesis)
    if not ref:
        return len(hyp), 0
    if not hyp:
        return len(ref), len(ref)
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return out.substitutions + out.deletions + out.insertions, len(ref)


def error_rate(reference: str, hypothesis: str) -> float:
    """Token error rate: WER for English, CER for Chinese, MER for both mixed."""
    errors, n = error_counts(reference, hypothesis)
    return errors / max(1, n)
