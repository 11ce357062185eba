"""GOLDEN: the warehouse schemas. A change here is a contract change: bump TABLE_VERSION and
tell the consumers, then update this file."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pytest

from schemas.records import CallRow, DeadLetter
from schemas.tables import CALLS, DEAD_LETTERS, TABLE_VERSION, TABLES, arrow_schema

CALLS_COLUMNS = [
    ("call_id", "string", False),
    ("version", "int64", False),
    ("is_final", "bool", False),
    ("close_reason", "string", False),
    ("start_ms", "int64", False),
    ("end_ms", "int64", False),
    ("agent_audio_s", "double", False),
    ("customer_audio_s", "double", False),
    ("mixed_audio_s", "double", False),
    ("chunk_count", "int64", False),
    ("duplicate_chunks", "int64", False),
    ("missing_seq_count", "int64", False),
    ("missing_seqs", "string", False),
    ("tenant", "string", True),
    ("agent_id", "string", True),
    ("queue", "string", True),
    ("language_hint", "string", True),
    ("source_topic", "string", False),
    ("source_partition", "int64", False),
    ("first_offset", "int64", False),
    ("last_offset", "int64", False),
    ("metrics", "struct", True),
    ("scorecard", "struct", True),
]

_QUARTERS = "struct<q1: double, q2: double, q3: double, q4: double> not null"
METRICS_FIELDS = [
    ("duration_s", "double not null"),
    ("agent_talk_s", "double not null"),
    ("customer_talk_s", "double not null"),
    ("mixed_talk_s", "double not null"),
    ("agent_talk_ratio", "double"),
    ("non_talk_s", "double not null"),
    ("non_talk_count", "int64 not null"),
    ("longest_non_talk_s", "double not null"),
    ("overtalk_count", "int64 not null"),
    ("overtalk_ms", "int64 not null"),
    ("interruptions_by_agent", "int64 not null"),
    ("interruptions_by_customer", "int64 not null"),
    ("agent_words_per_min", "double"),
    ("customer_words_per_min", "double"),
    ("agent_chars_per_min", "double"),
    ("customer_chars_per_min", "double"),
    ("agent_loudness_dbfs", "double"),
    ("customer_loudness_dbfs", "double"),
    ("turn_count", "int64 not null"),
    ("utterance_count", "int64 not null"),
    ("keywords", "list<element: string not null> not null"),
    ("sentiment", "double"),
    ("agent_sentiment", "double"),
    ("customer_sentiment", "double"),
    ("sentiment_quarters", _QUARTERS),
    ("customer_sentiment_quarters", _QUARTERS),
    ("sentiment_trajectory", "double"),
    ("zh_share", "double"),
    ("en_share", "double"),
    ("zh_en_share", "double"),
    ("mean_confidence", "double"),
    ("min_confidence", "double"),
    ("pii_redactions", "int64 not null"),
    ("transcripts_complete", "bool not null"),
    ("transcript_failures", "int64 not null"),
    ("agent_sentiment_quarters", _QUARTERS),
]
SCORECARD_TYPE = (
    "struct<scorecard: string not null, score: double not null, potential: double not null, "
    "normalized_score: double not null, answers: list<element: struct<question_id: string "
    "not null, passed: bool, points: double not null, potential: double not null, "
    "evidence: string not null, evidence_ms: int64> not null> not null>"
)

DEAD_LETTERS_COLUMNS = [
    ("stage", "string", False),
    ("reason", "string", False),
    ("error_type", "string", False),
    ("message", "string", False),
    ("topic", "string", True),
    ("partition", "int64", True),
    ("offset", "int64", True),
    ("call_id", "string", True),
    ("event_time_ms", "int64", True),
    ("payload_size_bytes", "int64", True),
]


def columns(schema: pa.Schema) -> list[tuple[str, str, bool]]:
    return [
        (f.name, "struct" if pa.types.is_struct(f.type) else str(f.type), f.nullable)
        for f in schema
    ]


def test_calls_schema_is_pinned() -> None:
    assert columns(CALLS.schema) == CALLS_COLUMNS
    metrics = CALLS.schema.field("metrics").type
    assert [
        (f.name, str(f.type) + ("" if f.nullable else " not null")) for f in metrics
    ] == METRICS_FIELDS
    assert str(CALLS.schema.field("scorecard").type) == SCORECARD_TYPE
    assert CALLS.schema.metadata == {b"callqa.table": b"calls", b"callqa.version": b"4"}
    assert (CALLS.name, CALLS.record_type) == ("calls", CallRow)


def test_dead_letters_schema_is_pinned() -> None:
    assert columns(DEAD_LETTERS.schema) == DEAD_LETTERS_COLUMNS
    assert DEAD_LETTERS.schema.metadata == {
        b"callqa.table": b"dead_letters",
        b"callqa.version": b"4",
    }
    assert (DEAD_LETTERS.name, DEAD_LETTERS.record_type) == ("dead_letters", DeadLetter)


def test_table_version_and_registry() -> None:
    assert TABLE_VERSION == "4"
    assert [t.name for t in TABLES] == [
        "calls",
        "dead_letters",
        "transcripts",
        "scorecard_answers",
        "quarantine",
    ]


def test_scorecard_answers_schema_golden() -> None:
    from schemas.tables import SCORECARD_ANSWERS

    assert columns(SCORECARD_ANSWERS.schema) == [
        ("call_id", "string", False),
        ("version", "int64", False),
        ("call_start_ms", "int64", False),
        ("scorecard", "string", False),
        ("question_id", "string", False),
        ("passed", "bool", True),
        ("points", "double", False),
        ("potential", "double", False),
        ("evidence", "string", False),
        ("evidence_ms", "int64", True),
    ]


def test_transcripts_schema_golden() -> None:
    from schemas.tables import TRANSCRIPTS

    assert [(f.name, str(f.type), f.nullable) for f in TRANSCRIPTS.schema] == [
        ("call_id", "string", False),
        ("channel", "string", False),
        ("start_ms", "int64", False),
        ("end_ms", "int64", False),
        ("text", "string", False),
        ("language", "string", False),
        ("language_class", "string", False),
        ("confidence", "double", False),
        ("model_id", "string", False),
        ("backend", "string", False),
        (
            "words",
            "list<element: struct<text: string not null, start_ms: int64 not null, "
            "end_ms: int64 not null, probability: double not null> not null>",
            False,
        ),
        ("alternatives", "list<element: string not null>", False),
        ("speech_dbfs", "double", True),
        ("sentiment", "double", True),
        ("pii_redactions", "int64", False),
    ]


def test_nested_transcript_round_trips_through_parquet(tmp_path: Path) -> None:
    from schemas.records import Transcript, Word
    from schemas.tables import TRANSCRIPTS
    from transforms.io.parquet_sink import read_rows_file, write_rows_file

    t = Transcript(
        "c1", "agent", 1000, 2500, "hello 你好", "zh", "zh-en", -0.2, "m", "transformers",
        (Word("hello", 1000, 1400, 0.9), Word("你好", 1500, 2400, 0.8)),
        ("hello 你号",),
    )  # fmt: skip
    empty = t._replace(start_ms=3000, words=(), alternatives=())
    path = tmp_path / "t.parquet"
    write_rows_file(path, TRANSCRIPTS, [t, empty])
    assert read_rows_file(path, TRANSCRIPTS) == [t, empty]


def test_schema_follows_the_record_fields() -> None:
    # Derived, never typed twice: the columns are the record's fields, in order.
    assert CALLS.schema.names == list(CallRow._fields)
    assert DEAD_LETTERS.schema.names == list(DeadLetter._fields)


def test_unmappable_fields_are_refused() -> None:
    class TwoTypes(NamedTuple):
        x: int | str

    class Listy(NamedTuple):
        x: list[int]

    with pytest.raises(TypeError, match="only Optional"):
        arrow_schema(TwoTypes, "t")
    with pytest.raises(TypeError, match="no Arrow type"):
        arrow_schema(Listy, "t")
