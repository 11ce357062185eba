"""The call-state event contract v1: what the job publishes for a call row validates against
``call_state.v1.schema.json``, for a live row and a scored final one."""

from __future__ import annotations

import json

import jsonschema
import pytest

from schemas.call_state_events import (
    SCHEMA_PATH,
    call_state_event,
    encode_call_state_event,
    latest_states,
)
from schemas.records import ScorecardResult
from tests.records import call_metrics, call_row

VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


@pytest.mark.parametrize(
    "row",
    [
        call_row(is_final=False, version=0, close_reason="live"),
        call_row(metrics=call_metrics(), scorecard=ScorecardResult("default", 8.0, 10.0, 0.8, ())),
    ],
    ids=["live", "final-scored"],
)
def test_events_follow_the_schema(row) -> None:  # type: ignore[no-untyped-def]
    event = call_state_event(row, emitted_at_ms=1)
    VALIDATOR.validate(event)
    key, value, headers = encode_call_state_event(row, 1)
    assert key == row.call_id.encode()
    assert json.loads(value) == event
    assert dict(headers) == {"schema_version": b"1", "type": b"call_state"}
    assert event["normalized_score"] == (None if row.scorecard is None else 0.8)


def test_the_schema_refuses_an_unknown_field() -> None:
    event = call_state_event(call_row(), emitted_at_ms=1) | {"extra": 1}
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(event)


def test_a_consumer_keeps_the_final_then_highest_version_then_latest_offset() -> None:
    def event(call_id: str, final: bool, version: int, offset: int) -> dict:
        row = call_row(call_id=call_id, is_final=final, version=version, last_offset=offset)
        return call_state_event(row, emitted_at_ms=offset)

    live, v1, v2 = event("a", False, 0, 9), event("a", True, 1, 5), event("a", True, 2, 7)
    b_live, b_later = event("b", False, 0, 3), event("b", False, 0, 4)
    for order in ([live, v1, v2, b_live, b_later], [v2, b_later, v1, live, b_live, v2]):
        assert latest_states(order) == {"a": v2, "b": b_later}  # any order, repeats allowed
    assert latest_states([]) == {}
