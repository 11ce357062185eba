"""Per-call QA metrics as pure functions over a call's transcripts: the streaming job, the batch
job and the tests share them (``call_metrics``).

Definitions (the README's "QA metrics" section says the same for consumers):

* **Speech spans** are the VAD's utterances shrunk by its padding (``speech_pad_ms`` on each
  side, what ``SegmentSpeech`` added), so talk, silence and overlap are measured on speech.
* **Talk time** of a role: the length of the union of its speech spans.
* **Non-talk time** (dead air): gaps of at least ``non_talk_min_s`` in which nobody speaks,
  between the first and the last speech of the call (ringing and hang-up are not dead air).
* **Overtalk**: stretches where agent and customer speak at once, counted when at least
  ``overtalk_min_ms`` long. The speaker whose span started later **interrupted** the other.
* **Talk speed**: Latin-script words per minute (English) and Han characters per minute
  (Chinese) over the talk time of the utterances holding them.
* **Loudness**: the energy mean of a role's utterance levels (dBFS), weighted by duration.
* **Turns**: runs of consecutive utterances (by start time) of one role.
* **Sentiment**: the duration-weighted mean of the turns' scores (-1..1); quarters by the
  turn's midpoint within the call; the trajectory is the customer's last quarter − first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from schemas.audio import ROLE_AGENT, ROLE_CUSTOMER, ROLE_MIXED
from schemas.records import CallMetrics, SentimentQuarters, Transcript
from transforms.core.script import HAN

_LATIN_WORD: Final = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")

Span = tuple[int, int]  # [start_ms, end_ms)


@dataclass(frozen=True)
class QaOptions:
    non_talk_min_s: float = 2.0  # a silence this long or longer is dead air
    overtalk_min_ms: int = 300  # shorter overlaps are turn-taking, not overtalk
    speech_pad_ms: int = 200  # SegmentSpeech's padding, trimmed off each utterance
    keywords_per_call: int = 10

    def __post_init__(self) -> None:
        if self.non_talk_min_s <= 0 or self.overtalk_min_ms < 0 or self.speech_pad_ms < 0:
            raise ValueError("non_talk_min_s must be > 0; overtalk_min_ms, speech_pad_ms >= 0")


def speech_span(t: Transcript, pad_ms: int) -> Span:
    """The utterance without the VAD's padding (never shorter than its middle point)."""
    start, end = t.start_ms + pad_ms, t.end_ms - pad_ms
    if end <= start:
        mid = (t.start_ms + t.end_ms) // 2
        return mid, mid
    return start, end


def union(spans: Iterable[Span]) -> list[Span]:
    """Sorted, merged, non-empty spans."""
    out: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def total_ms(spans: Iterable[Span]) -> int:
    return sum(end - start for start, end in spans)


def gaps(spans: Sequence[Span], min_ms: int) -> list[Span]:
    """Gaps of at least ``min_ms`` between merged spans (not before the first, after the last)."""
    return [(a[1], b[0]) for a, b in zip(spans, spans[1:], strict=False) if b[0] - a[1] >= min_ms]


def overlaps(a: Sequence[Span], b: Sequence[Span], min_ms: int) -> list[tuple[Span, str]]:
    """Stretches where a span of ``a`` and one of ``b`` overlap by ``min_ms`` or more, each with
    who started later (``"a"`` or ``"b"``): the interrupter."""
    out: list[tuple[Span, str]] = []
    for sa in a:
        for sb in b:
            start, end = max(sa[0], sb[0]), min(sa[1], sb[1])
            if end - start >= max(min_ms, 1):
                out.append(((start, end), "b" if sb[0] > sa[0] else "a"))
    return sorted(out)


def _weighted_mean(pairs: Iterable[tuple[float, float]]) -> float | None:
    """Mean of ``value`` weighted by ``weight`` over ``(value, weight)``; None when empty."""
    num = den = 0.0
    for value, weight in pairs:
        num += value * weight
        den += weight
    return None if den <= 0 else num / den


def _duration_ms(t: Transcript) -> float:
    return float(max(t.end_ms - t.start_ms, 1))


def mean_sentiment(turns: Iterable[Transcript]) -> float | None:
    """Duration-weighted sentiment of the turns that have a score."""
    m = _weighted_mean((t.sentiment, _duration_ms(t)) for t in turns if t.sentiment is not None)
    return None if m is None else round(m, 4)


def sentiment_quarters(
    turns: Sequence[Transcript], start_ms: int, end_ms: int
) -> SentimentQuarters:
    """Mean sentiment per quarter of ``[start_ms, end_ms)`` by each turn's midpoint."""
    length = max(end_ms - start_ms, 1)
    buckets: list[list[Transcript]] = [[], [], [], []]
    for t in turns:
        mid = (t.start_ms + t.end_ms) / 2
        buckets[min(3, max(0, int(4 * (mid - start_ms) / length)))].append(t)
    q1, q2, q3, q4 = (mean_sentiment(b) for b in buckets)
    return SentimentQuarters(q1, q2, q3, q4)


def _per_minute(count: int, talk_ms: int) -> float | None:
    return None if count == 0 or talk_ms <= 0 else round(count / (talk_ms / 60_000), 2)


def talk_speed(turns: Sequence[Transcript], pad_ms: int) -> tuple[float | None, float | None]:
    """(English words per minute, Chinese characters per minute) of one role's turns."""
    words = chars = words_ms = chars_ms = 0
    for t in turns:
        start, end = speech_span(t, pad_ms)
        n_words, n_chars = len(_LATIN_WORD.findall(t.text)), len(HAN.findall(t.text))
        if n_words and n_chars:  # code-switched: split the time by share of tokens
            share = n_words / (n_words + n_chars)
            words_ms += int((end - start) * share)
            chars_ms += int((end - start) * (1 - share))
        elif n_words:
            words_ms += end - start
        elif n_chars:
            chars_ms += end - start
        words += n_words
        chars += n_chars
    return _per_minute(words, words_ms), _per_minute(chars, chars_ms)


