"""``PublishTranscripts``: final transcripts → the live-transcripts Kafka topic, as they come.

Keyed by call id (one call stays on one partition, in order), value per the transcript event
contract v1 (``schemas/transcript_events.py``). Each bundle's sends are flushed in
``finish_bundle``, so a bundle only completes once the broker has its records (at-least-once).
A record the broker refuses becomes a dead letter.

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

from schemas.records import DeadLetter, Transcript, dead_letter
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


def publish_failure(t: Transcript, topic: str, exc: BaseException) -> DeadLetter:
    return dead_letter(
        STAGE,
        "publish_error",
        exc,
        f"could not publish the transcript to {topic}: {exc}",
        call_id=t.call_id,
        event_time_ms=t.start_ms,
        topic=topic,
        size_bytes=len(t.text.encode()),
    )


class PublishTranscriptFn(beam.DoFn):
    """Sends each transcript; waits for the broker's acks at the end of the bundle."""

    def __init__(self, cfg: TranscriptSinkConfig) -> None:
        self._cfg = cfg
        self._producer: Any = None
        self._wait = BrokerWait(f"publishing transcripts to {cfg.topic}")
        self._pending: list[tuple[Transcript, Any, WindowedValue]] = []
        self._published = Metrics.counter("callqa.publish", "transcripts_published")
        self._failed = Metrics.counter("callqa.publish", "transcripts_failed")

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

    def _send(self, t: Transcript) -> Any:
        key, value, headers = encode_transcript_event(t, int(time.time() * 1000))
        return self._wait.call(
            lambda: self._client().send(self._cfg.topic, key=key, value=value, headers=headers)
        )

    def process(
        self,
        t: Transcript,
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
            again: list[tuple[Transcript, Any, WindowedValue]] = []
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
        out = transcripts | "Publish" >> beam.ParDo(PublishTranscriptFn(self._cfg)).with_outputs(
            _DEAD
        )
        return out[_DEAD]
