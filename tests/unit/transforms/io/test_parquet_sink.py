"""``transforms/io/parquet_sink.py``: deterministic file names, idempotent atomic writes, acks."""

from __future__ import annotations

import hashlib
import time
import urllib.parse
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import CallRow, DeadLetter, OffsetAck, RowWithAck
from schemas.tables import CALLS, DEAD_LETTERS
from tests.records import T0, call_row
from transforms.io import durable
from transforms.io.outage import Outage
from transforms.io.parquet_sink import (
    WriteTable,
    call_file,
    dead_letter_ack,
    dead_letter_file,
    read_rows_file,
    resolve_write,
    safe_name,
    time_partition,
    write_rows_file,
)

LAST_MS_OF_DAY = 1_764_115_199_999  # 2025-11-25T23:59:59.999Z

ROW = call_row(
    end_ms=T0 + 6_000,
    agent_audio_s=3.2,
    customer_audio_s=2.4,
    missing_seq_count=2,
    missing_seqs="agent:3-4",
)

ACK = OffsetAck("audio", 2, ((100, 161),))

DECODE_LETTER = DeadLetter(
    stage="decode",
    reason="unknown_codec",
    error_type="validation",
    message="codec 'opus' is not one of ...",
    topic="audio",
    partition=1,
    offset=7,
    call_id="c-0001",
    event_time_ms=T0,
    payload_size_bytes=3200,
)

GAP_LETTER = DeadLetter(
    stage="aggregate",
    reason="seq_gap",
    error_type="validation",
    message="agent chunks never received: seq 3-4",
    topic="audio",
    partition=2,
    offset=None,
    call_id="c-0001",
    event_time_ms=T0,
    payload_size_bytes=None,
)


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- names -----------------------------------------------------------------------------------


def test_call_file_names() -> None:
    assert call_file(ROW) == "dt=2025-11-25/hour=12/c-0001.v1.final.parquet"
    live = ROW._replace(version=0, is_final=False, close_reason="live")
    assert call_file(live) == "dt=2025-11-25/hour=12/c-0001.v0.live.o160.parquet"


def test_call_file_is_a_function_of_the_row_key() -> None:
    # Same key, other values (a replay that saw the same chunks): same file.
    assert call_file(ROW._replace(chunk_count=99, end_ms=T0 + 1)) == call_file(ROW)
    # A new version or a live row at another offset: another file.
    assert call_file(ROW._replace(version=2)) != call_file(ROW)
    live = ROW._replace(version=0, is_final=False)
    assert call_file(live._replace(last_offset=161)) != call_file(live)
    assert call_file(live) != call_file(ROW._replace(version=0))


def test_time_partition_is_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # UTC+8: local time is already the 26th
    time.tzset()
    try:
        assert time_partition(LAST_MS_OF_DAY) == "dt=2025-11-25/hour=23"
        assert time_partition(LAST_MS_OF_DAY + 1) == "dt=2025-11-26/hour=00"
        assert call_file(ROW._replace(start_ms=LAST_MS_OF_DAY + 1)).startswith(
            "dt=2025-11-26/hour=00/"
        )
        assert time_partition(0) == "dt=1970-01-01/hour=00"
        assert time_partition(None) == "dt=unknown/hour=unknown"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("call_id", "name"),
    [
        ("c-0001_a", "c-0001_a"),
        ("a/b c", "a%2Fb%20c"),
        ("../etc", "..%2Fetc"),
        ("100%", "100%25"),
        ("通话-1", "%E9%80%9A%E8%AF%9D-1"),
    ],
)
def test_safe_name_quotes_and_reverses(call_id: str, name: str) -> None:
    assert safe_name(call_id) == name
    assert urllib.parse.unquote(name) == call_id
    assert "/" not in name


def test_safe_name_hashes_long_ids() -> None:
    at_limit = "x" * 120
    assert safe_name(at_limit) == at_limit
    assert safe_name(at_limit + "y") != at_limit + "y"
    long_a = "x" * 130 + "a"
    long_b = "x" * 130 + "b"
    digest = hashlib.sha1(long_a.encode()).hexdigest()[:16]
    assert safe_name(long_a) == "x" * 80 + "~" + digest
    assert len(safe_name(long_a)) == 97
    assert safe_name(long_a) != safe_name(long_b)
    wide = "通" * 50  # 50 characters, 450 after quoting
    assert safe_name(wide).startswith("%E9%80%9A" * 8)
    assert len(safe_name(wide)) == 97


