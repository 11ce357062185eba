"""Per-call logic as plain functions: the streaming job, the batch job and the tests share them.

A call's state is the list of ``ChunkFact`` seen so far (no audio). ``summarize`` turns it into
a ``CallSummary`` deterministically, whatever order the facts arrived in, so a replay of the
same records always yields the same row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from schemas.audio import ROLE_AGENT, ROLE_CUSTOMER, ROLE_MIXED, ROLES
from schemas.records import AudioChunk, CallRow, ChunkFact, DeadLetter, dead_letter


class CallInfo(NamedTuple):
    """Call attributes taken from its first chunk (metadata headers and source)."""

    call_id: str
    tenant: str | None
    agent_id: str | None
    queue: str | None
    language_hint: str | None
    topic: str
    partition: int


class CallSummary(NamedTuple):
    start_ms: int
    end_ms: int
    audio_s: dict[str, float]  # per channel role, distinct chunks only
    chunk_count: int
    duplicates: tuple[ChunkFact, ...]  # repeated (channel, seq): the later offsets
    missing: dict[str, tuple[tuple[int, int], ...]]  # per channel, inclusive ranges of seqs
    # missing below the channel's highest seq (ranges: one bogus seq=999999999 costs nothing)
    first_offset: int
    last_offset: int
    ended: bool  # an end-of-call marker was seen


def chunk_fact(chunk: AudioChunk) -> ChunkFact:
    return ChunkFact(
        channel=chunk.channel,
        seq=chunk.seq,
        event_time_ms=chunk.event_time_ms,
        num_samples=chunk.num_samples,
        sample_rate_hz=chunk.sample_rate_hz,
        end_of_call=chunk.end_of_call,
        partition=chunk.partition,
        offset=chunk.offset,
    )


def call_info(chunk: AudioChunk) -> CallInfo:
    return CallInfo(
        chunk.call_id,
        chunk.tenant,
        chunk.agent_id,
        chunk.queue,
        chunk.language_hint,
        chunk.topic,
        chunk.partition,
    )


def fact_end_ms(fact: ChunkFact) -> int:
    """Event time just after the chunk's last sample."""
    return fact.event_time_ms + (1000 * fact.num_samples) // fact.sample_rate_hz


def summarize(facts: Iterable[ChunkFact]) -> CallSummary:
    """Fold a call's chunk facts (any order) into its summary. Needs at least one fact."""
    ordered = sorted(facts, key=lambda f: f.offset)
    if not ordered:
        raise ValueError("a call summary needs at least one chunk")
    seen: dict[tuple[str, int], ChunkFact] = {}
    duplicates: list[ChunkFact] = []
    for fact in ordered:
        key = (fact.channel, fact.seq)
        if key in seen:
            duplicates.append(fact)
        else:
            seen[key] = fact
    audio_s: dict[str, float] = dict.fromkeys(ROLES, 0.0)
    seqs: dict[str, set[int]] = defaultdict(set)
    for (channel, seq), fact in seen.items():
        audio_s[channel] += fact.num_samples / fact.sample_rate_hz
        seqs[channel].add(seq)
    missing = {ch: missing_ranges(s) for ch, s in sorted(seqs.items())}
    return CallSummary(
        start_ms=min(f.event_time_ms for f in ordered),
        end_ms=max(fact_end_ms(f) for f in ordered),
        audio_s={k: round(v, 6) for k, v in audio_s.items()},
        chunk_count=len(seen),
        duplicates=tuple(duplicates),
        missing={ch: m for ch, m in missing.items() if m},
        first_offset=ordered[0].offset,
        last_offset=ordered[-1].offset,
        ended=any(f.end_of_call for f in ordered),
    )


def missing_ranges(seen: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Inclusive ranges of the numbers in ``0..max(seen)`` that are not in ``seen``."""
    out: list[tuple[int, int]] = []
    expected = 0
    for seq in sorted(set(seen)):
        if seq > expected:
            out.append((expected, seq - 1))
        expected = seq + 1
    return tuple(out)


def format_ranges(ranges: Sequence[tuple[int, int]]) -> str:
    """``[(1, 3), (7, 7)]`` → ``"1-3,7"``."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def call_row(
    info: CallInfo, summary: CallSummary, version: int, is_final: bool, reason: str
) -> CallRow:
    return CallRow(
        call_id=info.call_id,
        version=version,
        is_final=is_final,
        close_reason=reason,
        start_ms=summary.start_ms,
        end_ms=summary.end_ms,
        agent_audio_s=summary.audio_s[ROLE_AGENT],
        customer_audio_s=summary.audio_s[ROLE_CUSTOMER],
        mixed_audio_s=summary.audio_s[ROLE_MIXED],
        chunk_count=summary.chunk_count,
        duplicate_chunks=len(summary.duplicates),
        missing_seq_count=sum(b - a + 1 for m in summary.missing.values() for a, b in m),
        missing_seqs=";".join(f"{ch}:{format_ranges(m)}" for ch, m in summary.missing.items()),
        tenant=info.tenant,
        agent_id=info.agent_id,
        queue=info.queue,
        language_hint=info.language_hint,
        source_topic=info.topic,
        source_partition=info.partition,
        first_offset=summary.first_offset,
        last_offset=summary.last_offset,
    )


def sequence_dead_letters(info: CallInfo, summary: CallSummary, stage: str) -> list[DeadLetter]:
    """One dead letter per duplicate chunk and one per channel with sequence gaps."""
    out = [
        dead_letter(
            stage,
            "duplicate_seq",
            "validation",
            f"{d.channel} seq {d.seq} was already received; the repeat is not counted",
            call_id=info.call_id,
            event_time_ms=d.event_time_ms,
            topic=info.topic,
            partition=d.partition,
            offset=d.offset,
        )
        for d in summary.duplicates
    ]
    out.extend(
        dead_letter(
            stage,
            "seq_gap",
            "validation",
            f"{ch} chunks never received: seq {format_ranges(m)}",
            call_id=info.call_id,
            event_time_ms=summary.start_ms,
            topic=info.topic,
            partition=info.partition,
        )
        for ch, m in summary.missing.items()
    )
    return out
