"""Prism 2.77 splits a slow bundle of a stateful stage and loses work: the job's runner options
turn those splits off.

A stateful DoFn counts a key's elements in state (a quarter of a second each, so Prism's
progress check finds the bundle stuck and splits it) and reports the count from an
event-time timer. With Prism's splits on, Prism hands the split's residual to a new bundle
while the first still runs the same key (2.77's ``splitBundle`` frees the key): the timer
reported 12 of 24 in 3 of 3 probes (in one it fired again later, with 24). With
``runner_options`` every element is counted, once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from beam_jobs.runner import NO_SPLITS_EXPERIMENT, runner_options

pytestmark = pytest.mark.integration

ELEMENTS = 24


class SlowCountFn(beam.DoFn):
    COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())
    DONE = TimerSpec("done", TimeDomain.WATERMARK)

    def process(
        self,
        element: tuple[str, int],
        count: Any = beam.DoFn.StateParam(COUNT),
        done: Any = beam.DoFn.TimerParam(DONE),
    ) -> None:
        time.sleep(0.25)  # longer than Prism's first progress tick (100 ms): "stuck"
        count.write((count.read() or 0) + 1)
        done.set(Timestamp(seconds=1000))

    @on_timer(DONE)
    def on_done(
        self, key: Any = beam.DoFn.KeyParam, count: Any = beam.DoFn.StateParam(COUNT)
    ) -> Iterator[tuple[str, int]]:
        yield key, count.read()


def _counts(options: list[str], out: Path) -> list[tuple[str, int]]:
    """Run the counting pipeline; what its timers reported, from a file (the worker may run in
    another process)."""
    out.unlink(missing_ok=True)

    def record(kv: tuple[str, int], path: str) -> None:
        with open(path, "a") as fh:
            fh.write(json.dumps(kv) + "\n")

    with beam.Pipeline(options=PipelineOptions(options)) as p:
        _ = (
            p
            | beam.Create([("k", i) for i in range(ELEMENTS)])
            | beam.Map(lambda kv: TimestampedValue(kv, 10))
            | beam.ParDo(SlowCountFn())
            | beam.Map(record, str(out))
        )
    return [tuple(json.loads(line)) for line in out.read_text().splitlines()]


def test_runner_options_keep_every_element_of_a_slow_stateful_bundle(
    prism_location: str, tmp_path: Path
) -> None:
    options = runner_options([f"--prism_location={prism_location}"])
    assert f"--experiments={NO_SPLITS_EXPERIMENT}" in options
    assert _counts(options, tmp_path / "counts") == [("k", ELEMENTS)]


def test_prism_loses_a_split_bundles_state_without_them(
    prism_location: str, tmp_path: Path
) -> None:
    """The reason for the experiment. When a Prism upgrade makes this fail (every element
    counted, once), the experiment can go."""
    options = [
        o
        for o in runner_options([f"--prism_location={prism_location}"])
        if o != f"--experiments={NO_SPLITS_EXPERIMENT}"
    ]
    counts = _counts(options, tmp_path / "counts")
    assert counts != [("k", ELEMENTS)], "Prism no longer loses a split bundle's state"
