"""``CommitOffsets``: turn acknowledgements from the sinks into a safe restart position.

An offset is acknowledged only when everything it contributed to is durable:

* a dead-lettered record (decode failures, ``too_late``): when its dead-letter file is written;
* a chunk absorbed into a call: when the call **expires** (no more corrections possible) and
  its last final row has been (re)written — the aggregation re-emits that row with the ack.

Per partition the ledger keeps the *frontier* (every offset below it is acknowledged) and the
acknowledged ranges above it. Every ``commit_interval_s`` it writes a checkpoint file
``<checkpoint_dir>/<topic>/<group>/p<N>.json`` (atomic rename) and commits the frontier to the
consumer group (for lag tooling). On restart the source starts at the frontier and skips
records in the acknowledged ranges, so calls that straddle the frontier but already expired are
not rebuilt from a partial replay, while every call still open at the crash is rebuilt whole:
no chunk is lost, and replayed rows rewrite identical files (no duplicates).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.records import Checkpoint, ChunkFact, OffsetAck
from transforms.io.durable import replace_atomically
from transforms.io.kafka_client import (
    BrokerWait,
    is_transient,
    new_consumer,
    quiet_connection_logs,
)

_NS: Final = "callqa.commit"
Ranges = tuple[tuple[int, int], ...]


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sort and merge [start, end) ranges (touching ranges merge)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def offsets_to_ranges(offsets: Iterable[int]) -> Ranges:
    return merge_ranges((o, o + 1) for o in offsets)


def offset_acks(topic: str, facts: Iterable[ChunkFact]) -> tuple[OffsetAck, ...]:
    """One ack per source partition for the offsets of ``facts``."""
    by_partition: dict[int, list[int]] = {}
    for f in facts:
        by_partition.setdefault(f.partition, []).append(f.offset)
    return tuple(
        OffsetAck(topic, part, offsets_to_ranges(offsets))
        for part, offsets in sorted(by_partition.items())
    )


def advance(ledger: Checkpoint, new: Iterable[tuple[int, int]]) -> Checkpoint:
    """Add acknowledged ranges and move the frontier over every contiguous one."""
    frontier = ledger.frontier
    above: list[tuple[int, int]] = []
    for start, end in merge_ranges([*ledger.acked, *new]):
        if end <= frontier:
            continue
        if start <= frontier:
            frontier = end
        else:
            above.append((start, end))
    return Checkpoint(frontier, tuple(above))


def is_acked(checkpoint: Checkpoint, offset: int) -> bool:
    if offset < checkpoint.frontier:
        return True
    return any(s <= offset < e for s, e in checkpoint.acked)


def checkpoint_path(checkpoint_dir: str, topic: str, group_id: str, partition: int) -> Path:
    return Path(checkpoint_dir) / topic / group_id / f"p{partition}.json"


def read_checkpoint(
    checkpoint_dir: str, topic: str, group_id: str, partition: int
) -> Checkpoint | None:
    path = checkpoint_path(checkpoint_dir, topic, group_id, partition)
    try:
        data = json.loads(path.read_text())
        return Checkpoint(int(data["frontier"]), tuple((int(s), int(e)) for s, e in data["acked"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(
            f"checkpoint {path} is damaged ({exc!r}); restore it from backup, or delete it to "
            "restart this partition from the group's committed offset (which replays more)"
        ) from exc


def write_checkpoint(
    checkpoint_dir: str, topic: str, group_id: str, partition: int, cp: Checkpoint
) -> None:
    text = json.dumps(
        {
            "topic": topic,
            "partition": partition,
            "frontier": cp.frontier,
            "acked": [list(r) for r in cp.acked],
            "written_at_ms": int(time.time() * 1000),
        }
    )
    replace_atomically(
        checkpoint_path(checkpoint_dir, topic, group_id, partition),
        lambda tmp: tmp.write_text(text),
    )


@dataclass(frozen=True)
class CommitConfig:
    bootstrap_servers: str
    group_id: str
    checkpoint_dir: str
    commit_interval_s: float = 5.0
    # may hold credentials: left out of repr() and so of every log line
    consumer_config: tuple[tuple[str, Any], ...] = field(default=(), repr=False)


class TrackOffsetsFn(beam.DoFn):
    """Stateful over ``(topic:partition, OffsetAck)``: keeps the ledger, checkpoints, commits.

    Metrics: ``acks``, ``checkpoints_written``, gauge ``frontier_p<N>``.
    """

    LEDGER = ReadModifyWriteStateSpec("ledger", PickleCoder())
    DIRTY = ReadModifyWriteStateSpec("dirty", PickleCoder())
    FLUSH = TimerSpec("flush", TimeDomain.REAL_TIME)

    def __init__(self, cfg: CommitConfig) -> None:
        self._cfg = cfg
        self._consumer: Any = None
        self.acks = Metrics.counter(_NS, "acks")
        self.checkpoints = Metrics.counter(_NS, "checkpoints_written")
        self._outage = BrokerWait(f"committing offsets of group {cfg.group_id}")

    def setup(self) -> None:
        quiet_connection_logs()
        self._consumer = None  # made at the first commit: a worker may start in an outage

    def _commit(self, offsets: dict[Any, Any]) -> None:
        """Commit the frontier to the consumer group, never waiting out an outage: the
        checkpoint file is authoritative, the group's offsets are for lag tooling. A broker
        that is away is logged once per outage; the next flush commits the newer frontier."""
        try:
            if self._consumer is None:
                self._consumer = new_consumer(
                    self._cfg.bootstrap_servers, self._cfg.group_id, self._cfg.consumer_config
                )
            self._consumer.commit(offsets, timeout_ms=10_000)
        except Exception as exc:  # noqa: BLE001 - the checkpoint file is authoritative
            Metrics.counter(_NS, "kafka_commit_errors").inc()
            if is_transient(exc):
                self._outage.failed(exc)
            else:
                logging.getLogger(__name__).warning(
                    "offset commit failed (checkpoint kept): %s", exc
                )
            return
        self._outage.recovered()

    def teardown(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _initial(self, topic: str, partition: int) -> Checkpoint:
        cp = read_checkpoint(self._cfg.checkpoint_dir, topic, self._cfg.group_id, partition)
        if cp is None:  # the source writes one at start; this is a last resort
            raise RuntimeError(
                f"no checkpoint for {topic}[{partition}] in {self._cfg.checkpoint_dir}"
            )
        return cp

    def process(
        self,
        element: tuple[str, OffsetAck],
        ledger_state: Any = beam.DoFn.StateParam(LEDGER),
        dirty_state: Any = beam.DoFn.StateParam(DIRTY),
        flush: Any = beam.DoFn.TimerParam(FLUSH),
    ) -> Iterator[Checkpoint]:
        _, ack = element
        self.acks.inc()
        ledger = ledger_state.read() or (
            ack.topic,
            ack.partition,
            self._initial(ack.topic, ack.partition),
        )
        topic, partition, cp = ledger
        ledger_state.write((topic, partition, advance(cp, ack.ranges)))
        if not dirty_state.read():
            dirty_state.write(True)
            flush.set(Timestamp.now() + Duration(seconds=self._cfg.commit_interval_s))
        return iter(())

    @on_timer(FLUSH)
    def on_flush(
        self,
        ledger_state: Any = beam.DoFn.StateParam(LEDGER),
        dirty_state: Any = beam.DoFn.StateParam(DIRTY),
    ) -> Iterator[Checkpoint]:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        ledger = ledger_state.read()
        dirty_state.write(False)
        if ledger is None:
            return
        topic, partition, cp = ledger
        write_checkpoint(self._cfg.checkpoint_dir, topic, self._cfg.group_id, partition, cp)
        self.checkpoints.inc()
        Metrics.gauge(_NS, f"frontier_p{partition}").set(cp.frontier)
        self._commit({TopicPartition(topic, partition): OffsetAndMetadata(cp.frontier, "", -1)})
        yield cp


class CommitOffsets(beam.PTransform):
    """``PCollection[OffsetAck]`` → ``PCollection[Checkpoint]`` written (one per flush)."""

    def __init__(self, cfg: CommitConfig) -> None:
        super().__init__()
        self._cfg = cfg

    def expand(self, acks: beam.PCollection[OffsetAck]) -> beam.PCollection[Checkpoint]:
        return (
            acks
            | "KeyByPartition" >> beam.Map(lambda a: (f"{a.topic}:{a.partition}", a))
            | "TrackOffsets" >> beam.ParDo(TrackOffsetsFn(self._cfg)).with_output_types(Checkpoint)
        )
