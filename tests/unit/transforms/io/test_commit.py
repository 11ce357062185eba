"""The offset ledger behind the delivery guarantee: ranges, frontier, checkpoint files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.records import Checkpoint
from transforms.io.commit import (
    advance,
    checkpoint_path,
    is_acked,
    merge_ranges,
    offsets_to_ranges,
    read_checkpoint,
    write_checkpoint,
)


def test_merge_ranges_sorts_and_joins_touching_and_overlapping() -> None:
    assert merge_ranges([(5, 7), (0, 2), (2, 3), (6, 9), (12, 13)]) == ((0, 3), (5, 9), (12, 13))
    assert merge_ranges([]) == ()


def test_offsets_to_ranges() -> None:
    assert offsets_to_ranges([4, 1, 2, 3, 9]) == ((1, 5), (9, 10))


def test_frontier_moves_only_over_contiguous_acknowledged_offsets() -> None:
    cp = Checkpoint(10, ())
    cp = advance(cp, [(12, 15)])  # 10 and 11 still open (a long call)
    assert cp == Checkpoint(10, ((12, 15),))
    cp = advance(cp, [(10, 11)])
    assert cp == Checkpoint(11, ((12, 15),))
    cp = advance(cp, [(11, 12), (20, 21)])
    assert cp == Checkpoint(15, ((20, 21),))


def test_old_and_repeated_acks_change_nothing() -> None:
    cp = Checkpoint(15, ((20, 21),))
    assert advance(cp, [(3, 9), (20, 21), (14, 15)]) == cp


def test_is_acked() -> None:
    cp = Checkpoint(10, ((12, 15),))
    assert [o for o in range(9, 17) if is_acked(cp, o)] == [9, 12, 13, 14]


def test_checkpoint_round_trip_is_atomic(tmp_path: Path) -> None:
    cp = Checkpoint(42, ((50, 60), (70, 71)))
    write_checkpoint(str(tmp_path), "audio", "g", 3, cp)
    assert read_checkpoint(str(tmp_path), "audio", "g", 3) == cp
    assert read_checkpoint(str(tmp_path), "audio", "g", 4) is None
    path = checkpoint_path(str(tmp_path), "audio", "g", 3)
    assert json.loads(path.read_text())["frontier"] == 42
    assert [p.name for p in path.parent.iterdir()] == ["p3.json"]  # no temp files left


@pytest.mark.parametrize("bad", ["{", '{"frontier": 1}'])
def test_a_damaged_checkpoint_is_reported_with_its_path(tmp_path: Path, bad: str) -> None:
    path = checkpoint_path(str(tmp_path), "audio", "g", 0)
    path.parent.mkdir(parents=True)
    path.write_text(bad)
    with pytest.raises(RuntimeError, match=str(path)):
        read_checkpoint(str(tmp_path), "audio", "g", 0)


def test_offset_acks_split_by_partition() -> None:
    from schemas.records import ChunkFact, OffsetAck
    from transforms.io.commit import offset_acks

    facts = [ChunkFact("agent", s, 0, 1600, 16000, False, p, o)
             for s, (p, o) in enumerate([(1, 5), (1, 6), (3, 2), (1, 9)])]  # fmt: skip
    assert offset_acks("audio", facts) == (
        OffsetAck("audio", 1, ((5, 7), (9, 10))),
        OffsetAck("audio", 3, ((2, 3),)),
    )