def test_dead_letter_file_names() -> None:
    assert dead_letter_file(DECODE_LETTER) == (
        "dt=2025-11-25/hour=12/audio.p1.o7.decode.unknown_codec.parquet"
    )
    digest = hashlib.sha1(repr(tuple(GAP_LETTER)).encode()).hexdigest()[:16]
    assert dead_letter_file(GAP_LETTER) == (
        f"dt=2025-11-25/hour=12/aggregate.seq_gap.c-0001.{digest}.parquet"
    )
    assert dead_letter_file(GAP_LETTER) == dead_letter_file(GAP_LETTER._replace())
    other_gap = GAP_LETTER._replace(message="customer chunks never received: seq 1")
    assert dead_letter_file(other_gap) != dead_letter_file(GAP_LETTER)
    no_time = DECODE_LETTER._replace(event_time_ms=None)
    assert dead_letter_file(no_time).startswith("dt=unknown/hour=unknown/")


def test_dead_letter_ack() -> None:
    assert dead_letter_ack(DECODE_LETTER) == OffsetAck("audio", 1, ((7, 8),))
    too_late = DECODE_LETTER._replace(stage="aggregate", reason="too_late", offset=40)
    assert dead_letter_ack(too_late) == OffsetAck("audio", 1, ((40, 41),))
    duplicate = DECODE_LETTER._replace(stage="aggregate", reason="duplicate_seq")
    assert dead_letter_ack(duplicate) is None  # acknowledged with its call
    assert dead_letter_ack(GAP_LETTER) is None


# --- writes ----------------------------------------------------------------------------------


def test_write_then_read_back(tmp_path: Path) -> None:
    path = tmp_path / "calls" / call_file(ROW)
    write_rows_file(path, CALLS, [ROW])
    table = pq.read_table(path)
    assert table.schema.equals(CALLS.schema, check_metadata=True)
    assert [CallRow(**r) for r in table.to_pylist()] == [ROW]


def test_writing_the_same_row_twice_leaves_one_identical_file(tmp_path: Path) -> None:
    path = tmp_path / "calls" / call_file(ROW)
    write_rows_file(path, CALLS, [ROW])
    first = path.read_bytes()
    write_rows_file(tmp_path / "calls" / call_file(ROW), CALLS, [ROW])
    assert all_files(tmp_path) == ["calls/dt=2025-11-25/hour=12/c-0001.v1.final.parquet"]
    assert path.read_bytes() == first


def test_dead_letter_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "dead_letters" / dead_letter_file(GAP_LETTER)
    write_rows_file(path, DEAD_LETTERS, [GAP_LETTER])
    assert [DeadLetter(**r) for r in pq.read_table(path).to_pylist()] == [GAP_LETTER]


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    bad = ROW._replace(chunk_count="many")  # not an int64
    path = tmp_path / "calls" / call_file(bad)
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own conversion error
        write_rows_file(path, CALLS, [bad])
    assert all_files(tmp_path) == []


