"""Job options → ``JobConfig``: the streaming defaults that decide how the job spends its CPU."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.config import (
    STREAMING_VALIDATE_WINDOW_S,
    StreamingJobOptions,
    analyze_options,
    asr_options,
    start_position,
    time_ms,
    validate_live_window_s,
    validate_window_s,
)
from beam_jobs.services.models import install_embedded_whisper
from transforms.io.kafka_source import KafkaSourceConfig


def options(*argv: str) -> StreamingJobOptions:
    return PipelineOptions(list(argv)).view_as(StreamingJobOptions)


def test_live_call_rows_are_validated_once_per_live_interval_by_default() -> None:
    o = options()
    window = validate_window_s(o)
    assert window == STREAMING_VALIDATE_WINDOW_S
    assert validate_live_window_s(o, window) == o.live_interval_s == 10.0
    assert validate_live_window_s(options("--live_interval_s=30"), window) == 30.0
    # never shorter than the window of final rows; no live rows: the same window
    assert validate_live_window_s(options("--live_interval_s=0.5"), window) == window
    assert validate_live_window_s(options("--live_interval_s=0"), window) == window
    assert validate_live_window_s(options("--validate_live_window_s=4"), window) == 4.0


def test_bounded_runs_check_per_bundle_and_bad_windows_are_refused() -> None:
    bounded = options("--bounded")
    assert validate_window_s(bounded) == 0.0
    assert validate_live_window_s(bounded, 0.0) is None
    with pytest.raises(ValueError, match="--validate_live_window_s"):
        validate_live_window_s(options("--validate_live_window_s=-1"), 1.0)


def test_bounded_runs_decode_in_one_queue_and_streaming_ones_decide_per_machine() -> None:
    """A bounded run hands its ASR queues over one after another, so one queue on every thread
    decodes full batches; streaming leaves it to ``resolve_queues`` (0) unless told."""
    model = f"--asr={install_embedded_whisper()}"
    bounded = asr_options(options(model, "--bounded"), bounded=True)
    streaming = asr_options(options(model), bounded=False)
    assert bounded is not None and bounded.queues == 1
    assert streaming is not None and streaming.queues == 0
    told = asr_options(options(model, "--bounded", "--asr_queues=3"), bounded=True)
    assert told is not None and told.queues == 3


def test_damaged_numbers_are_redacted_from_9_digits_by_default() -> None:
    assert analyze_options(options()).redact_numbers_min_digits == 9
    assert analyze_options(options("--redact_numbers_min_digits=0")).redact_numbers_min_digits == 0
    assert not analyze_options(options("--redact_pii=off")).redact_pii
    with pytest.raises(ValueError, match="--redact_numbers_min_digits=-1"):
        analyze_options(options("--redact_numbers_min_digits=-1"))


def test_start_and_stop_times_are_iso_8601_in_utc_unless_they_carry_an_offset() -> None:
    assert start_position("earliest") == ("earliest", None)
    assert start_position("latest") == ("latest", None)
    assert start_position("2026-12-01T08:00Z") == ("earliest", 1_796_112_000_000)
    assert time_ms("2026-12-01T08:00", "--kafka_stop_at") == 1_796_112_000_000  # naive: UTC
    assert time_ms("2026-12-01T16:00+08:00", "--kafka_stop_at") == 1_796_112_000_000
    assert time_ms("2026-12-01", "--kafka_stop_at") == 1_796_083_200_000
    with pytest.raises(ValueError, match="--kafka_start_from must be earliest, latest or an ISO"):
        start_position("yesterday")
    with pytest.raises(ValueError, match="--kafka_stop_at must be an ISO 8601 time"):
        time_ms("12/01/2026", "--kafka_stop_at")


def test_a_stop_time_needs_a_bounded_read_after_the_start() -> None:
    source = {"bootstrap_servers": "k:9092", "topic": "t"}
    with pytest.raises(ValueError, match="needs a bounded read"):
        KafkaSourceConfig(**source, stop_at_ms=2_000)
    with pytest.raises(ValueError, match="must come after the start"):
        KafkaSourceConfig(**source, bounded=True, start_at_ms=2_000, stop_at_ms=2_000)
    KafkaSourceConfig(**source, bounded=True, start_at_ms=1_000, stop_at_ms=2_000)
