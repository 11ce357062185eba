"""The delivery ledger in Iceberg snapshot summaries: merging the tables' ledgers and new
acknowledgements, and the summary's text form."""

from __future__ import annotations

from schemas.records import Checkpoint, OffsetAck
from transforms.io.iceberg_sink import ledger_from_summary, ledger_to_summary, merge_ledgers


def test_acks_move_the_frontier_over_contiguous_ranges() -> None:
    ledger = merge_ledgers([], [OffsetAck("t", 0, ((0, 3),)), OffsetAck("t", 0, ((5, 6),))])
    assert ledger == {("t", 0): Checkpoint(3, ((5, 6),))}
    ledger = merge_ledgers([ledger], [OffsetAck("t", 0, ((3, 5),))])
    assert ledger == {("t", 0): Checkpoint(6, ())}


def test_the_union_of_two_tables_ledgers_keeps_each_ones_ranges() -> None:
    """Calls acknowledged 0-10 and 12-20, dead letters 10-12: together, 0-20 is durable."""
    calls = {("t", 0): Checkpoint(10, ((12, 20),)), ("t", 1): Checkpoint(4, ())}
    letters = {("t", 0): Checkpoint(0, ((10, 12),))}
    assert merge_ledgers([calls, letters]) == {
        ("t", 0): Checkpoint(20, ()),
        ("t", 1): Checkpoint(4, ()),
    }


def test_an_unknown_partition_starts_at_zero_not_at_its_first_ack() -> None:
    """Offset 5 acknowledged before 0-5: nothing below 5 is durable yet."""
    ledger = merge_ledgers([], [OffsetAck("t", 2, ((5, 9),))])
    assert ledger == {("t", 2): Checkpoint(0, ((5, 9),))}


def test_summary_round_trip_with_colons_in_the_topic() -> None:
    ledger = {("a:b", 3): Checkpoint(7, ((9, 11), (15, 16))), ("c", 0): Checkpoint(0, ())}
    text = ledger_to_summary(ledger)
    assert ledger_from_summary(text) == ledger
    assert ledger_from_summary(None) == {} == ledger_from_summary("")
