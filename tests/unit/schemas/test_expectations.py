"""``schemas/expectations.py``: the tables' suites on small DataFrames."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from schemas.expectations import (
    SUITE_VERSION,
    ExpectationSpec,
    FrameValidator,
    SuiteError,
    flat_columns,
    flat_row,
    frame_of,
    suite_for,
    validate_frame,
)
from schemas.records import (
    CallRow,
    DeadLetter,
    QuarantinedRow,
    ScorecardAnswer,
    ScorecardAnswerRow,
    ScorecardResult,
    SentimentQuarters,
    Transcript,
)
from tests.records import T0, call_metrics, call_row

NULL: Any = None  # a null where the record type says there is none (what the checks catch)
QUARTERS = SentimentQuarters(0.1, -0.2, None, 0.4)

METRICS = call_metrics(
    non_talk_s=4.0,
    non_talk_count=2,
    longest_non_talk_s=3.0,
    keywords=("refund", "invoice"),
    customer_sentiment=-0.2,
    sentiment_quarters=QUARTERS,
    customer_sentiment_quarters=QUARTERS,
    sentiment_trajectory=0.3,
    zh_share=0.0,
    zh_en_share=0.0,
    pii_redactions=1,
)
CARD = ScorecardResult(
    "default", 1.0, 3.0, 1 / 3, (ScorecardAnswer("greeting", True, 1.0, 1.0, "hello", T0),)
)
CALL = call_row(metrics=METRICS, scorecard=CARD)
TRANSCRIPT = Transcript(
    call_id="c-0001",
    channel="agent",
    start_ms=T0,
    end_ms=T0 + 2_000,
    text="good morning",
    language="en",
    language_class="en",
    confidence=-0.3,
    model_id="fake",
    backend="faster-whisper",
    words=(),
    alternatives=(),
    speech_dbfs=-20.0,
    sentiment=0.5,
    pii_redactions=0,
)
LETTER = DeadLetter(
    stage="decode",
    reason="unknown_codec",
    error_type="validation",
    message="codec 'opus' is not supported",
    topic="audio",
    partition=0,
    offset=7,
    call_id="c-0001",
    event_time_ms=T0,
    payload_size_bytes=12,
)


@pytest.fixture(scope="module")
def validators() -> Iterator[dict[str, FrameValidator]]:
    """One GX context per table for the whole module (building one costs ~50 ms)."""
    yield {name: FrameValidator(name) for name in TABLES}


def failures(validators: dict[str, FrameValidator], table: str, rows: list[Any]) -> list[set[str]]:
    return [set(f) for f in validate_frame(table, frame_of(table, rows), validators[table])]


def with_metrics(**changes: Any) -> CallRow:
    return CALL._replace(metrics=METRICS._replace(**changes))


# --- the suites as data ---------------------------------------------------------------------


TABLES = ("calls", "transcripts", "dead_letters", "scorecard_answers", "quarantine")
ANSWER = ScorecardAnswerRow("c-0001", 1, T0, "default", "greeting", True, 1.0, 1.0, "hi", T0)
HELD = QuarantinedRow("calls", "c-0001.v1.final", ("end_not_before_start",), SUITE_VERSION,
                      '{"call_id": "c-0001"}', "c-0001", T0)  # fmt: skip


@pytest.mark.parametrize("table", TABLES)
def test_suite_ids_are_unique_metric_safe_and_name_real_columns(table: str) -> None:
    suite = suite_for(table)
    ids = [s.id for s in suite]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9_]+", i) for i in ids)
    columns = set(flat_columns(table))
    for spec in suite:
        named = [v for k, v in spec.kwargs.items() if k in ("column", "column_A", "column_B")]
        assert named and set(named) <= columns, spec
        if spec.condition is not None:
            assert spec.condition[0] in columns


def test_suite_version_and_unknown_table() -> None:
    assert SUITE_VERSION == "2"
    with pytest.raises(KeyError, match="no expectation suite for table 'nope'"):
        suite_for("nope")
    with pytest.raises(ValueError, match="must match"):
        ExpectationSpec("Bad-Id", "ExpectColumnValuesToNotBeNull", {"column": "x"})
    with pytest.raises(ValueError, match="operator"):
        ExpectationSpec("x", "ExpectColumnValuesToNotBeNull", {"column": "x"}, ("a", "~", 1))


def test_rows_flatten_to_dotted_scalar_columns_without_lists() -> None:
    columns = flat_columns("calls")
    assert "metrics.agent_talk_ratio" in columns
    assert "metrics.sentiment_quarters.q3" in columns
    assert "scorecard.normalized_score" in columns
    assert "metrics.keywords" not in columns and "scorecard.answers" not in columns
    flat = flat_row("calls", CALL)
    assert flat["metrics.customer_sentiment_quarters.q4"] == 0.4
    assert flat["scorecard.scorecard"] == "default"
    bare = flat_row("calls", CALL._replace(metrics=None, scorecard=None))
    assert list(bare) == columns
    assert bare["metrics.duration_s"] is None and bare["scorecard.score"] is None
    assert "words" not in flat_columns("transcripts")
    frame = frame_of("transcripts", [TRANSCRIPT, TRANSCRIPT])
    assert list(frame.columns) == flat_columns("transcripts") and len(frame) == 2


# --- calls ----------------------------------------------------------------------------------


def test_good_call_rows_pass(validators: dict[str, FrameValidator]) -> None:
    live = CALL._replace(version=0, is_final=False, close_reason="live")
    assert failures(validators, "calls", [CALL, live]) == [set(), set()]


def test_nulls_pass_where_the_column_is_nullable(validators: dict[str, FrameValidator]) -> None:
    no_asr = CALL._replace(metrics=None, scorecard=None)
    empty_quarters = SentimentQuarters(None, None, None, None)
    sparse = with_metrics(
        agent_talk_ratio=None,
        sentiment=None,
        agent_sentiment=None,
        customer_sentiment=None,
        sentiment_quarters=empty_quarters,
        customer_sentiment_quarters=empty_quarters,
        sentiment_trajectory=None,
        zh_share=None,
        en_share=None,
        zh_en_share=None,
        mean_confidence=None,
        min_confidence=None,
    )
    # one batch of nulls only: the metrics columns are all-None (object dtype)
    assert failures(validators, "calls", [no_asr]) == [set()]
    assert failures(validators, "calls", [no_asr, sparse, CALL]) == [set(), set(), set()]


BAD_CALLS: list[tuple[CallRow, str]] = [
    (CALL._replace(call_id=""), "call_id_format"),
    (CALL._replace(call_id="x" * 129), "call_id_format"),
    (CALL._replace(call_id="a\nb"), "call_id_format"),
    (CALL._replace(version=-1, is_final=False), "version_nonnegative"),
    (CALL._replace(version=0), "final_version_positive"),
    (CALL._replace(close_reason="hung_up"), "close_reason_known"),
    (CALL._replace(end_ms=T0 - 1), "end_not_before_start"),
    (CALL._replace(agent_audio_s=-0.1), "agent_audio_nonnegative"),
    (CALL._replace(customer_audio_s=-1.0), "customer_audio_nonnegative"),
    (CALL._replace(mixed_audio_s=-1.0), "mixed_audio_nonnegative"),
    (CALL._replace(chunk_count=0), "chunk_count_positive"),
    (CALL._replace(duplicate_chunks=-1), "duplicate_chunks_nonnegative"),
    (CALL._replace(missing_seq_count=-1), "missing_seq_count_nonnegative"),
    (with_metrics(agent_talk_ratio=1.01), "talk_ratio_range"),
    (with_metrics(agent_talk_ratio=-0.01), "talk_ratio_range"),
    (with_metrics(non_talk_s=-1.0), "non_talk_nonnegative"),
    (with_metrics(longest_non_talk_s=61.0), "longest_non_talk_within_duration"),
    (with_metrics(sentiment=1.5), "sentiment_range"),
    (with_metrics(agent_sentiment=-1.5), "agent_sentiment_range"),
    (with_metrics(customer_sentiment=2.0), "customer_sentiment_range"),
    (with_metrics(sentiment_quarters=QUARTERS._replace(q3=-3.0)), "sentiment_q3_range"),
    (
        with_metrics(customer_sentiment_quarters=QUARTERS._replace(q1=1.1)),
        "customer_sentiment_q1_range",
    ),
    (with_metrics(sentiment_trajectory=2.5), "sentiment_trajectory_range"),
    (with_metrics(zh_share=1.2), "zh_share_range"),
    (with_metrics(en_share=-0.2), "en_share_range"),
    (with_metrics(zh_en_share=1.5), "zh_en_share_range"),
    (with_metrics(mean_confidence=0.1), "mean_confidence_nonpositive"),
    (with_metrics(min_confidence=0.5), "min_confidence_nonpositive"),
    (CALL._replace(scorecard=CARD._replace(normalized_score=1.2)), "normalized_score_range"),
]


@pytest.fixture(scope="module")
def bad_call_failures(validators: dict[str, FrameValidator]) -> list[set[str]]:
    """Every bad row in one frame, between good ones: one GX run instead of one per row."""
    rows = [CALL, *(row for row, _ in BAD_CALLS), CALL]
    return failures(validators, "calls", rows)


@pytest.mark.parametrize(
    ("index", "expected"),
    [(i, expected) for i, (_, expected) in enumerate(BAD_CALLS)],
    ids=[f"{i}-{expected}" for i, (_, expected) in enumerate(BAD_CALLS)],
)
def test_each_bad_call_value_fails_its_expectation(
    bad_call_failures: list[set[str]], index: int, expected: str
) -> None:
    # failures land on the bad row only, and the good rows around them pass
    assert bad_call_failures[1 + index] == {expected}
    assert bad_call_failures[0] == bad_call_failures[-1] == set()


def test_a_row_can_fail_several_expectations(validators: dict[str, FrameValidator]) -> None:
    bad = CALL._replace(version=0, chunk_count=0, end_ms=T0 - 5)
    assert failures(validators, "calls", [bad]) == [
        {"final_version_positive", "chunk_count_positive", "end_not_before_start"}
    ]


def test_a_null_call_id_fails_not_null(validators: dict[str, FrameValidator]) -> None:
    bad = CALL._replace(call_id=NULL)
    assert failures(validators, "calls", [CALL, bad]) == [set(), {"call_id_not_null"}]


# --- transcripts ----------------------------------------------------------------------------


def test_good_transcripts_pass_with_nulls(validators: dict[str, FrameValidator]) -> None:
    silent = TRANSCRIPT._replace(
        channel="mixed", language_class="", speech_dbfs=None, sentiment=None
    )
    zh = TRANSCRIPT._replace(language_class="zh-en", channel="customer", confidence=0.0)
    assert failures(validators, "transcripts", [TRANSCRIPT, silent, zh]) == [set(), set(), set()]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (TRANSCRIPT._replace(call_id=NULL), "call_id_not_null"),
        (TRANSCRIPT._replace(call_id=""), "call_id_format"),
        (TRANSCRIPT._replace(channel="left"), "channel_known"),
        (TRANSCRIPT._replace(end_ms=T0 - 1), "end_not_before_start"),
        (TRANSCRIPT._replace(confidence=0.2), "confidence_nonpositive"),
        (TRANSCRIPT._replace(language_class="fr"), "language_class_known"),
        (TRANSCRIPT._replace(sentiment=-1.2), "sentiment_range"),
        (TRANSCRIPT._replace(pii_redactions=-1), "pii_redactions_nonnegative"),
    ],
)
def test_each_bad_transcript_value_fails_its_expectation(
    validators: dict[str, FrameValidator], row: Transcript, expected: str
) -> None:
    assert failures(validators, "transcripts", [row, TRANSCRIPT]) == [{expected}, set()]


# --- dead letters ---------------------------------------------------------------------------


def test_dead_letters(validators: dict[str, FrameValidator]) -> None:
    no_source = LETTER._replace(topic=None, partition=None, offset=None, event_time_ms=None)
    rows = [
        LETTER,
        no_source,
        LETTER._replace(stage=""),
        LETTER._replace(reason=NULL),
        LETTER._replace(message=NULL),
        LETTER._replace(message=""),  # an empty message is poor but not wrong
    ]
    assert failures(validators, "dead_letters", rows) == [
        set(),
        set(),
        {"stage_not_empty"},
        {"reason_not_null"},
        {"message_not_null"},
        set(),
    ]


# --- the runner -----------------------------------------------------------------------------


def test_a_failed_table_level_expectation_fails_every_row() -> None:
    specs = [
        ExpectationSpec("at_most_one_row", "ExpectTableRowCountToBeBetween", {"max_value": 1}),
        ExpectationSpec("version_nonnegative", "ExpectColumnValuesToBeBetween",
                        {"column": "version", "min_value": 0}),
    ]  # fmt: skip
    validator = FrameValidator("calls", specs)
    bad = CALL._replace(version=-1, is_final=False)
    assert validator.validate(frame_of("calls", [CALL, bad])) == [
        frozenset({"at_most_one_row"}),
        frozenset({"at_most_one_row", "version_nonnegative"}),
    ]
    assert validator.validate(frame_of("calls", [CALL])) == [frozenset()]
    assert validator.validate(frame_of("calls", [])) == []


def test_an_expectation_gx_cannot_run_raises_suite_error() -> None:
    specs = [ExpectationSpec("ghost", "ExpectColumnValuesToNotBeNull", {"column": "no_such"})]
    with pytest.raises(SuiteError, match="ghost"):
        FrameValidator("calls", specs).validate(frame_of("calls", [CALL]))


def test_a_frame_indexed_otherwise_maps_back_to_row_positions(
    validators: dict[str, FrameValidator],
) -> None:
    frame = frame_of("calls", [CALL, CALL._replace(chunk_count=0)])
    frame.index = [17, 3]
    assert validators["calls"].validate(frame) == [frozenset(), {"chunk_count_positive"}]


def test_validate_frame_checks_its_validator_and_builds_one_when_none() -> None:
    with pytest.raises(ValueError, match="validator is for 'calls'"):
        validate_frame(
            "transcripts", frame_of("transcripts", [TRANSCRIPT]), FrameValidator("calls")
        )
    assert validate_frame("dead_letters", frame_of("dead_letters", [LETTER])) == [frozenset()]


def test_validation_prints_no_progress_bars(
    validators: dict[str, FrameValidator], capfd: pytest.CaptureFixture[str]
) -> None:
    failures(validators, "calls", [CALL] * 3)
    err = capfd.readouterr().err
    assert "it/s" not in err and "Calculating Metrics" not in err


# --- scorecard answers and quarantine -------------------------------------------------------


def test_scorecard_answers(validators: dict[str, FrameValidator]) -> None:
    rows = [
        ANSWER,
        ANSWER._replace(passed=False, points=0.0),
        ANSWER._replace(passed=None, points=0.0, potential=0.0, evidence_ms=None),
        ANSWER._replace(passed=True, points=0.5),
        ANSWER._replace(passed=False, points=1.0),
        ANSWER._replace(passed=None, points=0.0, potential=1.0),
        ANSWER._replace(passed=False, points=0.0, potential=0.0),
        ANSWER._replace(points=2.0, potential=1.0),
        ANSWER._replace(version=0, question_id=""),
    ]
    assert failures(validators, "scorecard_answers", rows) == [
        set(),
        set(),
        set(),
        {"passed_earns_potential"},
        {"failed_earns_nothing"},
        {"not_applicable_has_no_potential"},
        {"positive_weight_when_asked"},
        {"passed_earns_potential", "points_within_potential"},
        {"version_positive", "question_id_not_empty"},
    ]


def test_quarantine(validators: dict[str, FrameValidator]) -> None:
    rows = [
        HELD,
        HELD._replace(table="quarantine"),
        HELD._replace(row_key=""),
        HELD._replace(suite_version="0"),
        HELD._replace(row_json='{"call_id": '),
    ]
    assert failures(validators, "quarantine", rows) == [
        set(),
        {"table_known"},
        {"row_key_not_empty"},
        {"suite_version_current"},
        {"row_json_parseable"},
    ]
