"""``transforms/core/calls.py``: the per-call fold shared by the streaming and batch jobs."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from schemas.records import AudioChunk, CallRow, ChunkFact, DeadLetter
from transforms.core.calls import (
    CallInfo,
    call_info,
    call_row,
    chunk_fact,
    fact_end_ms,
    format_ranges,
    missing_ranges,
    sequence_dead_letters,
    summarize,
)

T0 = 1_764_072_000_000
INFO = CallInfo("c-7", "acme", "a-1", "billing", "zh-en", "audio", 2)


def fact(
    channel: str,
    seq: int,
    offset: int,
    *,
    at_ms: int | None = None,
    samples: int = 1600,
    rate: int = 16000,
    eoc: bool = False,
) -> ChunkFact:
    """A 100 ms chunk (by default) of ``channel`` starting ``seq * 100`` ms after T0."""
    start = T0 + (seq * 100 if at_ms is None else at_ms)
    return ChunkFact(channel, seq, start, samples, rate, eoc, 2, offset)


def two_party_call() -> list[ChunkFact]:
    """agent 0..4 minus 2, with seq 1 repeated; customer 0..1; mixed none; marker last."""
    return [
        fact("agent", 0, 100),
        fact("customer", 0, 101),
        fact("agent", 1, 102),
        fact("customer", 1, 103, samples=800),  # 50 ms
        fact("agent", 1, 104),  # duplicate of agent seq 1
        fact("agent", 3, 105),
        fact("agent", 4, 106, samples=8000, rate=8000, eoc=True),  # 1 s at 8 kHz
    ]


def test_summary_of_a_two_party_call() -> None:
    s = summarize(two_party_call())
    assert s.start_ms == T0
    assert s.end_ms == T0 + 400 + 1000  # agent seq 4 starts at 400 ms and lasts 1 s
    assert s.audio_s == {"agent": 1.3, "customer": 0.15, "mixed": 0.0}
    assert s.chunk_count == 6
    assert s.duplicates == (fact("agent", 1, 104),)
    assert s.missing == {"agent": ((2, 2),)}
    assert (s.first_offset, s.last_offset) == (100, 106)
    assert s.ended is True


@pytest.mark.parametrize("seed", range(5))
def test_summary_is_order_independent(seed: int) -> None:
    facts = two_party_call()
    expected = summarize(facts)
    shuffled = facts[:]
    random.Random(seed).shuffle(shuffled)
    assert shuffled != facts  # the seed really reorders
    assert summarize(shuffled) == expected
    assert summarize(reversed(facts)) == expected


def test_duplicate_counted_once_and_the_later_offset_listed() -> None:
    # The repeat arrives first (lower offset wins, whatever the arrival order).
    s = summarize([fact("agent", 0, 9), fact("agent", 0, 5), fact("agent", 0, 7)])
    assert s.audio_s["agent"] == 0.1
    assert s.chunk_count == 1
    assert [d.offset for d in s.duplicates] == [7, 9]


def test_missing_seqs_per_channel() -> None:
    facts = [
        fact("agent", 1, 0),
        fact("agent", 5, 1),
        fact("customer", 0, 2),
        fact("customer", 3, 3),
        fact("mixed", 0, 4),
    ]
    s = summarize(facts)
    assert s.missing == {"agent": ((0, 0), (2, 4)), "customer": ((1, 2),)}  # mixed: absent


def test_not_ended_without_a_marker() -> None:
    assert summarize([fact("agent", 0, 0)]).ended is False


def test_summary_needs_a_fact() -> None:
    with pytest.raises(ValueError, match="at least one chunk"):
        summarize([])


def test_fact_end_ms_truncates_to_whole_ms() -> None:
    assert fact_end_ms(fact("agent", 0, 0, samples=2205, rate=22050)) == T0 + 100
    assert fact_end_ms(fact("agent", 0, 0, samples=1, rate=44100)) == T0  # 0.02 ms
    assert fact_end_ms(fact("agent", 0, 0, samples=0)) == T0  # empty end-of-call marker


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ([], ""),
        ([(5, 5)], "5"),
        ([(0, 1)], "0-1"),
        ([(1, 3), (7, 7)], "1-3,7"),
        ([(1, 1), (3, 3), (5, 5)], "1,3,5"),
        ([(2, 4), (10, 11), (20, 20)], "2-4,10-11,20"),
    ],
)
def test_format_ranges(values: list[tuple[int, int]], text: str) -> None:
    assert format_ranges(values) == text


@pytest.mark.parametrize(
    ("seen", "ranges"),
    [
        ([0, 1, 2], ()),
        ([2], ((0, 1),)),
        ([0, 5, 1, 9], ((2, 4), (6, 8))),
        ([999_999_999], ((0, 999_999_998),)),
    ],
)
def test_missing_ranges(seen: list[int], ranges: tuple[tuple[int, int], ...]) -> None:
    assert missing_ranges(seen) == ranges


def test_call_row_fields() -> None:
    row = call_row(INFO, summarize(two_party_call()), 2, True, "late_correction")
    assert row == CallRow(
        call_id="c-7",
        version=2,
        is_final=True,
        close_reason="late_correction",
        start_ms=T0,
        end_ms=T0 + 1400,
        agent_audio_s=1.3,
        customer_audio_s=0.15,
        mixed_audio_s=0.0,
        chunk_count=6,
        duplicate_chunks=1,
        missing_seq_count=1,
        missing_seqs="agent:2",
        tenant="acme",
        agent_id="a-1",
        queue="billing",
        language_hint="zh-en",
        source_topic="audio",
        source_partition=2,
        first_offset=100,
        last_offset=106,
    )


def test_call_row_lists_gaps_of_every_channel() -> None:
    facts = [fact("customer", 4, 0), fact("agent", 3, 1), fact("agent", 0, 2)]
    row = call_row(INFO, summarize(facts), 0, False, "live")
    assert (row.missing_seq_count, row.missing_seqs) == (6, "agent:1-2;customer:0-3")
    assert (row.version, row.is_final, row.close_reason) == (0, False, "live")


def test_sequence_dead_letters() -> None:
    letters = sequence_dead_letters(INFO, summarize(two_party_call()), "aggregate")
    assert letters == [
        DeadLetter(
            stage="aggregate",
            reason="duplicate_seq",
            error_type="validation",
            message="agent seq 1 was already received; the repeat is not counted",
            topic="audio",
            partition=2,
            offset=104,
            call_id="c-7",
            event_time_ms=T0 + 100,
            payload_size_bytes=None,
        ),
        DeadLetter(
            stage="aggregate",
            reason="seq_gap",
            error_type="validation",
            message="agent chunks never received: seq 2",
            topic="audio",
            partition=2,
            offset=None,
            call_id="c-7",
            event_time_ms=T0,
            payload_size_bytes=None,
        ),
    ]


def test_no_sequence_dead_letters_for_a_clean_call() -> None:
    facts = [fact("agent", 0, 0), fact("agent", 1, 1), fact("customer", 0, 2)]
    assert sequence_dead_letters(INFO, summarize(facts), "aggregate") == []


def test_chunk_fact_and_call_info_from_a_chunk() -> None:
    chunk = AudioChunk(
        call_id="c-9",
        channel="customer",
        seq=4,
        sample_rate_hz=8000,
        channels=1,
        codec="pcm_mulaw",
        event_time_ms=T0,
        event_time_source="capture_time",
        num_samples=800,
        end_of_call=True,
        pcm=b"\x00\x00" * 800,
        tenant=None,
        agent_id="a-3",
        queue=None,
        language_hint="en",
        topic="audio",
        partition=1,
        offset=77,
    )
    assert chunk_fact(chunk) == ChunkFact("customer", 4, T0, 800, 8000, True, 1, 77)
    assert call_info(chunk) == CallInfo("c-9", None, "a-3", None, "en", "audio", 1)


def test_a_huge_seq_is_summarized_in_bounded_memory() -> None:
    tracemalloc.start()
    try:
        row = call_row(INFO, summarize([fact("agent", 300_000, 0, at_ms=0)]), 1, True, "x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (row.missing_seq_count, row.missing_seqs) == (300_000, "agent:0-299999")
    assert peak < 4 * 1024 * 1024  # a range-based summary needs a few kB
