"""``AuditLateness``: counts chunks that reach a zero-lateness 1 s event-time window on time.

A runner drops an element at a windowed GroupByKey when the watermark has already passed its
window (allowed lateness 0). The on-time count written here therefore equals the number of
valid chunks exactly when the source's watermark never passed a chunk it had not read yet:
the watermark test compares the two.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from apache_beam.transforms import window

from schemas.records import AudioChunk
from transforms.io.durable import replace_atomically

AUDIT_TABLE: Final = "_audit_on_time_chunks"
_SCHEMA: Final = pa.schema([("window_start_ms", pa.int64()), ("chunks", pa.int64())])


class WriteWindowCountFn(beam.DoFn):
    def __init__(self, root: str) -> None:
        self._root = root
        self.on_time = Metrics.counter("callqa.audit", "chunks_on_time")

    def process(self, count: int, win: Any = beam.DoFn.WindowParam) -> Iterator[int]:
        start_ms = int(win.start.micros // 1000)
        path = Path(self._root) / AUDIT_TABLE / f"w{start_ms}.parquet"
        table = pa.table({"window_start_ms": [start_ms], "chunks": [count]}, _SCHEMA)
        replace_atomically(path, lambda tmp: pq.write_table(table, tmp))
        self.on_time.inc(count)
        yield count


class AuditLateness(beam.PTransform):
    """``PCollection[AudioChunk]`` → on-time counts per 1 s window, written under ``root``."""

    def __init__(self, root: str) -> None:
        super().__init__()
        self._root = root

    def expand(self, chunks: beam.PCollection[AudioChunk]) -> beam.PCollection[int]:
        return (
            chunks
            | "Window1s" >> beam.WindowInto(window.FixedWindows(1), allowed_lateness=0)
            | "One" >> beam.Map(lambda _: 1)
            | "Count" >> beam.CombineGlobally(sum).without_defaults()
            | "Write" >> beam.ParDo(WriteWindowCountFn(self._root))
        )
