"""Live-transcript event contract v1: what the job publishes to the transcripts topic.

One Kafka record per final utterance transcript, keyed by call id (so one call's transcripts
stay ordered on one partition), value UTF-8 JSON (``transcript.v1.schema.json``), headers
``schema_version=1`` and ``type=transcript``. Consumers (live views, agent assist) order a
call's records by ``start_ms``; a record can repeat after a job restart (at-least-once), and
``(call_id, channel, start_ms)`` identifies it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from schemas.records import Transcript

TRANSCRIPT_EVENT_VERSION: Final = "1"
TRANSCRIPT_EVENT_TYPE: Final = "transcript"
SCHEMA_PATH: Final = Path(__file__).with_name("transcript.v1.schema.json")


def transcript_event(t: Transcript, emitted_at_ms: int) -> dict[str, Any]:
    """The JSON object published for ``t``."""
    return {
        "schema_version": int(TRANSCRIPT_EVENT_VERSION),
        "type": TRANSCRIPT_EVENT_TYPE,
        "call_id": t.call_id,
        "channel": t.channel,
        "start_ms": t.start_ms,
        "end_ms": t.end_ms,
        "text": t.text,
        "language": t.language,
        "language_class": t.language_class,
        "confidence": t.confidence,
        "model_id": t.model_id,
        "backend": t.backend,
        "words": [w._asdict() for w in t.words],
        "alternatives": list(t.alternatives),
        "emitted_at_ms": emitted_at_ms,
    }


def encode_transcript_event(t: Transcript, emitted_at_ms: int) -> tuple[bytes, bytes, list]:
    """(key, value, headers) of the Kafka record for ``t``."""
    value = json.dumps(transcript_event(t, emitted_at_ms), ensure_ascii=False).encode()
    headers = [
        ("schema_version", TRANSCRIPT_EVENT_VERSION.encode()),
        ("type", TRANSCRIPT_EVENT_TYPE.encode()),
    ]
    return t.call_id.encode(), value, headers
