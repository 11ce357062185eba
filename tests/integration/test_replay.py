"""Replaying a time range from Kafka (the runbook's "Replay a time range"): a bounded run with
``--kafka_start_from=<time> --kafka_stop_at=<time>`` and its own consumer group reads each
partition from its first record at or after the start to the last before the stop, found by
the records' timestamps (``offsets_for_times``), and nothing outside it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from beam_jobs import warehouse
from beam_jobs.cli import main
from beam_jobs.demo.producer import synthetic_call
from tests.integration.harness import assert_each_call_once, job_args, produce_calls

pytestmark = pytest.mark.integration


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def test_a_bounded_run_between_two_times_reads_the_calls_sent_between_them_only(
    kafka_bootstrap: str,
    prism_location: str,
    topic: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sent: dict[str, dict[str, int]] = {}
    marks: list[str] = []
    for batch in ("before", "within", "after"):
        if sent:  # a time between two batches, a second clear of each
            time.sleep(1)
            marks.append(_now_iso())
            time.sleep(1)
        calls = [synthetic_call(f"rp-{batch}-{i}", 2.0, seed=i) for i in range(3)]
        sent[batch] = produce_calls(
            kafka_bootstrap, topic, calls, int(time.time() * 1000), 0, realtime=False
        )
    start, stop = marks
    out = tmp_path / "replay"
    argv = job_args(kafka_bootstrap, topic, out, prism_location,
                    f"--kafka_group_id={topic}-replay", "--live_interval_s=0",
                    f"--kafka_start_from={start}", f"--kafka_stop_at={stop}",
                    streaming=False)  # fmt: skip
    assert main(["run", *argv]) == 0
    assert_each_call_once(out, sent["within"])  # all of their chunks, once each
    assert warehouse.dead_letters(out) == []

    # a stop time without --bounded is refused before anything runs, in one sentence
    streaming = job_args(kafka_bootstrap, topic, tmp_path / "refused", prism_location,
                         f"--kafka_stop_at={stop}")  # fmt: skip
    assert main(["run", *streaming]) == 2
    assert "callqa: error: a stop time needs a bounded read (--bounded)" in capsys.readouterr().err