def test_a_full_disk_stalls_the_write_until_space_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No space: the write is retried (no temp file is left by a failed try) until it works."""
    tries: list[list[str]] = []
    real_write = pq.write_table

    def full_disk_twice(table: object, where: Path, **kwargs: object) -> None:
        tries.append([Path(p).name for p in all_files(tmp_path)])  # what the failed tries left
        if len(tries) <= 2:
            Path(where).write_bytes(b"PAR1 partial")
            raise OSError(28, "No space left on device")
        real_write(table, where, **kwargs)

    fast = Outage("test", durable.is_disk_fault, "cannot write", "writing again", "disk", 0.01)
    monkeypatch.setattr(durable, "_DISK", fast)
    monkeypatch.setattr("transforms.io.parquet_sink.pq.write_table", full_disk_twice)
    write_rows_file(tmp_path / "calls" / call_file(ROW), CALLS, [ROW])
    assert tries == [[], [], []]
    assert [Path(p).name for p in all_files(tmp_path)] == [Path(call_file(ROW)).name]
    assert read_rows_file(tmp_path / "calls" / call_file(ROW), CALLS) == [ROW]


def test_a_write_that_fails_otherwise_raises_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_write(table: object, where: Path, **kwargs: object) -> None:
        Path(where).write_bytes(b"PAR1 partial")
        raise ValueError("bad column")

    monkeypatch.setattr("transforms.io.parquet_sink.pq.write_table", failing_write)
    with pytest.raises(ValueError):
        write_rows_file(tmp_path / "calls" / call_file(ROW), CALLS, [ROW])
    assert all_files(tmp_path) == []
    assert durable.is_disk_fault(OSError(28, "No space left on device"))
    assert durable.is_disk_fault(OSError("IOError: No space left on device"))  # pyarrow's
    assert not durable.is_disk_fault(FileNotFoundError(2, "No such file or directory"))


def test_write_table_pipeline(tmp_path: Path) -> None:
    live = ROW._replace(version=0, is_final=False, close_reason="live", last_offset=150)
    ack = OffsetAck("audio", 2, ((100, 161),))
    p = beam.Pipeline(runner=FnApiRunner())  # in-process; never the download-prone default
    rows = p | "Rows" >> beam.Create([RowWithAck(ROW), RowWithAck(ROW, (ack,)), RowWithAck(live)])
    letters = p | "Letters" >> beam.Create([DECODE_LETTER, GAP_LETTER])
    call_acks = (rows | "Calls" >> WriteTable(CALLS, str(tmp_path))).acks
    letter_acks = (letters | "DeadLetters" >> WriteTable(DEAD_LETTERS, str(tmp_path))).acks
    assert_that(call_acks, equal_to([ack]), label="call_acks")
    assert_that(letter_acks, equal_to([OffsetAck("audio", 1, ((7, 8),))]), label="letter_acks")
    result = p.run()
    result.wait_until_finish()

    assert all_files(tmp_path) == [
        "calls/dt=2025-11-25/hour=12/c-0001.v0.live.o150.parquet",
        "calls/dt=2025-11-25/hour=12/c-0001.v1.final.parquet",
        f"dead_letters/{dead_letter_file(GAP_LETTER)}",
        "dead_letters/dt=2025-11-25/hour=12/audio.p1.o7.decode.unknown_codec.parquet",
    ]  # no temp files
    final = pq.read_table(tmp_path / "calls" / call_file(ROW)).to_pylist()
    assert [CallRow(**r) for r in final] == [ROW]
    query = result.metrics().query(MetricsFilter().with_namespace("callqa.sink"))
    counters = {c.key.metric.name: c.committed for c in query["counters"]}
    # The second, identical final row is a no-op (write-once): 2 call files, not 3.
    assert counters == {"calls_files_written": 2, "dead_letters_files_written": 2}


def test_a_different_final_row_never_replaces_the_published_one(tmp_path: Path) -> None:
    partial = ROW._replace(chunk_count=1, first_offset=500, last_offset=500)
    write_rows_file(tmp_path / "calls" / call_file(ROW), CALLS, [ROW])
    p = beam.Pipeline(runner=FnApiRunner())
    ack = OffsetAck("audio", 2, ((500, 501),))
    out = (
        p
        | beam.Create([RowWithAck(partial, (ack,)), RowWithAck(ROW)])
        | WriteTable(CALLS, str(tmp_path))
    )
    assert_that(out.acks, equal_to([ack]), label="acks")  # its offsets are handled
    assert_that(
        out.dead_letter | beam.Map(lambda d: (d.stage, d.reason, d.call_id, d.partition)),
        equal_to([("sink", "conflicting_final_row", ROW.call_id, ROW.source_partition)]),
        label="letters",
    )
    p.run().wait_until_finish()
    final = pq.read_table(tmp_path / "calls" / call_file(ROW)).to_pylist()
    assert [CallRow(**r) for r in final] == [ROW]  # the published row stands


def test_a_scored_final_row_writes_its_answers_first(tmp_path: Path) -> None:
    from schemas.records import ScorecardAnswer, ScorecardResult
    from schemas.tables import SCORECARD_ANSWERS
    from transforms.io.parquet_sink import answers_file, read_rows_file, scorecard_answer_rows

    card = ScorecardResult("default", 1.0, 3.0, 1 / 3, (
        ScorecardAnswer("greeting", True, 1.0, 1.0, "good morning", ROW.start_ms),
        ScorecardAnswer("no_forbidden_words", False, 0.0, 2.0, "stupid: this stupid system", None),
    ))  # fmt: skip
    scored = ROW._replace(scorecard=card)
    conflicting = scored._replace(chunk_count=ROW.chunk_count + 1, scorecard=card._replace(
        answers=card.answers[:1]))  # fmt: skip
    p = beam.Pipeline(runner=FnApiRunner())
    rows = p | beam.Create([RowWithAck(scored)])
    _ = rows | "Calls" >> WriteTable(CALLS, str(tmp_path))
    p.run().wait_until_finish()
    p = beam.Pipeline(runner=FnApiRunner())  # a replay with other content: the first stands
    out = p | beam.Create([RowWithAck(conflicting)]) | "Again" >> WriteTable(CALLS, str(tmp_path))
    assert_that(out.dead_letter | beam.Map(lambda d: d.reason), equal_to(["conflicting_final_row"]))
    p.run().wait_until_finish()

    path = tmp_path / SCORECARD_ANSWERS.name / answers_file(scored)
    assert answers_file(scored) == "dt=2025-11-25/hour=12/c-0001.v1.parquet"
    assert read_rows_file(path, SCORECARD_ANSWERS) == scorecard_answer_rows(scored)
    assert [(a.question_id, a.passed) for a in read_rows_file(path, SCORECARD_ANSWERS)] == [
        ("greeting", True),
        ("no_forbidden_words", False),
    ]
    assert scorecard_answer_rows(scored._replace(is_final=False)) == []
    # The same scored row again (the expiry re-emit, a replay) is identical, not a conflict.
    p = beam.Pipeline(runner=FnApiRunner())
    same = (
        p | beam.Create([RowWithAck(scored, (ACK,))]) | "Same" >> WriteTable(CALLS, str(tmp_path))
    )
    assert_that(same.dead_letter, equal_to([]), label="no_conflict")
    assert_that(same.acks, equal_to([ACK]), label="acks")
    p.run().wait_until_finish()
    assert read_rows_file(tmp_path / "calls" / call_file(scored), CALLS) == [scored]


def test_transcripts_are_write_once_and_the_stored_one_flows_on(tmp_path: Path) -> None:
    from schemas.records import Transcript
    from schemas.tables import TRANSCRIPTS
    from transforms.io.parquet_sink import read_rows_file, transcript_file

    first = Transcript("c-0001", "agent", ROW.start_ms, ROW.start_ms + 900, "hello", "en", "en",
                       -0.2, "m", "faster-whisper", (), ())  # fmt: skip
    replayed = first._replace(text="hallo", confidence=-0.4)  # a replay decoded differently
    for i, t in enumerate((first, replayed)):
        p = beam.Pipeline(runner=FnApiRunner())
        out = p | f"T{i}" >> beam.Create([t]) | WriteTable(TRANSCRIPTS, str(tmp_path), True)
        assert_that(out.written, equal_to([first]), label="written")
        assert_that(out.dead_letter, equal_to([]), label="letters")
        p.run().wait_until_finish()
    stored = read_rows_file(tmp_path / "transcripts" / transcript_file(first), TRANSCRIPTS)
    assert stored == [first]


def test_the_write_once_rule_both_sinks_share() -> None:
    from schemas.records import Transcript

    final = call_row(call_id="w-1")
    assert resolve_write("calls", final, None) == (True, final, None)
    assert resolve_write("calls", final, final) == (False, final, None)  # the same row again
    other = final._replace(chunk_count=final.chunk_count + 1)
    stays = resolve_write("calls", other, final)
    assert not stays.store and stays.flows_on is None
    assert stays.conflict is not None and stays.conflict.reason == "conflicting_final_row"
    live = final._replace(is_final=False, close_reason="live")
    assert resolve_write("calls", live._replace(chunk_count=9), live).conflict is None
    stored = Transcript("w-1", "agent", T0, T0 + 900, "stored", "en", "en", -0.1, "m", "b", (), ())
    replayed = stored._replace(text="decoded differently")
    assert resolve_write("transcripts", replayed, stored) == (False, stored, None)
