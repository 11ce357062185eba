"""Record factories for tests: one plausible value per field, overridden where a test cares.

``call_metrics()`` is a quiet, polite 60 s English call; ``call_row()`` is its final row (no
metrics or scorecard unless given). Tests name the fields they depend on as overrides, so a
new record field is added here once, not in every test module.
"""

from __future__ import annotations

from typing import Any

from schemas.records import CallMetrics, CallRow, SentimentQuarters

T0 = 1_764_072_000_000  # 2025-11-25T12:00:00Z
NO_QUARTERS = SentimentQuarters(None, None, None, None)

_METRICS: dict[str, Any] = dict(
    duration_s=60.0,
    agent_talk_s=30.0,
    customer_talk_s=25.0,
    mixed_talk_s=0.0,
    agent_talk_ratio=0.55,
    non_talk_s=0.0,
    non_talk_count=0,
    longest_non_talk_s=0.0,
    overtalk_count=0,
    overtalk_ms=0,
    interruptions_by_agent=0,
    interruptions_by_customer=0,
    agent_words_per_min=150.0,
    customer_words_per_min=140.0,
    agent_chars_per_min=None,
    customer_chars_per_min=None,
    agent_loudness_dbfs=-20.0,
    customer_loudness_dbfs=-22.0,
    turn_count=10,
    utterance_count=10,
    keywords=(),
    sentiment=0.3,
    agent_sentiment=0.4,
    customer_sentiment=0.2,
    sentiment_quarters=NO_QUARTERS,
    customer_sentiment_quarters=NO_QUARTERS,
    sentiment_trajectory=None,
    zh_share=None,
    en_share=1.0,
    zh_en_share=None,
    mean_confidence=-0.2,
    min_confidence=-0.4,
    pii_redactions=0,
    transcripts_complete=True,
    transcript_failures=0,
)

_ROW: dict[str, Any] = dict(
    call_id="c-0001",
    version=1,
    is_final=True,
    close_reason="inactivity",
    start_ms=T0,
    end_ms=T0 + 60_000,
    agent_audio_s=30.0,
    customer_audio_s=28.0,
    mixed_audio_s=0.0,
    chunk_count=56,
    duplicate_chunks=1,
    missing_seq_count=0,
    missing_seqs="",
    tenant="acme",
    agent_id=None,
    queue="billing",
    language_hint=None,
    source_topic="audio",
    source_partition=2,
    first_offset=100,
    last_offset=160,
)


def _build(record: Any, base: dict[str, Any], overrides: dict[str, Any]) -> Any:
    unknown = set(overrides) - set(record._fields)
    assert not unknown, f"not {record.__name__} fields: {sorted(unknown)}"
    return record(**{**base, **overrides})


def call_metrics(**overrides: Any) -> CallMetrics:
    """A quiet, polite 60 s call's metrics; ``overrides`` replace fields."""
    return _build(CallMetrics, _METRICS, overrides)  # type: ignore[no-any-return]


def call_row(**overrides: Any) -> CallRow:
    """A final call row (``metrics`` and ``scorecard`` None unless given)."""
    return _build(CallRow, _ROW, overrides)  # type: ignore[no-any-return]
