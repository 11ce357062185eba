"""Writing scripts in transcripts: which characters are Han, and the language class of an
utterance (zh / en / zh-en / other). One definition for the metrics, scorecards, text
analytics, ASR and the evaluation."""

from __future__ import annotations

import re
from typing import Final

#: CJK Unified Ideographs, Extension A and the compatibility ideographs: the characters a
#: Mandarin transcript is written in (simplified or traditional), as ranges for a regex class.
HAN_RANGES: Final = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
#: One Han character.
HAN: Final = re.compile(f"[{HAN_RANGES}]")
#: A Latin word of two letters or more (one letter is an initial or noise, not English).
_LATIN_WORD: Final = re.compile(r"[A-Za-z]{2,}")


def has_han(text: str) -> bool:
    return HAN.search(text) is not None


def language_class(text: str, language: str) -> str:
    """zh / en / zh-en (code-switched: Han and Latin words in one utterance) / other.

    From the text's scripts first (a Chinese utterance with English product names is zh-en
    whatever the model called it), the model's language code second: Latin words are English
    when the model was told or found zh/en, another language's otherwise."""
    han = has_han(text)
    latin = bool(_LATIN_WORD.search(text))
    if han and latin:
        return "zh-en"
    if han:
        return "zh"
    if not text.strip():
        return ""
    # Latin words under a forced zh (the code-switched calls' English turns) are English.
    if latin and language in ("en", "zh", "yue", ""):
        return "en"
    return "other"
