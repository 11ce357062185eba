"""``PublishTranscripts``: final transcripts → the live-transcripts Kafka topic, as they come;
``PublishCallState``: call rows (live and final) → the compacted call-state topic.

Keyed by call id (one call stays on one partition, in order), values per the event contracts
(``schemas/transcript_events.py``, ``schemas/call_state_events.py``). Each bundle's sends are
flushed in ``finish_bundle``, so a bundle only completes once the broker has its records
(at-least-once). A record the broker refuses becomes a dead letter.

While the broker is away (a restart, a failover) the bundle waits and retries
(``BrokerWait``): records whose delivery failed are sent again, from the first failed one on,
in their order, so per call the last copy of each record comes after those before it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from schemas.call_state_events import encode_call_state_event
from schemas.records import CallRow, DeadLetter, Transcript, dead_letter
from schemas.transcript_events import encode_transcript_event
from transforms.io.kafka_client import (
    BrokerWait,
    is_transient,
    new_producer,
    quiet_connection_logs,
)

STAGE: Final = "publish"
_DEAD: Final = "dead_letter"


@dataclass(frozen=True)
class TranscriptSinkConfig:
    bootstrap_servers: str
    topic: str
    # may hold credentials: left out of repr() and so of every log line
    client_config: tuple[tuple[str, Any], ...] = field(default=(), repr=False)
    send_timeout_s: float = 30.0


def publish_failure(element: Transcript | CallRow, topic: str, exc: BaseException) -> DeadLetter:
    what = "transcript" if isinstance(element, Transcript) else "call state"
    return dead_letter(
        STAGE,
        "publish_error",
        exc,
        f"could not publish the {what} to {topic}: {exc}",
        call_id=element.call_id,
        event_time_ms=element.start_ms,
        topic=topic,
        size_bytes=len(element.text.encode()) if isinstance(element, Transcript) else None,
    )


_ENCODERS: Final = {
    "transcripts": encode_transcript_event,
    "call_states": encode_call_state_event,
}


class PublishRecordsFn(beam.DoFn):
    """Sends each element (a transcript, or with ``kind="call_states"`` a call row); waits for
    the broker's acks at the end of the bundle. Metrics ``callqa.publish/<kind>_published``,
    ``<kind>_failed``."""

    def __init__(self, cfg: TranscriptSinkConfig, kind: str = "transcripts") -> None:
        self._cfg = cfg
        self._encode: Any = _ENCODERS[kind]
        self._producer: Any = None
        self._wait = BrokerWait(f"publishing {kind.replace('_', ' ')} to {cfg.topic}")
        self._pending: list[tuple[Any, Any, WindowedValue]] = []
        self._published = Metrics.counter("callqa.publish", f"{kind}_published")
        self._failed = Metrics.counter("callqa.publish", f"{kind}_failed")

    def setup(self) -> None:
        quiet_connection_logs()

    def _client(self) -> Any:
        """The producer, made on first use: a worker that starts during an outage waits."""
        if self._producer is None:
            self._producer = self._wait.call(
                lambda: new_producer(self._cfg.bootstrap_servers, self._cfg.client_config)
            )
        return self._producer

    def start_bundle(self) -> None:
        self._pending = []

    def _send(self, t: Any) -> Any:
        key, value, headers = self._encode(t, int(time.time() * 1000))
        return self._wait.call(
            lambda: self._client().send(self._cfg.topic, key=key, value=value, headers=headers)
        )

    def process(
        self,
        t: Any,
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> Iterator[Any]:
        try:
            future = self._send(t)
        except Exception as exc:  # noqa: BLE001 - a refused record becomes a dead letter
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(_DEAD, publish_failure(t, self._cfg.topic, exc))
            return
        self._pending.append((t, future, WindowedValue(None, timestamp, (window,))))

    def finish_bundle(self) -> Iterator[Any]:
        pending = self._pending
        while pending:
            self._wait.call(lambda: self._client().flush(timeout=self._cfg.send_timeout_s))
            again: list[tuple[Any, Any, WindowedValue]] = []
            for i, (t, future, where) in enumerate(pending):
                try:
                    future.get(timeout=self._cfg.send_timeout_s)
                except Exception as exc:  # noqa: BLE001
                    if is_transient(exc):  # lost in an outage: it and all after it, in order
                        again = pending[i:]
                        break
                    self._failed.inc()
                    dl = publish_failure(t, self._cfg.topic, exc)
                    yield beam.pvalue.TaggedOutput(_DEAD, where.with_value(dl))
                    continue
                self._published.inc()
            pending = []
            for t, _, where in again:
                try:
                    pending.append((t, self._send(t), where))
                except Exception as exc:  # noqa: BLE001 - refused on the second try
                    self._failed.inc()
                    dl = publish_failure(t, self._cfg.topic, exc)
                    yield beam.pvalue.TaggedOutput(_DEAD, where.with_value(dl))
        self._pending = []

    def teardown(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)


class PublishTranscripts(beam.PTransform):
    """``PCollection[Transcript]`` → records on ``cfg.topic``; returns the dead letters."""

    def __init__(self, cfg: TranscriptSinkConfig) -> None:
        super().__init__()
        self._cfg = cfg

    def expand(self, transcripts: beam.PCollection[Transcript]) -> beam.PCollection[DeadLetter]:
        out = transcripts | "Publish" >> beam.ParDo(PublishRecordsFn(self._cfg)).with_outputs(_DEAD)
        return out[_DEAD]


class PublishCallState(beam.PTransform):
    """``PCollection[CallRow]`` → records on the compacted call-state topic ``cfg.topic``;
    returns the dead letters."""

    def __init__(self, cfg: TranscriptSinkConfig) -> None:
        super().__init__()
        self._cfg = cfg

    def expand(self, rows: beam.PCollection[CallRow]) -> beam.PCollection[DeadLetter]:
        fn = PublishRecordsFn(self._cfg, kind="call_states")
        return (rows | "Publish" >> beam.ParDo(fn).with_outputs(_DEAD))[_DEAD]
