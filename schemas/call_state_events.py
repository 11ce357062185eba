"""Call-state event contract v1: each call's latest state, on a compacted Kafka topic.

One record per call row the job emits (every ``--live_interval_s`` while the call is open,
then each final version), keyed by call id, so a topic with ``cleanup.policy=compact`` keeps
every call's latest state. Value UTF-8 JSON (``call_state.v1.schema.json``), headers
``schema_version=1`` and ``type=call_state``. A record can repeat after a restart
(at-least-once); a consumer keeps, per call, the record with the highest
``(is_final, version, last_offset)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from schemas.records import CallRow
from schemas.tables import to_arrow_value

CALL_STATE_VERSION: Final = "1"
CALL_STATE_TYPE: Final = "call_state"
SCHEMA_PATH: Final = Path(__file__).with_name("call_state.v1.schema.json")
#: The call row's fields the event carries (the rest: lineage and the scorecard's answers).
FIELDS: Final = (
    "call_id", "version", "is_final", "close_reason", "start_ms", "end_ms",
    "agent_audio_s", "customer_audio_s", "mixed_audio_s", "chunk_count", "missing_seq_count",
    "tenant", "agent_id", "queue", "language_hint", "last_offset", "metrics",
)  # fmt: skip


def call_state_event(row: CallRow, emitted_at_ms: int) -> dict[str, Any]:
    """The JSON object published for ``row``."""
    card = row.scorecard
    return {
        "schema_version": int(CALL_STATE_VERSION),
        "type": CALL_STATE_TYPE,
        **{name: to_arrow_value(getattr(row, name)) for name in FIELDS},
        "normalized_score": None if card is None else card.normalized_score,
        "emitted_at_ms": emitted_at_ms,
    }


def encode_call_state_event(row: CallRow, emitted_at_ms: int) -> tuple[bytes, bytes, list]:
    """(key, value, headers) of the Kafka record for ``row``."""
    value = json.dumps(call_state_event(row, emitted_at_ms), ensure_ascii=False).encode()
    headers = [
        ("schema_version", CALL_STATE_VERSION.encode()),
        ("type", CALL_STATE_TYPE.encode()),
    ]
    return row.call_id.encode(), value, headers


def latest_states(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each call's latest state among ``events`` (decoded values, in any order, repeats
    allowed): the one with the highest ``(is_final, version, last_offset)``."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        held = latest.get(event["call_id"])
        if held is None or _order(event) > _order(held):
            latest[event["call_id"]] = event
    return latest


def _order(event: dict[str, Any]) -> tuple[bool, int, int]:
    return event["is_final"], event["version"], event["last_offset"]
