"""Producer library: audio → contract-v1 chunk events → Kafka (``callqa produce``).

Many calls are interleaved in one stream, ordered by capture time (a k-way merge), and sent
either at real-time pace (each chunk when its capture time comes) or as fast as possible.
Stereo files are split into agent (left) and customer (right) channels. The audio → events
functions live in ``transforms.io.recordings`` (the batch job uses them too).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from schemas.events import AudioChunkEvent
from transforms.core.audio import encode, resample
from transforms.io.kafka_client import new_producer
from transforms.io.recordings import (  # re-exported: the producer's public library
    CallAudio,
    call_events,
    interleave,
    load_call,
    synthetic_call,
)

__all__ = [
    "CallAudio",
    "call_events",
    "encode",
    "interleave",
    "load_call",
    "new_producer",
    "resample",
    "send_events",
    "synthetic_call",
]


def send_events(
    producer: Any,
    topic: str,
    events: Iterable[AudioChunkEvent],
    realtime: bool = False,
    total: int | None = None,
    progress: bool = True,
    on_sent: Callable[[AudioChunkEvent], None] | None = None,
) -> int:
    """Send ``events`` with key = call id and contract-v1 headers; returns the number sent.

    ``realtime``: each event is sent when the wall clock reaches its capture time (events from
    the past go at once). Otherwise as fast as the broker takes them.
    """
    import sys

    from tqdm import tqdm

    sent = 0
    # Redrawn in place on a terminal; into a log or pipe, a line every 10 s at most.
    bar = tqdm(
        total=total,
        unit="chunk",
        disable=not progress,
        desc=f"→ {topic}",
        mininterval=0.1 if sys.stderr.isatty() else 10.0,
    )
    for event in events:
        if realtime and event.capture_time_ms is not None:
            delay = event.capture_time_ms / 1000.0 - time.time()
            if delay > 0:
                time.sleep(delay)
        producer.send(
            topic, key=event.kafka_key(), value=event.audio, headers=event.kafka_headers()
        )
        sent += 1
        bar.update(1)
        if on_sent is not None:
            on_sent(event)
    producer.flush()
    bar.close()
    return sent
