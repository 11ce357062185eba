"""``transforms/core/script.py``: Han characters and an utterance's language class."""

from __future__ import annotations

import pytest

from transforms.core.script import HAN, has_han, language_class, to_script


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("thank you for calling", "en", "en"),
        ("您好，请问有什么可以帮您", "zh", "zh"),
        ("我想查一下我的 account balance", "zh", "zh-en"),
        ("OK 好的", "en", "zh-en"),
        ("bonjour madame", "fr", "other"),
        ("", "en", ""),
        ("Thank you. See you.", "zh", "en"),  # an English turn under a forced zh
        ("gracias", "es", "other"),
    ],
)
def test_language_class(text: str, language: str, expected: str) -> None:
    assert language_class(text, language) == expected


def test_han_covers_simplified_traditional_and_extension_a_but_not_punctuation() -> None:
    assert HAN.findall("简體㐀豈，。!a") == ["简", "體", "㐀", "豈"]
    assert has_han("OK 好") and not has_han("OK，。") and not has_han("")


def test_to_script_writes_han_in_the_chosen_script_and_leaves_the_rest() -> None:
    assert to_script("請稍等，謝謝 OK", "simplified") == "请稍等，谢谢 OK"
    assert to_script("请稍等，谢谢", "traditional") == "請稍等，謝謝"
    assert to_script("請稍等", "as_is") == "請稍等"
    assert to_script("thank you", "traditional") == "thank you"
