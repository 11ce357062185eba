"""The call-state topic must be compacted: the preflight's rule for an existing topic."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.config import DEFAULT_CALL_STATE_TOPIC, StreamingJobOptions, config_from_options
from beam_jobs.pipeline import call_state_topic_problem


@pytest.mark.parametrize("policy", ["compact", "compact,delete", "delete, compact"])
def test_compacted_topics_hold_call_states(policy: str) -> None:
    assert call_state_topic_problem("states", policy) is None


def test_a_delete_only_topic_is_refused_with_what_to_do() -> None:
    problem = call_state_topic_problem("states", "delete")
    assert problem is not None
    assert "'states' has cleanup.policy=delete" in problem
    assert "cleanup.policy=compact" in problem and "--call_state_topic=off" in problem


def test_live_rows_go_to_the_call_state_topic_by_default() -> None:
    def config(*argv: str):  # type: ignore[no-untyped-def]
        return config_from_options(
            PipelineOptions(["--streaming", *argv]).view_as(StreamingJobOptions)
        )

    sink = config().call_state_sink
    assert sink is not None and sink.topic == DEFAULT_CALL_STATE_TOPIC
    assert config("--call_state_topic=off").call_state_sink is None
