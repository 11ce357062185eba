"""``transforms/io/kafka_source.py`` without a broker: the restriction tracker, the watermark rules
and the event-time fallback."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from transforms.io.commit import Checkpoint, write_checkpoint
from transforms.io.kafka_source import (
    LEFT_OUT,
    KafkaRestriction,
    KafkaRestrictionTracker,
    KafkaSourceConfig,
    PartitionProgress,
    PartitionsAdded,
    ReadKafkaFn,
    _KafkaRestrictionProvider,
    combined_watermark_ms,
    event_time_ms,
    partition_watermark_ms,
)

UNREAD = PartitionProgress(None, None)
T0 = 1_764_072_000_000
OOO_MS = 2_000  # max out-of-orderness
SLACK_MS = 1_000  # idle slack


def restriction(
    stop: tuple[int, ...] | None = None,
    skip: tuple[tuple[tuple[int, int], ...], ...] = (),
) -> KafkaRestriction:
    return KafkaRestriction((0, 1), (10, 20), stop, (UNREAD, UNREAD), skip)


# --- tracker ---------------------------------------------------------------------------------


def test_claims_advance_positions_and_progress() -> None:
    tracker = KafkaRestrictionTracker(restriction())
    assert tracker.try_claim((0, 10, T0 + 500, 1_000))
    assert tracker.try_claim((0, 11, T0 + 200, 1_001))  # older event: max stays
    assert tracker.try_claim((1, 20, T0, 1_002))
    assert tracker.positions() == {0: 12, 1: 21}
    _, residual = tracker.try_split(0)
    assert residual.progress == (
        PartitionProgress(T0 + 500, 1_001),
        PartitionProgress(T0, 1_002),
    )


def test_dynamic_splits_are_refused() -> None:
    tracker = KafkaRestrictionTracker(restriction())
    tracker.try_claim((0, 10, T0, 1))
    assert tracker.try_split(0.5) is None
    assert tracker.try_split(1e-9) is None
    assert tracker.current_restriction() == restriction()  # unchanged
    assert tracker.try_claim((0, 11, T0, 2))  # still claiming


def test_checkpoint_splits_at_the_claimed_positions() -> None:
    tracker = KafkaRestrictionTracker(restriction())
    tracker.try_claim((0, 10, T0 + 100, 7))
    tracker.try_claim((0, 11, T0 + 300, 8))
    primary, residual = tracker.try_split(0)
    assert primary == KafkaRestriction((0, 1), (10, 20), (12, 20), (UNREAD, UNREAD), ())
    assert residual == KafkaRestriction(
        (0, 1), (12, 20), None, (PartitionProgress(T0 + 300, 8), UNREAD), ((), ())
    )
    assert tracker.current_restriction() == primary
    assert tracker.try_claim((0, 12, T0, 9)) is False  # after a checkpoint: nothing more
    assert tracker.try_claim((1, 20, T0, 9)) is False
    assert tracker.try_split(0) is None  # one checkpoint per tracker
    tracker.check_done()  # the primary is complete


def test_added_partitions_are_claimed_into_the_residual() -> None:
    tracker = KafkaRestrictionTracker(restriction())
    tracker.try_claim((0, 10, T0, 1))
    assert tracker.try_claim(PartitionsAdded((2, 3), (0, 5), ((), ((7, 9),))))
    assert tracker.try_claim(PartitionsAdded((3,), (0,), ((),))) is False  # already there
    assert tracker.try_claim((3, 5, T0 + 50, 2))
    primary, residual = tracker.try_split(0)
    assert primary.partitions == residual.partitions == (0, 1, 2, 3)
    assert primary.stop == (11, 20, 0, 6)  # nothing of partition 2 read yet
    assert residual.start == (11, 20, 0, 6)
    assert residual.stop is None
    assert residual.progress == (
        PartitionProgress(T0, 1), UNREAD, UNREAD, PartitionProgress(T0 + 50, 2),
    )  # fmt: skip
    assert residual.skip == ((), (), (), ((7, 9),))
    # after the checkpoint nothing more is added
    assert tracker.try_claim(PartitionsAdded((4,), (0,), ((),))) is False


def test_a_bounded_restriction_takes_no_partitions() -> None:
    tracker = KafkaRestrictionTracker(restriction(stop=(12, 20)))
    assert tracker.try_claim(PartitionsAdded((2,), (0,), ((),))) is False
    assert tracker.current_restriction() == restriction(stop=(12, 20))


def test_checkpoint_keeps_only_skip_ranges_ahead_of_the_residual() -> None:
    skip = (((11, 13), (15, 16)), ((25, 30),))
    tracker = KafkaRestrictionTracker(restriction(skip=skip))
    for offset in range(10, 14):
        tracker.try_claim((0, offset, T0, 1))
    primary, residual = tracker.try_split(0)
    assert primary.skip == skip
    assert residual.start == (14, 20)
    assert residual.skip == (((15, 16),), ((25, 30),))


def test_bounded_claims_stop_at_the_end_offsets() -> None:
    tracker = KafkaRestrictionTracker(restriction(stop=(12, 20)))
    assert tracker.is_bounded()
    assert tracker.try_claim((0, 10, T0, 1))
    assert tracker.try_claim((0, 11, T0, 1))
    assert tracker.try_claim((0, 12, T0, 1)) is False
    assert tracker.try_claim((1, 20, T0, 1)) is False  # empty range for partition 1
    tracker.check_done()


def test_bounded_check_done_raises_when_not_done() -> None:
    tracker = KafkaRestrictionTracker(restriction(stop=(12, 22)))
    tracker.try_claim((0, 10, T0, 1))
    tracker.try_claim((0, 11, T0, 1))
    tracker.try_claim((1, 20, T0, 1))
    with pytest.raises(ValueError, match="partition 1: read up to 21, not 22"):
        tracker.check_done()
    tracker.try_claim((1, 21, T0, 1))
    tracker.check_done()


def test_unbounded_check_done_raises_without_a_checkpoint() -> None:
    tracker = KafkaRestrictionTracker(restriction())
    assert not tracker.is_bounded()
    with pytest.raises(ValueError, match="unbounded"):
        tracker.check_done()


def test_progress_is_reported_as_unknown() -> None:
    # By design: see the comment in current_progress (avoids the SDK's NaN split arithmetic).
    tracker = KafkaRestrictionTracker(restriction(stop=(100, 100)))
    tracker.try_claim((0, 10, T0, 1))
    assert tracker.current_progress() is None


def test_restriction_provider_without_a_broker() -> None:
    fn = ReadKafkaFn(KafkaSourceConfig(bootstrap_servers="unused:9092", topic="audio"))
    bounded = restriction(stop=(15, 20))
    assert list(fn.split("audio", bounded)) == [bounded]  # one restriction, by design
    assert fn.restriction_size("audio", bounded) == 5.0
    assert fn.restriction_size("audio", restriction()) == 1.0
    assert isinstance(fn.create_tracker(bounded), KafkaRestrictionTracker)


class _StartConsumer:
    """Enough of kafka-python's consumer for ``starts``: offsets 0..100 per partition, records
    stamped from ``T0`` on (offset n at ``T0 + n`` ms), a committed offset per partition."""

    def __init__(self, committed: dict[int, int]) -> None:
        self._committed = committed
        self.time_requests: list[dict[Any, int]] = []

    def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(tps, 0)

    def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(tps, 100)

    def offsets_for_times(self, times: dict[Any, int]) -> dict[Any, Any]:
        self.time_requests.append(times)
        return {tp: SimpleNamespace(offset=t - T0) for tp, t in times.items()}

    def committed(self, tp: Any) -> int | None:
        return self._committed.get(tp.partition)


def test_a_start_time_is_asked_for_only_where_no_checkpoint_or_commit_says_where(
    tmp_path: Path,
) -> None:
    cfg = KafkaSourceConfig(bootstrap_servers="unused:9092", topic="audio", start_at_ms=T0 + 40,
                            checkpoint_dir=str(tmp_path))  # fmt: skip
    provider = _KafkaRestrictionProvider(cfg)
    write_checkpoint(str(tmp_path), "audio", "callqa", 0, Checkpoint(70, ()))
    known = _StartConsumer(committed={1: 60})
    assert provider.starts(known, "audio", [0, 1], added=False)[0] == (70, 60)
    assert known.time_requests == []  # the checkpoint and the commit: no request by time
    fresh = _StartConsumer(committed={})
    assert provider.starts(fresh, "audio", [0, 2], added=False)[0] == (70, 40)
    assert len(fresh.time_requests) == 1  # one request, for every partition
    assert provider.starts(fresh, "audio", [3], added=True)[0] == (0,)  # added: from the start
    assert len(fresh.time_requests) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"start_from": "beginning"}, {"max_out_of_orderness_s": -1}, {"idle_slack_s": -0.1}],
)
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        KafkaSourceConfig(bootstrap_servers="b:9092", topic="t", **kwargs)  # type: ignore[arg-type]


# --- watermark -------------------------------------------------------------------------------


def pwm(
    progress: PartitionProgress, position: int, high: int | None, now_ms: int = 0
) -> int | None:
    return partition_watermark_ms(progress, position, high, now_ms, OOO_MS, SLACK_MS)


def test_unread_partition_with_records_holds_the_watermark() -> None:
    assert pwm(UNREAD, position=0, high=5) is None
    assert pwm(UNREAD, position=0, high=None) is None  # high watermark not known yet


def test_empty_caught_up_partition_is_left_out() -> None:
    assert pwm(UNREAD, position=7, high=7) == LEFT_OUT


def test_partition_with_a_backlog() -> None:
    progress = PartitionProgress(T0, last_read_wall_ms=T0 + 60_000)
    assert pwm(progress, position=3, high=10, now_ms=T0 + 500_000) == T0 - OOO_MS


def test_caught_up_partition_advances_with_the_wall_clock() -> None:
    # Captures lag the wall clock by 60 s; the last record was read 5 s ago.
    progress = PartitionProgress(T0, last_read_wall_ms=T0 + 60_000)
    now = T0 + 65_000
    assert pwm(progress, position=10, high=10, now_ms=now) == T0 - OOO_MS + 5_000 - SLACK_MS
    # Just read: quiet for less than the slack, so the out-of-orderness margin stands whole.
    assert pwm(progress, position=10, high=10, now_ms=T0 + 60_000) == T0 - OOO_MS
    assert pwm(progress, position=10, high=10, now_ms=T0 + 60_000 + SLACK_MS) == T0 - OOO_MS


def test_caught_up_partition_never_goes_below_the_backlog_rule() -> None:
    progress = PartitionProgress(T0, last_read_wall_ms=T0)
    # A clock step back: the idle estimate falls below max_event - ooo, which stands.
    assert pwm(progress, position=10, high=10, now_ms=T0 - 10_000) == T0 - OOO_MS


def test_combined_watermark() -> None:
    assert combined_watermark_ms([T0 + 5, T0 + 2, T0 + 9]) == T0 + 2
    assert combined_watermark_ms([T0 + 5, None, T0 + 9]) is None  # one partition holds
    assert combined_watermark_ms([T0 + 5, LEFT_OUT, T0 + 9]) == T0 + 5  # one left out
    assert combined_watermark_ms([LEFT_OUT, LEFT_OUT]) is None  # nothing to go on
    assert combined_watermark_ms([]) is None


def test_combined_watermark_over_mixed_partitions() -> None:
    backlog = pwm(PartitionProgress(T0, T0 + 60_000), position=3, high=10, now_ms=T0 + 61_000)
    live = pwm(PartitionProgress(T0 + 60_000, T0 + 60_500), 10, 10, now_ms=T0 + 61_000)
    empty = pwm(UNREAD, 0, 0)
    assert combined_watermark_ms([backlog, live, empty]) == T0 - OOO_MS  # the lagging one


def test_a_negative_contribution_still_bounds_the_watermark() -> None:
    backlogged = pwm(PartitionProgress(1_000, 0), position=3, high=10)
    assert backlogged == 1_000 - OOO_MS
    wm = combined_watermark_ms([backlogged, T0])
    assert wm is None or wm <= backlogged


# --- event time ------------------------------------------------------------------------------


def test_event_time_from_the_capture_header() -> None:
    headers = (("seq", b"1"), ("capture_time_ms", b"1764072000123"))
    assert event_time_ms(headers, kafka_timestamp_ms=T0 + 9) == T0 + 123


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (("seq", b"1"),),
        (("capture_time_ms", b"soon"),),
        (("capture_time_ms", None),),
        (("capture_time_ms", b""),),
        (("capture_time_ms", b"1764072000000000"),),  # microseconds: year ~57,000
        (("capture_time_ms", b"1764072000"),),  # seconds: 1970
        (("capture_time_ms", b"+1764072000000"),),
    ],
)
def test_event_time_falls_back_to_the_kafka_timestamp(
    headers: tuple[tuple[str, bytes], ...],
) -> None:
    assert event_time_ms(headers, kafka_timestamp_ms=T0 + 9) == T0 + 9


def test_event_time_uses_the_first_capture_header() -> None:
    headers = (("capture_time_ms", b"1764072000001"), ("capture_time_ms", b"1764072000002"))
    assert event_time_ms(headers, kafka_timestamp_ms=0) == T0 + 1
