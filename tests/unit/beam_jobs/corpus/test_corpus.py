"""The evaluation corpus's pure parts: what each voice says, the acoustic conditions, the
scripts' identity numbers, the casting, and the scoring normaliser."""

from __future__ import annotations

import numpy as np
import pytest

from beam_jobs.corpus import conditions
from beam_jobs.corpus.build import _cast
from beam_jobs.corpus.evaluate import Case, Row, score, table
from beam_jobs.corpus.scripts import CALLS, CARDS, IDS, MOBILES, SENTENCES
from beam_jobs.corpus.voices import ZH_VOICES, ZHTTS_VOICE, pieces, spoken_zh
from beam_jobs.report.asr_eval import error_counts, tokens
from schemas.records import Transcript, Utterance
from transforms.core.text_analytics import CN_ID, PHONE, is_card_number, is_cn_id, redact

RATE = 16000


def test_code_switched_text_splits_into_mandarin_and_english_pieces_in_order() -> None:
    assert pieces("我想 upgrade 我的 account。", "zh-en") == [
        ("zh", "我想"), ("en", "upgrade"), ("zh", "我的"), ("en", "account"),
    ]  # fmt: skip
    assert pieces("VoLTE 高清通话怎么开通？", "zh-en") == [
        ("en", "VoLTE"),
        ("zh", "高清通话怎么开通？"),
    ]
    assert pieces("It is 4 pm, OK?", "en") == [("en", "It is 4 pm, OK?")]


def test_long_digit_strings_are_read_digit_by_digit_and_amounts_as_numbers() -> None:
    assert spoken_zh("卡号是6222021234567894。") == "卡号是六二二二零二一二三四五六七八九四。"
    assert spoken_zh("每个月58元") == "每个月五十八元"


def _tone(freq_hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.mark.parametrize("snr_db", [10.0, 0.0])
def test_white_noise_and_babble_are_mixed_at_the_asked_snr(snr_db: float) -> None:
    speech = _tone(440)
    talkers = [_tone(f, 0.7) for f in (200, 300, 500, 700, 900, 1100, 1300)]
    for noisy in (
        conditions.white(speech, snr_db, seed=1),
        conditions.babble(speech, snr_db, talkers, seed=1),
    ):
        noise = noisy - speech
        measured = 10 * np.log10(np.mean(speech**2) / np.mean(noise**2))
        assert measured == pytest.approx(snr_db, abs=0.3)
    assert np.array_equal(conditions.white(speech, 10, 7), conditions.white(speech, 10, 7))


def test_telephone_channel_is_8_khz_and_keeps_only_the_voice_band() -> None:
    def level_db(freq_hz: float) -> float:
        out = conditions.telephone(_tone(freq_hz), RATE)
        assert len(out) == conditions.TELEPHONY_RATE_HZ
        mid = out[1000:-1000]
        return float(10 * np.log10(np.mean(mid**2) / np.mean(_tone(freq_hz) ** 2)))

    assert level_db(1000) > -1.0
    assert level_db(100) < -15.0
    assert level_db(3900) < -15.0


def test_the_scripts_identity_numbers_are_valid_and_redacted_in_digits_and_numerals() -> None:
    assert all(is_cn_id(i) for i in IDS) and all(is_card_number(c) for c in CARDS)
    assert redact(f"我的手机号码是{MOBILES[0]}。")[0] == f"我的手机号码是{PHONE}。"
    assert redact(f"身份证号码是{spoken_zh(IDS[0])}。")[0] == f"身份证号码是{CN_ID}。"
    said = [s.text for s in SENTENCES] + [ln.text for c in CALLS for ln in c.lines]
    for number in (*MOBILES, *IDS, *CARDS):
        assert any(number in t or spoken_zh(number) in t for t in said), number


def test_each_call_casts_two_different_voices() -> None:
    voices = (ZHTTS_VOICE, *ZH_VOICES)
    for i in range(len(CALLS)):
        cast = _cast(i, voices)
        assert cast["agent"].zh != cast["customer"].zh
        assert cast["agent"].en != cast["customer"].en


def test_scoring_folds_script_width_numerals_and_punctuation() -> None:
    assert tokens("請稍等，ＯＫ！") == tokens("请稍等 ok")
    assert tokens("手机号一三八零零") == tokens("手机号13800")
    assert error_counts(
        "我的手机号码是一三八一二三四五六七八。", "我的手機號碼是 138 1234 5678"
    ) == (0, 18)
    assert error_counts("我想 upgrade 我的 account", "我想 update 我的") == (2, 6)
    assert error_counts(
        "he was not an ill disposed young man", "He was not an ill-disposed man."
    ) == (1, 8)
    assert error_counts("", "") == (0, 0)
    assert error_counts("你好", "") == (2, 2)


def test_a_row_pools_its_utterances_and_a_missing_transcript_is_all_errors() -> None:
    def case(start_ms: int, reference: str) -> Case:
        utt = Utterance("zh-x/clean", "agent", start_ms, start_ms + 1000, 16000, b"", "zh")
        return Case("zh-x", "zh", "clean", "zh", "baker", reference, utt)

    said = Transcript("zh-x/clean", "agent", 0, 1000, "请您稍等", "zh", "zh", -0.1, "m", "b",
                      (), ())  # fmt: skip
    scored = score([case(0, "请您稍等。"), case(5000, "再见")], [said])
    assert (scored["errors"], scored["tokens"]) == (2, 6)
    assert [u["transcribed"] for u in scored["utterances"]] == [True, False]
    row = {**Row("clean zh", "zh", "clean")._asdict(), "unit": "CER", "rtf": 0.2, **scored}
    assert "clean zh" in table({"rows": [row]}).splitlines()[1]
