"""Domain-term correction: homophones of Han terms and near spellings of Latin ones become the
term; ordinary words, and terms that were not said, are left alone."""

from __future__ import annotations

import pytest

from transforms.core.terms import correct_terms

TERMS = ("FlexiData", "SmartHome Pro", "CloudPay", "VoLTE", "eSIM", "IPTV", "畅享套餐", "亲情号",
         "携号转网", "副卡", "天翼云盘", "全家享套餐", "流量日包", "HomeGuard")  # fmt: skip


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        # Whisper base on the evaluation corpus, tones aside
        ("我想颁理,长相套餐,每个月有多少流量。", "我想颁理,畅享套餐,每个月有多少流量。"),
        ("我想把我妈的号码设成亲请号", "我想把我妈的号码设成亲情号"),
        ("天一云盘的会员怎么退订", "天翼云盘的会员怎么退订"),
        ("我要办理附卡", "我要办理副卡"),
        # three syllables or more: near-merged initials and finals (xie hao zhuan wang)
        ("办理鞋号转完需要什么", "办理携号转网需要什么"),
        # Latin terms: case, and near spellings of longer ones, spaces aside
        ("volte 高清通话", "VoLTE 高清通话"),
        ("我家的 Smartphone Pro 如优气", "我家的 SmartHome Pro 如优气"),
        ("smart home pro", "SmartHome Pro"),
        ("在 Cloud Pay 里面", "在 CloudPay 里面"),
        ("开通 ESIM 服务", "开通 eSIM 服务"),
    ],
)
def test_what_sounds_or_is_spelled_like_a_term_becomes_the_term(heard: str, meant: str) -> None:
    assert correct_terms(heard, TERMS) == meant


@pytest.mark.parametrize(
    "text",
    [
        "这是我的手机号码，请您稍等",
        "我的SIM卡坏了",  # eSIM is short: only its own letters, any case
        "我想付款",  # fu kuan is not fu ka
        "Smartphone",  # one word of a two-word term's letters is too far from it
        "请问还有其他问题吗？",
        "",
    ],
)
def test_ordinary_words_stay(text: str) -> None:
    assert correct_terms(text, TERMS) == text


def test_no_terms_no_change_and_longer_terms_win() -> None:
    assert correct_terms("长相套餐", ()) == "长相套餐"
    # 全家享套餐 and a hypothetical 家享 both match: the longer term takes the span
    assert correct_terms("全家想套餐", ("家享", "全家享套餐")) == "全家享套餐"
