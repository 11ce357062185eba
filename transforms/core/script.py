"""Writing scripts in transcripts: which characters are Han, and the language class of an
utterance (zh / en / zh-en / other). One definition for the metrics, scorecards, text
analytics, ASR and the evaluation."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Final, cast

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


#: How Mandarin transcripts are written: OpenCC's conversion to simplified or traditional
#: characters, or the model's own output.
ZH_SCRIPTS: Final = ("simplified", "traditional", "as_is")
_OPENCC_CONFIGS: Final = {"simplified": "t2s", "traditional": "s2t"}


@lru_cache(maxsize=2)
def _opencc(config: str) -> Callable[[str], str]:
    import opencc

    for name in (config, f"{config}.json"):  # the PyPI builds disagree on the config name
        try:
            return cast(Callable[[str], str], opencc.OpenCC(name).convert)
        except Exception:  # noqa: BLE001, S112 - try the other spelling
            continue
    raise RuntimeError(f"OpenCC has no {config} conversion: reinstall opencc")


def to_script(text: str, script: str) -> str:
    """``text`` with its Han characters written in ``script`` (``ZH_SCRIPTS``; OpenCC).
    ``to_script("請稍等", "simplified") == "请稍等"``."""
    if script == "as_is" or not has_han(text):
        return text
    return _opencc(_OPENCC_CONFIGS[script])(text)
