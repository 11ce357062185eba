"""``PublishTranscripts``: final transcripts → the live-transcripts Kafka topic, as they come.

Keyed by call id (one call stays on one partition, in order), value per the transcript event
contract v1 (``schemas/transcript_events.py``). The producer is made in ``setup()``; each
bundle's sends are flushed in ``finish_bundle``, so a bundle only completes once the broker
has its records (at-least-once). A record the broker refuses becomes a dead letter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from schemas.records import DeadLetter, Transcript, dead_letter
from schemas.transcript_events import encode_transcript_event
from transforms.io.kafka_client import new_producer

STAGE: Final = "publish"
_DEAD: Final = "dead_letter"


@dataclass(frozen=True)
class TranscriptSinkConfig:
    bootstrap_servers: str
    topic: str
    client_config: tuple[tuple[str, Any], ...] = ()
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
        self._pending: list[tuple[Transcript, Any, WindowedValue]] = []
        self._published = Metrics.counter("callqa.publish", "transcripts_published")
        self._failed = Metrics.counter("callqa.publish", "transcripts_failed")

    def setup(self) -> None:
        self._producer = new_producer(self._cfg.bootstrap_servers, self._cfg.client_config)

    def start_bundle(self) -> None:
        self._pending = []

    def process(
        self,
        t: Transcript,
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> Iterator[Any]:
        key, value, headers = encode_transcript_event(t, int(time.time() * 1000))
        try:
            future = self._producer.send(self._cfg.topic, key=key, value=value, headers=headers)
        except Exception as exc:  # noqa: BLE001 - any refusal becomes a dead letter
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(_DEAD, publish_failure(t, self._cfg.topic, exc))
            return
        self._pending.append((t, future, WindowedValue(None, timestamp, (window,))))

    def finish_bundle(self) -> Iterator[Any]:
        self._producer.flush(timeout=self._cfg.send_timeout_s)
        for t, future, where in self._pending:
            try:
                future.get(timeout=self._cfg.send_timeout_s)
                self._published.inc()
            except Exception as exc:  # noqa: BLE001
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
