"""``ReadAudioChunks``: a Python-native, splittable-DoFn Kafka source over kafka-python.

Shape: **one restriction over all partitions of the topic**, read by one consumer. The source's
watermark is computed inside the restriction as the minimum over partitions, so it can never
pass a record that has not been read (see "Watermark" below). On Prism 2.77 a per-partition
restriction design let the stage watermark run ahead of the slowest partition (2.7-53 % of
records late in probes against a real broker): the runner does not reliably take the minimum
over restrictions, so the
source takes it itself. The tracker refuses dynamic splits (``try_split(fraction > 0)``) and
reports its progress as unknown, which keeps the SDK's split arithmetic finite; checkpoints
(``try_split(0)``) work as usual and carry the per-partition progress in the residual.

Watermark, per partition ``p`` (then the minimum over partitions, never decreasing):

* ``p`` not yet read and not known to be caught up: the watermark holds (cannot advance).
* ``p`` has a backlog: ``max event time read from p - max_out_of_orderness_s``.
* ``p`` is caught up (position >= high watermark): as above, but also advancing with the wall
  clock from its last record: ``last event time + (now - wall time it was read) - idle_slack_s``.
  This lets per-call results out when a partition goes quiet, and is correct for producers whose
  capture times lag the wall clock by a steady amount (unlike a plain ``now - slack`` rule).
* ``p`` is empty and caught up: it is left out of the minimum.

Partitions added to the topic while the job runs are found within ``partition_discovery_s``
(the consumer's metadata age) and claimed into the unbounded restriction (``PartitionsAdded``):
the next bundle reads them from their first offset, and each gets a checkpoint before it is
read. The idle rule above waits ``partition_discovery_s`` on top of the slack, so records
written to a partition not yet seen cannot fall behind the watermark.

Modes: unbounded (the streaming job) and bounded (stop at the end offsets seen at start: tests,
backfills). Start position: the consumer group's committed offsets, else ``start_at_ms`` (the
first offset whose record timestamp is at or after it), else ``start_from``. A bounded read
with ``stop_at_ms`` stops each partition before its first record at or after that time: a
replay of a time range reads only that range's offsets.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import apache_beam as beam
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.events import H_CAPTURE_TIME_MS, parse_capture_time_ms
from schemas.records import KafkaRecord
from transforms.io.commit import Checkpoint, advance, is_acked, read_checkpoint, write_checkpoint
from transforms.io.iceberg import CatalogConfig
from transforms.io.iceberg_sink import merge_ledgers, read_ledger, seed_ledger
from transforms.io.kafka_client import (
    BrokerWait,
    is_transient,
    new_consumer,
    quiet_connection_logs,
)

_LOG = logging.getLogger(__name__)
_NS = "callqa.source"
#: While the broker is away, the read is retried this often (each try waits for its timeouts).
_OUTAGE_BACKOFF_S: Final = 2.0
#: An idle source asks the broker for the partitions' ends at most this often before it lets
#: the watermark move on with the wall clock: the high watermarks the consumer last fetched go
#: stale in an outage, and chunks buffered by producers meanwhile must not arrive late.
_BROKER_CHECK_MS: Final = 1000
_END_OFFSETS_TIMEOUT_MS: Final = 5000


@dataclass(frozen=True)
class KafkaSourceConfig:
    """Where and how to read. ``consumer_config`` passes extra kafka-python settings (TLS, SASL)."""

    bootstrap_servers: str
    topic: str
    group_id: str = "callqa"
    start_from: str = "earliest"  # used where the group has no committed offset: earliest|latest
    bounded: bool = False  # stop at the end offsets seen when the job starts
    #: Where the group has no committed offset: start at the first record whose timestamp
    #: (Kafka's, epoch ms) is at or after this; before ``start_from``.
    start_at_ms: int | None = None
    #: Bounded reads: stop before the first record whose timestamp is at or after this (else
    #: at the end offsets seen when the job starts).
    stop_at_ms: int | None = None
    poll_timeout_s: float = 0.1
    max_poll_records: int = 1000
    max_bundle_s: float = 0.5  # read at most this long before handing a bundle downstream
    max_out_of_orderness_s: float = 2.0
    idle_slack_s: float = 1.0
    #: How often the partition set is refreshed (unbounded reads): a partition added to the
    #: topic is read from its first offset at most this long after it appears. The idle
    #: watermark rule waits this long on top of ``idle_slack_s``, so that nothing written to a
    #: partition not yet seen can fall behind the watermark.
    partition_discovery_s: float = 1.0
    # may hold credentials: left out of repr() and so of every log line
    consumer_config: tuple[tuple[str, Any], ...] = field(default=(), repr=False)
    #: Where ``CommitOffsets`` keeps restart positions. Set: start at the checkpoint's frontier
    #: and skip records it lists as done; a missing checkpoint is created at start.
    checkpoint_dir: str | None = None
    #: The Iceberg warehouse whose snapshots carry the delivery ledger (``--warehouse=iceberg``):
    #: merged with the checkpoint files at start (either may be ahead; both hold only durable
    #: offsets), and given the start positions of partitions it lacks.
    ledger_catalog: CatalogConfig | None = None

    def __post_init__(self) -> None:
        if self.start_from not in ("earliest", "latest"):
            raise ValueError(f"start_from must be 'earliest' or 'latest', not {self.start_from!r}")
        if self.max_out_of_orderness_s < 0 or self.idle_slack_s < 0:
            raise ValueError("max_out_of_orderness_s and idle_slack_s must be >= 0")
        if self.partition_discovery_s <= 0:
            raise ValueError("partition_discovery_s must be > 0")
        if self.stop_at_ms is not None and not self.bounded:
            raise ValueError("a stop time needs a bounded read (--bounded)")
        if (
            self.start_at_ms is not None
            and self.stop_at_ms is not None
            and self.stop_at_ms <= self.start_at_ms
        ):
            raise ValueError("the stop time must come after the start time")


class PartitionProgress(NamedTuple):
    """What the watermark needs to remember about one partition between checkpoints."""

    max_event_ms: int | None  # highest event time read from the partition in this job
    last_read_wall_ms: int | None  # wall-clock time when that partition's last record was read


class PartitionsAdded(NamedTuple):
    """A claim that extends an unbounded restriction by partitions added to the topic."""

    partitions: tuple[int, ...]
    start: tuple[int, ...]
    skip: tuple[tuple[tuple[int, int], ...], ...]


class KafkaRestriction(NamedTuple):
    """Offsets to read: for each partition, ``[start, stop)``; ``stop`` None means unbounded."""

    partitions: tuple[int, ...]
    start: tuple[int, ...]
    stop: tuple[int, ...] | None
    progress: tuple[PartitionProgress, ...]
    #: Per partition, offset ranges above ``start`` already done before a restart: skipped.
    skip: tuple[tuple[tuple[int, int], ...], ...] = ()


def event_time_ms(headers: tuple[tuple[str, bytes], ...], kafka_timestamp_ms: int) -> int:
    """The chunk's event time: its ``capture_time_ms`` header, else the Kafka CreateTime.

    A malformed or out-of-range header falls back too (it must not drag the watermark to year
    57,000 or to 1970); ``DecodeAndValidate`` dead-letters such a record.
    """
    for name, value in headers:
        if name == H_CAPTURE_TIME_MS:
            parsed = parse_capture_time_ms(value)
            return kafka_timestamp_ms if parsed is None else parsed
    return kafka_timestamp_ms


#: Contribution of an empty, caught-up partition: it does not bound the minimum.
LEFT_OUT: Final = math.inf


def partition_watermark_ms(
    progress: PartitionProgress,
    position: int,
    high_watermark: int | None,
    now_ms: int,
    max_out_of_orderness_ms: int,
    idle_slack_ms: int,
) -> float | None:
    """Watermark contribution of one partition: ms, ``None`` (holds it) or ``LEFT_OUT``."""
    caught_up = high_watermark is not None and position >= high_watermark
    if progress.max_event_ms is None or progress.last_read_wall_ms is None:
        return LEFT_OUT if caught_up else None
    wm = progress.max_event_ms - max_out_of_orderness_ms
    if caught_up:  # quiet for longer than the slack: event time moves on with the wall clock
        wm += max(0, now_ms - progress.last_read_wall_ms - idle_slack_ms)
    return wm


def combined_watermark_ms(contributions: list[float | None]) -> int | None:
    """Minimum over partitions; None while any partition holds it or all are left out."""
    if not contributions or any(c is None for c in contributions):
        return None
    low = min(c for c in contributions if c is not None)
    return None if low == LEFT_OUT else int(low)


class KafkaRestrictionTracker(RestrictionTracker):
    """Claims ``(partition, offset)`` positions; refuses dynamic splits, allows checkpoints."""

    def __init__(self, restriction: KafkaRestriction) -> None:
        self._restriction = restriction
        self._positions = dict(zip(restriction.partitions, restriction.start, strict=True))
        self._progress = dict(zip(restriction.partitions, restriction.progress, strict=True))
        self._checkpointed = False

    def current_restriction(self) -> KafkaRestriction:
        return self._restriction

    def positions(self) -> dict[int, int]:
        return dict(self._positions)

    def try_claim(self, position: tuple[int, int, int, int] | PartitionsAdded) -> bool:
        if self._checkpointed:
            return False
        if isinstance(position, PartitionsAdded):
            return self._add(position)
        partition, offset, event_ms, wall_ms = position
        stop = self._stop(partition)
        if stop is not None and offset >= stop:
            return False
        self._positions[partition] = offset + 1
        old = self._progress[partition]
        max_event = event_ms if old.max_event_ms is None else max(old.max_event_ms, event_ms)
        self._progress[partition] = PartitionProgress(max_event, wall_ms)
        return True

    def _add(self, added: PartitionsAdded) -> bool:
        r = self._restriction
        if r.stop is not None or set(added.partitions) & set(r.partitions):
            return False
        skip = r.skip or tuple(() for _ in r.partitions)
        self._restriction = KafkaRestriction(
            r.partitions + added.partitions,
            r.start + added.start,
            None,
            r.progress + tuple(PartitionProgress(None, None) for _ in added.partitions),
            skip + added.skip,
        )
        self._positions.update(zip(added.partitions, added.start, strict=True))
        self._progress.update((p, PartitionProgress(None, None)) for p in added.partitions)
        return True

    def _stop(self, partition: int) -> int | None:
        if self._restriction.stop is None:
            return None
        return self._restriction.stop[self._restriction.partitions.index(partition)]

    def _snapshot(self) -> tuple[tuple[int, ...], tuple[PartitionProgress, ...]]:
        parts = self._restriction.partitions
        return (
            tuple(self._positions[p] for p in parts),
            tuple(self._progress[p] for p in parts),
        )

    def try_split(self, fraction_of_remainder: float) -> Any:
        # Dynamic splits would make two restrictions read the same partitions (and the
        # watermark would no longer be a minimum over all of them): refuse. Checkpoint only.
        if fraction_of_remainder > 0 or self._checkpointed:
            return None
        positions, progress = self._snapshot()
        r = self._restriction
        primary = KafkaRestriction(r.partitions, r.start, positions, r.progress, r.skip)
        skip = tuple(
            tuple(rg for rg in ranges if rg[1] > pos)
            for ranges, pos in zip(r.skip or tuple(() for _ in positions), positions, strict=True)
        )
        residual = KafkaRestriction(r.partitions, positions, r.stop, progress, skip)
        self._restriction = primary
        self._checkpointed = True
        return primary, residual

    def check_done(self) -> None:
        r = self._restriction
        if r.stop is None:
            raise ValueError("an unbounded Kafka restriction finished without a checkpoint")
        for p, stop in zip(r.partitions, r.stop, strict=True):
            if self._positions[p] < stop:
                raise ValueError(f"partition {p}: read up to {self._positions[p]}, not {stop}")

    def current_progress(self) -> RestrictionProgress | None:  # type: ignore[override]
        # "Unknown" on purpose. The SDK replaces a tracker's completed work with its own
        # output-byte estimate, which is NaN early in a bundle; Prism's split request on an
        # idle source then crashed the SDK (ValueError: cannot convert float NaN to integer,
        # bundle_processor._compute_split). With no progress the SDK assumes 0.5, asks
        # try_split (refused above) and the bundle goes on. Lag is reported as a metric.
        return None

    def is_bounded(self) -> bool:
        return self._restriction.stop is not None


def _new_consumer(cfg: KafkaSourceConfig) -> Any:
    return new_consumer(
        cfg.bootstrap_servers,
        cfg.group_id,
        cfg.consumer_config,
        auto_offset_reset=cfg.start_from,
        max_poll_records=cfg.max_poll_records,
        consumer_timeout_ms=int(cfg.poll_timeout_s * 1000),
        max_partition_fetch_bytes=4 * 1024 * 1024,  # a poll brings ~1,300 chunks per partition
        request_timeout_ms=30_000,
        metadata_max_age_ms=int(cfg.partition_discovery_s * 1000),
    )


def _topic_partitions(consumer: Any, topic: str, timeout_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"Kafka topic {topic!r} does not exist or has no partitions: create it first "
                "(callqa kafka create-topic) or check --kafka_topic / --bootstrap_servers."
            )
        time.sleep(0.5)


def offsets_at(consumer: Any, tps: list[Any], time_ms: int, end: dict[Any, int]) -> dict[Any, int]:
    """Per partition, the first offset whose record timestamp is at or after ``time_ms``; the
    end offset where every record is older."""
    found = consumer.offsets_for_times(dict.fromkeys(tps, time_ms))
    return {tp: end[tp] if found.get(tp) is None else int(found[tp].offset) for tp in tps}


class _KafkaRestrictionProvider(RestrictionProvider):
    def __init__(self, cfg: KafkaSourceConfig) -> None:
        self._cfg = cfg

    def initial_restriction(self, element: str) -> KafkaRestriction:
        """Where to start: the checkpoint's frontier, else the group's commit, else
        ``start_from``. A broker that is away is waited for."""
        wait = BrokerWait(f"Kafka source {element}: finding where to start")
        return wait.call(lambda: self._initial_restriction(element))

    def _initial_restriction(self, element: str) -> KafkaRestriction:
        from kafka import TopicPartition

        consumer = _new_consumer(self._cfg)
        try:
            parts = _topic_partitions(consumer, element)
            start, skip = self.starts(consumer, element, parts, added=False)
            tps = [TopicPartition(element, p) for p in parts]
            end = consumer.end_offsets(tps)
            if self._cfg.stop_at_ms is not None:
                end = offsets_at(consumer, tps, self._cfg.stop_at_ms, end)
            stop = tuple(max(end[tp], s) for tp, s in zip(tps, start, strict=True))
            _LOG.info("Kafka source %s: start %s, end %s", element, list(start), list(stop))
            return KafkaRestriction(
                tuple(parts),
                start,
                stop if self._cfg.bounded else None,
                tuple(PartitionProgress(None, None) for _ in parts),
                skip,
            )
        finally:
            consumer.close()

    def starts(
        self, consumer: Any, topic: str, parts: list[int], added: bool
    ) -> tuple[tuple[int, ...], tuple[tuple[tuple[int, int], ...], ...]]:
        """Per partition, where to start and the ranges already done: the checkpoint's
        frontier, else the group's commit, else ``start_from`` (a partition ``added`` while
        the job runs: its first offset). A partition without a checkpoint gets one here,
        before anything of it is read, for the committer to advance."""
        from kafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in parts]
        begin = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        at_time: dict[Any, int] | None = None  # asked once, if a partition starts at the time
        catalog = self._cfg.ledger_catalog
        ledger = read_ledger(catalog) if catalog is not None else {}
        seeds: dict[tuple[str, int], Checkpoint] = {}
        start: list[int] = []
        skip: list[tuple[tuple[int, int], ...]] = []
        for tp in tps:
            cp = self._checkpoint(topic, tp.partition)
            stored = ledger.get((topic, tp.partition))
            if stored is not None:
                key = (topic, tp.partition)
                merged = stored if cp is None else merge_ledgers([{key: cp}, {key: stored}])[key]
                if merged != cp and self._cfg.checkpoint_dir is not None:
                    write_checkpoint(self._cfg.checkpoint_dir, topic, self._cfg.group_id,
                                     tp.partition, merged)  # fmt: skip
                cp = merged
            if cp is not None and begin[tp] > cp.frontier:
                cp = self._skip_retained(topic, tp.partition, cp, begin[tp])
            committed = consumer.committed(tp)
            if cp is not None:
                position = max(cp.frontier, begin[tp])
            elif committed is not None:
                position = max(int(committed), begin[tp])
            elif self._cfg.start_at_ms is not None and not added:
                if at_time is None:
                    at_time = offsets_at(consumer, tps, self._cfg.start_at_ms, end)
                position = max(at_time[tp], begin[tp])
            elif self._cfg.start_from == "latest" and not added:
                position = end[tp]
            else:
                position = begin[tp]
            start.append(position)
            skip.append(cp.acked if cp is not None else ())
            if cp is None and self._cfg.checkpoint_dir is not None:
                write_checkpoint(
                    self._cfg.checkpoint_dir, topic, self._cfg.group_id, tp.partition,
                    Checkpoint(position, ()),
                )  # fmt: skip
            if cp is None and catalog is not None:
                seeds[(topic, tp.partition)] = Checkpoint(position, ())
        if seeds and catalog is not None:
            seed_ledger(catalog, seeds)
        return tuple(start), tuple(skip)

    def _skip_retained(self, topic: str, partition: int, cp: Checkpoint, begin: int) -> Checkpoint:
        """Records below the log start were deleted by retention before the job read them."""
        _LOG.error(
            "Kafka %s[%d]: offsets %d..%d were deleted by retention before they were processed "
            "(%d records lost); continuing from %d. Raise the topic's retention.ms above the "
            "longest outage.",
            topic, partition, cp.frontier, begin - 1, begin - cp.frontier, begin,
        )  # fmt: skip
        moved = advance(cp, [(cp.frontier, begin)])
        assert self._cfg.checkpoint_dir is not None
        write_checkpoint(self._cfg.checkpoint_dir, topic, self._cfg.group_id, partition, moved)
        return moved

    def _checkpoint(self, topic: str, partition: int) -> Checkpoint | None:
        if self._cfg.checkpoint_dir is None:
            return None
        return read_checkpoint(self._cfg.checkpoint_dir, topic, self._cfg.group_id, partition)

    def create_tracker(self, restriction: KafkaRestriction) -> KafkaRestrictionTracker:
        return KafkaRestrictionTracker(restriction)

    def split(self, element: str, restriction: KafkaRestriction) -> Iterator[KafkaRestriction]:
        yield restriction  # one restriction over all partitions, by design (see module doc)

    def restriction_size(self, element: str, restriction: KafkaRestriction) -> float:
        if restriction.stop is None:
            return 1.0
        return float(
            sum(max(0, e - s) for s, e in zip(restriction.start, restriction.stop, strict=True))
        )


class ReadKafkaFn(beam.DoFn, RestrictionProvider):
    """Splittable DoFn: topic name → ``KafkaRecord`` stamped with its event time.

    It is its own restriction provider (the methods delegate to ``_KafkaRestrictionProvider``).

    Metrics (namespace ``callqa.source``): ``records_read``, ``bytes_read``, ``seeks``,
    ``partitions_added``,
    ``lag_records`` (gauge: records behind the high watermark), ``watermark_lag_ms`` (gauge).
    """

    def __init__(self, cfg: KafkaSourceConfig) -> None:
        self._cfg = cfg
        self._provider = _KafkaRestrictionProvider(cfg)
        self._consumer: Any = None
        self._expected: dict[int, int] = {}
        self._confirmed_ms = 0
        self.records_read = Metrics.counter(_NS, "records_read")
        self.bytes_read = Metrics.counter(_NS, "bytes_read")
        self.seeks = Metrics.counter(_NS, "seeks")
        self.records_skipped = Metrics.counter(_NS, "records_skipped_done")
        self.partitions_added = Metrics.counter(_NS, "partitions_added")
        self.lag = Metrics.gauge(_NS, "lag_records")
        self.watermark_lag = Metrics.gauge(_NS, "watermark_lag_ms")
        self._outage = BrokerWait(f"Kafka source {cfg.topic}")

    def initial_restriction(self, element: str) -> KafkaRestriction:
        return self._provider.initial_restriction(element)

    def create_tracker(self, restriction: KafkaRestriction) -> KafkaRestrictionTracker:
        return self._provider.create_tracker(restriction)

    def split(self, element: str, restriction: KafkaRestriction) -> Iterator[KafkaRestriction]:
        return self._provider.split(element, restriction)

    def restriction_size(self, element: str, restriction: KafkaRestriction) -> float:
        return self._provider.restriction_size(element, restriction)

    def setup(self) -> None:
        quiet_connection_logs()
        self._consumer = None  # made on first use: a worker may start during an outage
        self._expected = {}
        self._confirmed_ms = 0  # wall time the broker last answered a fetch or a ListOffsets

    def teardown(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _position_consumer(self, topic: str, restriction: KafkaRestriction) -> None:
        from kafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in restriction.partitions]
        if set(self._consumer.assignment()) != set(tps):
            self._consumer.assign(tps)
            self._expected = {}
        for tp, start in zip(tps, restriction.start, strict=True):
            if self._expected.get(tp.partition) != start:
                self._consumer.seek(tp, start)
                self._expected[tp.partition] = start
                self.seeks.inc()
        self._consumer.resume(*tps)

    def process(
        self,
        topic: str,
        tracker: Any = beam.DoFn.RestrictionParam(),
        watermark: Any = beam.DoFn.WatermarkEstimatorParam(
            ManualWatermarkEstimator.default_provider()
        ),
    ) -> Iterator[TimestampedValue]:
        """Reads until the bundle's deadline. While the broker is away the read stops, keeps
        the watermark where it is, and resumes after a backoff (one log line per outage)."""
        try:
            yield from self._read(topic, tracker, watermark)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._outage.failed(exc)
            self._expected.clear()  # seek again to the restriction's start on the next read
            tracker.defer_remainder(Duration(seconds=_OUTAGE_BACKOFF_S))
            return
        self._outage.recovered()

    def _client(self) -> Any:
        if self._consumer is None:
            self._consumer = _new_consumer(self._cfg)
        return self._consumer

    def _read(
        self, topic: str, tracker: Any, watermark: ManualWatermarkEstimator
    ) -> Iterator[TimestampedValue]:
        from kafka import TopicPartition

        restriction: KafkaRestriction = tracker.current_restriction()
        self._client()
        self._position_consumer(topic, restriction)
        if restriction.stop is None and self._claim_added_partitions(topic, restriction, tracker):
            tracker.defer_remainder(Duration(seconds=0))  # the next bundle reads them too
            return
        stops = (
            dict(zip(restriction.partitions, restriction.stop, strict=True))
            if restriction.stop is not None
            else None
        )
        positions = dict(zip(restriction.partitions, restriction.start, strict=True))
        progress = dict(zip(restriction.partitions, restriction.progress, strict=True))
        done_before = {
            p: Checkpoint(-1, ranges)
            for p, ranges in zip(restriction.partitions, restriction.skip, strict=False)
            if ranges
        }
        if stops is not None:
            for p in restriction.partitions:
                if positions[p] >= stops[p]:
                    self._consumer.pause(TopicPartition(topic, p))
        deadline = time.monotonic() + self._cfg.max_bundle_s
        got_any = False
        claimed = True
        while claimed and time.monotonic() < deadline:
            batches = self._consumer.poll(
                timeout_ms=int(self._cfg.poll_timeout_s * 1000),
                max_records=self._cfg.max_poll_records,
            )
            if not batches:
                if self._caught_up(topic, restriction.partitions, positions, stops):
                    break
                continue
            wall_ms = self._confirmed_ms = int(time.time() * 1000)
            for tp, records in batches.items():
                part = tp.partition
                if stops is not None and records[-1].offset >= stops[part]:
                    records = [r for r in records if r.offset < stops[part]]
                    self._consumer.pause(tp)
                    if not records:
                        continue
                events = [event_time_ms(tuple(r.headers or ()), r.timestamp) for r in records]
                # One claim per partition batch (claiming offset o claims everything up to o),
                # made before anything of the batch is emitted.
                last = records[-1].offset
                if not tracker.try_claim((part, last, max(events), wall_ms)):
                    # The runner checkpointed us: poll() already moved the consumer past these
                    # records, so the next restriction on this instance must seek, not trust it.
                    self._expected.clear()
                    claimed = False
                    break
                got_any = True
                positions[part] = self._expected[part] = last + 1
                old = progress[part]
                top = max(events) if old.max_event_ms is None else max(old.max_event_ms, *events)
                progress[part] = PartitionProgress(top, wall_ms)
                self.records_read.inc(len(records))
                self.bytes_read.inc(sum(len(r.value or b"") for r in records))
                done = done_before.get(part)
                for rec, ev in zip(records, events, strict=True):
                    if done is not None and is_acked(done, rec.offset):
                        self.records_skipped.inc()  # durable before a restart: not replayed
                        continue
                    yield TimestampedValue(
                        KafkaRecord(
                            topic=rec.topic,
                            partition=part,
                            offset=rec.offset,
                            key=rec.key,
                            value=rec.value,
                            headers=tuple(rec.headers or ()),
                            timestamp_ms=rec.timestamp,
                        ),
                        Timestamp(micros=ev * 1000),
                    )
        bounded_done = stops is not None and all(
            positions[p] >= stops[p] for p in restriction.partitions
        )
        if claimed and not bounded_done:  # else: done (check_done passes) or already split
            self._advance_watermark(topic, restriction.partitions, positions, progress, watermark)
            tracker.defer_remainder(Duration(seconds=0 if got_any else self._cfg.poll_timeout_s))

    def _claim_added_partitions(
        self, topic: str, restriction: KafkaRestriction, tracker: Any
    ) -> bool:
        """Partitions added to the topic since the restriction was made (the consumer's
        metadata is at most ``partition_discovery_s`` old): claimed into the restriction."""
        known = set(restriction.partitions)
        added = sorted(set(self._consumer.partitions_for_topic(topic)) - known)
        if not added:
            return False
        start, skip = self._provider.starts(self._consumer, topic, added, added=True)
        if not tracker.try_claim(PartitionsAdded(tuple(added), start, skip)):
            return False
        # a warning: keys now map to other partitions, so a call's chunks may be split
        _LOG.warning("Kafka source %s: partitions %s were added; reading them from offsets %s",
                     topic, added, list(start))  # fmt: skip
        self.partitions_added.inc(len(added))
        return True

    def _caught_up(
        self,
        topic: str,
        partitions: tuple[int, ...],
        positions: dict[int, int],
        stops: dict[int, int] | None,
    ) -> bool:
        from kafka import TopicPartition

        for p in partitions:
            if stops is not None and positions[p] >= stops[p]:
                continue
            high = self._consumer.highwater(TopicPartition(topic, p))
            if high is None or positions[p] < high:
                return False
        return True

    def _advance_watermark(
        self,
        topic: str,
        partitions: tuple[int, ...],
        positions: dict[int, int],
        progress: dict[int, PartitionProgress],
        watermark: ManualWatermarkEstimator,
    ) -> None:
        from kafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in partitions]
        highs = {tp.partition: self._consumer.highwater(tp) for tp in tps}
        now_ms = int(time.time() * 1000)
        if any(h is None for h in highs.values()) or now_ms - self._confirmed_ms > _BROKER_CHECK_MS:
            # Raises while the broker is away (process() then holds the watermark and retries).
            ends = self._consumer.end_offsets(tps, timeout_ms=_END_OFFSETS_TIMEOUT_MS)
            highs = {tp.partition: e for tp, e in ends.items()}
            self._confirmed_ms = now_ms
        self.lag.set(sum(max(0, (highs[p] or 0) - positions[p]) for p in partitions))
        wm = combined_watermark_ms(
            [
                partition_watermark_ms(
                    progress[p],
                    positions[p],
                    highs[p],
                    now_ms,
                    int(self._cfg.max_out_of_orderness_s * 1000),
                    int((self._cfg.idle_slack_s + self._cfg.partition_discovery_s) * 1000),
                )
                for p in partitions
            ]
        )
        if wm is None:
            return
        current = watermark.current_watermark()
        new = Timestamp(micros=wm * 1000)
        if current is None or new > current:
            watermark.set_watermark(new)
            self.watermark_lag.set(now_ms - wm)


class ReadAudioChunks(beam.PTransform):
    """Kafka topic → ``PCollection[KafkaRecord]`` timestamped with each chunk's event time."""

    def __init__(self, cfg: KafkaSourceConfig) -> None:
        super().__init__()
        self._cfg = cfg

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[KafkaRecord]:
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "Topic" >> beam.Map(lambda _, t: t, self._cfg.topic)
            | "ReadKafka" >> beam.ParDo(ReadKafkaFn(self._cfg)).with_output_types(KafkaRecord)
        )
