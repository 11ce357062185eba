"""Unit-test fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from apache_beam.runners.direct import direct_runner
from apache_beam.utils.timestamp import Timestamp

from transforms import aggregate


@pytest.fixture
def runner_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make ``transforms.aggregate`` read processing time from the DirectRunner's TestClock."""
    clocks: list[Any] = []

    class RecordingTestClock(direct_runner.TestClock):  # type: ignore[name-defined,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            clocks.append(self)

    class RunnerTimestamp(Timestamp):
        @staticmethod
        def now() -> Timestamp:
            return Timestamp.of(clocks[-1].time())

    monkeypatch.setattr(direct_runner, "TestClock", RecordingTestClock)
    monkeypatch.setattr(aggregate, "Timestamp", RunnerTimestamp)
    yield
