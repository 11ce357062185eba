"""Following the live-transcripts topic: what a live view or agent-assist tool sees, and the
end-of-utterance → transcript latency (demo, latency benchmark, tests)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any


class LiveFollower:
    """Reads the live-transcripts topic in a thread; keeps (receive ms, event) pairs."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer

        self.events: list[tuple[int, dict[str, Any]]] = []
        self._consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self._consumer.poll(timeout_ms=200).values():
                now = int(time.time() * 1000)
                self.events.extend((now, json.loads(r.value)) for r in records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()


def read_topic(bootstrap: str, topic: str, idle_ms: int = 3000) -> list[dict[str, Any]]:
    """Every JSON value on ``topic`` from its start, until it has been idle ``idle_ms`` (the
    call-state topic: a compacted topic keeps at least each key's latest record)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=None, consumer_timeout_ms=idle_ms)  # fmt: skip
    try:
        return [json.loads(r.value) for r in consumer]
    finally:
        consumer.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def latencies_s(events: list[tuple[int, dict[str, Any]]], chunk_ms: int) -> list[float]:
    """Seconds from the end of each utterance to its transcript on Kafka.

    A telephony producer sends a chunk once its audio is captured, ``chunk_ms`` after the
    chunk's capture time; ``send_events(realtime=True)`` sends it at its capture time, so
    ``chunk_ms`` is added back (the numbers are what a real producer would see)."""
    return [(recv - e["end_ms"] + chunk_ms) / 1000 for recv, e in events]