def loudness_dbfs(turns: Iterable[Transcript]) -> float | None:
    """Energy mean of the turns' levels, weighted by duration."""
    power = _weighted_mean(
        (10 ** (t.speech_dbfs / 10), _duration_ms(t)) for t in turns if t.speech_dbfs is not None
    )
    return None if power is None or power <= 0 else round(10 * math.log10(power), 2)


def turn_count(transcripts: Sequence[Transcript]) -> int:
    roles = [t.channel for t in sorted(transcripts, key=lambda t: (t.start_ms, t.channel))]
    return sum(1 for i, role in enumerate(roles) if i == 0 or role != roles[i - 1])


def _share(transcripts: Sequence[Transcript], cls: str) -> float | None:
    if not transcripts:
        return None
    return round(sum(t.language_class == cls for t in transcripts) / len(transcripts), 4)


def call_metrics(
    transcripts: Sequence[Transcript],
    start_ms: int,
    end_ms: int,
    opts: QaOptions,
    expected_utterances: int | None = None,
    transcript_failures: int = 0,
) -> CallMetrics:
    """The QA metrics of one call from its (already redacted and scored) transcripts.

    ``start_ms``/``end_ms`` bound the call's audio. ``expected_utterances``: how many utterances
    segmentation announced (None: unknown, so transcripts count as complete). Deterministic:
    the input order does not matter.
    """
    ts = sorted(transcripts, key=lambda t: (t.start_ms, t.channel, t.end_ms))
    by_role = {r: [t for t in ts if t.channel == r] for r in (ROLE_AGENT, ROLE_CUSTOMER)}
    spans = {
        r: union(speech_span(t, opts.speech_pad_ms) for t in ts if t.channel == r)
        for r in (ROLE_AGENT, ROLE_CUSTOMER, ROLE_MIXED)
    }
    everyone = union(s for role_spans in spans.values() for s in role_spans)
    silences = gaps(everyone, int(opts.non_talk_min_s * 1000))
    overtalk = overlaps(spans[ROLE_AGENT], spans[ROLE_CUSTOMER], opts.overtalk_min_ms)
    agent_s, customer_s = (total_ms(spans[r]) / 1000 for r in (ROLE_AGENT, ROLE_CUSTOMER))
    agent_wpm, agent_cpm = talk_speed(by_role[ROLE_AGENT], opts.speech_pad_ms)
    customer_wpm, customer_cpm = talk_speed(by_role[ROLE_CUSTOMER], opts.speech_pad_ms)
    customer_q = sentiment_quarters(by_role[ROLE_CUSTOMER], start_ms, end_ms)
    confidences = [t.confidence for t in ts]

    from transforms.core.text_analytics import top_keywords

    return CallMetrics(
        duration_s=round((end_ms - start_ms) / 1000, 3),
        agent_talk_s=round(agent_s, 3),
        customer_talk_s=round(customer_s, 3),
        mixed_talk_s=round(total_ms(spans[ROLE_MIXED]) / 1000, 3),
        agent_talk_ratio=round(agent_s / (agent_s + customer_s), 4)
        if agent_s + customer_s > 0
        else None,
        non_talk_s=round(total_ms(silences) / 1000, 3),
        non_talk_count=len(silences),
        longest_non_talk_s=round(max((b - a for a, b in silences), default=0) / 1000, 3),
        overtalk_count=len(overtalk),
        overtalk_ms=sum(end - start for (start, end), _ in overtalk),
        interruptions_by_agent=sum(who == "a" for _, who in overtalk),
        interruptions_by_customer=sum(who == "b" for _, who in overtalk),
        agent_words_per_min=agent_wpm,
        customer_words_per_min=customer_wpm,
        agent_chars_per_min=agent_cpm,
        customer_chars_per_min=customer_cpm,
        agent_loudness_dbfs=loudness_dbfs(by_role[ROLE_AGENT]),
        customer_loudness_dbfs=loudness_dbfs(by_role[ROLE_CUSTOMER]),
        turn_count=turn_count(ts),
        utterance_count=len(ts),
        keywords=top_keywords([t.text for t in ts], opts.keywords_per_call),
        sentiment=mean_sentiment(ts),
        agent_sentiment=mean_sentiment(by_role[ROLE_AGENT]),
        customer_sentiment=mean_sentiment(by_role[ROLE_CUSTOMER]),
        sentiment_quarters=sentiment_quarters(ts, start_ms, end_ms),
        customer_sentiment_quarters=customer_q,
        sentiment_trajectory=None
        if customer_q.q1 is None or customer_q.q4 is None
        else round(customer_q.q4 - customer_q.q1, 4),
        zh_share=_share(ts, "zh"),
        en_share=_share(ts, "en"),
        zh_en_share=_share(ts, "zh-en"),
        mean_confidence=round(sum(confidences) / len(confidences), 4) if confidences else None,
        min_confidence=round(min(confidences), 4) if confidences else None,
        pii_redactions=sum(t.pii_redactions for t in ts),
        transcripts_complete=expected_utterances is None
        or len(ts) + transcript_failures >= expected_utterances,
        transcript_failures=transcript_failures,
        agent_sentiment_quarters=sentiment_quarters(by_role[ROLE_AGENT], start_ms, end_ms),
    )
